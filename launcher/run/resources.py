"""Will the run's data and models fit this machine? Estimated from the options, before anything starts.

    need = estimate(LaunchOptions(dataset="synthetic", samples_per_client=10**9, client_num=10))
    need.memory, need.disk                       # bytes: 112 TiB to hold, 28 TiB of partitions
    # (122880273561200, 30720000000000)
    check_fits(need, "logs")                     # ResourceError: the figure and what this machine has

What is counted (the rest of a run is small next to it, or the user's own):
- preparing: the whole data set as uint8 images while it is split (synthetic: plus its class prototypes;
  cifar10: the batch files twice, as read and as joined);
- running: every local client's partition as float32 tensors (virtual mode: the workers' current ones),
  each training process's model with its gradients and Adam's two moments (the built-in LeNet5; a
  user's --model is sized by the check that builds it), the server's model and strategy state, and
  ``PROCESS_MIB`` per local client process pair (virtual mode: ``WORKER_MIB`` per Ray worker);
- on disk, in the log dir: the partitions the launcher writes (uint8).
The figure refused is the larger of preparing and running, against psutil's available memory, and the
partitions against the log dir's free disk. Clients on --hosts devices are not counted here (fl-launch
--check reports each device's memory and disk).
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from contract.errors import InputError

PIXELS = 3 * 32 * 32  # the built-in data sets' images: (C, 32, 32) with C <= 3
DIGITS_SAMPLES = 1797
PROCESS_MIB = 25  # a local client's SuperNode and client process, forked with torch loaded (unique pages)
WORKER_MIB = 150  # --mode virtual: a Ray worker process that imported torch (Ray's daemons not counted)
TRAIN_COPIES = 4  # weights, gradients, Adam's two moments (float32)
SERVER_COPIES = 6  # global model, aggregate, strategy moments, the message buffers


class ResourceError(InputError):
    """The one line for a run that cannot fit: what it needs and what this machine has."""


@dataclass(frozen=True)
class ResourceNeed:
    memory: int  # bytes at the peak (preparing or running)
    disk: int  # bytes written into the log dir
    why: str  # what makes up the memory figure


def lenet_params(channels: int, num_classes: int) -> int:
    """Parameters of simulator.model.LeNet5 (weights and biases, BatchNorm's affine pairs)."""
    conv = channels * 6 * 25 + 6 + 12 + 6 * 16 * 25 + 16 + 32
    return conv + 400 * 120 + 120 + 120 * 84 + 84 + 84 * num_classes + num_classes


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"


def _npz_elements(path: Path) -> int:
    """Elements of x_train and x_test in a client_<i>.npz, from the array headers (nothing is loaded)."""
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for name in ("x_train.npy", "x_test.npy"):
                if name in archive.namelist():
                    with archive.open(name) as member:
                        version = np.lib.format.read_magic(member)
                        header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                  else np.lib.format.read_array_header_2_0)
                        shape, _, _ = header(member)
                        total += int(np.prod(shape, dtype=object))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return 0  # unreadable: the data set's own check names the file
    return total


def _data(opts) -> tuple[int, int, int, str]:
    """(samples, elements per sample, preparation bytes, what) of the options' data set."""
    if opts.dataset == "synthetic":
        n = opts.samples_per_client * opts.client_num
        prototypes = opts.num_classes * PIXELS * 4
        return n, PIXELS, n * (PIXELS + 16) + prototypes, f"--dataset synthetic with {n} samples"
    if opts.dataset == "digits":
        return DIGITS_SAMPLES, 1024, DIGITS_SAMPLES * 2048, "--dataset digits"
    if opts.dataset == "cifar10" and opts.data_dir:
        root = Path(opts.data_dir).expanduser()
        root = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
        size = sum(p.stat().st_size for p in root.glob("*_batch*") if p.is_file())
        return size // (PIXELS + 1), PIXELS, 2 * size, f"--dataset cifar10 ({human(size)} of batches)"
    if opts.dataset == "npz" and opts.data_dir:
        root = Path(opts.data_dir).expanduser()
        files = sorted(root.glob("client_*.npz"))[: opts.client_num] if root.is_dir() else []
        elements = sum(_npz_elements(p) for p in files)
        return 1, elements, 0, f"--dataset npz ({len(files)} client files)"
    return 0, 0, 0, f"--dataset {opts.dataset}"  # femnist: read writer by writer, small per client


def estimate(opts) -> ResourceNeed:
    """What the run (LaunchOptions) will take in memory and on this machine's disk."""
    samples, per_sample, prepare, what = _data(opts)
    local_clients = 0 if opts.hosts else opts.client_num
    built_in = not opts.model and not opts.app
    classes = opts.num_classes if opts.dataset == "synthetic" else 10
    model = lenet_params(3, classes) * 4 if built_in else 0
    data_run = samples * per_sample * 4 * local_clients // max(1, opts.client_num)  # float32, local share
    if opts.is_virtual():
        workers = opts.worker_count()
        running = (data_run * min(workers, opts.client_num) // max(1, opts.client_num)
                   + workers * (model * TRAIN_COPIES + (WORKER_MIB << 20)))
    else:
        running = data_run + local_clients * (model * TRAIN_COPIES + (PROCESS_MIB << 20))
    running += model * SERVER_COPIES
    if opts.app:
        prepare = 0
    memory = max(prepare, running)
    why = (f"{what} needs about {human(prepare)} of memory to prepare" if prepare >= running else
           f"{what} on {local_clients} local client(s) needs about {human(running)} of memory to run "
           "(partitions as float32, models)")
    disk = samples * per_sample if opts.dataset in ("synthetic", "digits", "cifar10") and not opts.app else 0
    return ResourceNeed(memory=memory, disk=disk, why=why)


def _free_disk(folder: Path) -> int:
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 1 << 62


def check_fits(need: ResourceNeed, log_dir: str) -> None:
    """Refuse, with the figures, a run whose data cannot fit this machine's memory or the log dir's disk."""
    available = psutil.virtual_memory().available
    if need.memory > available:
        raise ResourceError(f"{need.why}; this machine has {human(available)} available")
    free = _free_disk(Path(log_dir).expanduser().absolute())
    if need.disk > free:
        raise ResourceError(f"the partitions take about {human(need.disk)} on disk; log dir {log_dir} has "
                            f"{human(free)} free")
