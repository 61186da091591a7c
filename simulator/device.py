"""Where the built-in app computes (--device: contract.run_settings.DEVICES) and what a client may take of its GPU.

    dev = task_device("auto", gpus_per_client=0.25)   # TaskDevice(torch=device('cuda'), gpu=True), bound set
    reset_peak(dev); ...; peak_gpu_mib(dev)           # MiB, None on the CPU
    python -m simulator.device          # {"cuda": true, "gpus": [{"id": "0", "name": ..., "memory_mib": ...}]}

CUDA is touched only by a task (task_device), in the process that runs it: under fl-launch a task worker
or Ray worker, which forks nothing afterwards. The fork server and the task host import this module but
never call into torch.cuda (torch.cuda.is_available() itself initialises the driver, and a CUDA driver
does not survive a fork); a launcher asks about a host's GPUs with ``python -m simulator.device`` in a
process of its own. The model travels and is saved as CPU tensors: a task moves it to its device and back.

``gpus_per_client`` F > 0 bounds the memory a task may allocate on its GPU to F of it (torch's
per-process memory fraction: an allocation beyond it raises out-of-memory in that client only).

FL_LAUNCH_FAKE_CUDA=FILE (tests only: CI has no GPU) makes torch.cuda pretend FL_LAUNCH_FAKE_GPUS GPUs
(default 1) in every process that imports this module, computing on the CPU, and appends each call
into torch.cuda to FILE as a JSON line (pid, ppid, call, CUDA_VISIBLE_DEVICES): a test reads there which
processes touched CUDA.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

FAKE_ENV = "FL_LAUNCH_FAKE_CUDA"
FAKE_GPUS_ENV = "FL_LAUNCH_FAKE_GPUS"
FAKE_MEMORY_MIB = 16384
_bounded: set[int] = set()  # devices whose memory fraction this process set


def uses_cuda(setting: str) -> bool:
    """Whether a task with ``--device setting`` computes on a GPU here (asks CUDA: call it in a task only)."""
    return setting == "cuda" or (setting == "auto" and torch.cuda.is_available())


@dataclass(frozen=True)
class TaskDevice:
    torch: torch.device  # where tensors go
    gpu: bool  # a GPU's (the fake's computes on the CPU)


CPU = TaskDevice(torch.device("cpu"), False)


def task_device(device: str, gpus_per_client: float = 0.0) -> TaskDevice:
    """Where a task computes; on a GPU, its memory bound set before the task allocates anything."""
    if not uses_cuda(device):
        return CPU
    if 0 < gpus_per_client < 1 and torch.cuda.current_device() not in _bounded:
        torch.cuda.set_per_process_memory_fraction(gpus_per_client)
        _bounded.add(torch.cuda.current_device())
    return TaskDevice(torch.device("cpu") if os.environ.get(FAKE_ENV) else torch.device("cuda"), True)


def reset_peak(dev: TaskDevice) -> None:
    if dev.gpu:
        torch.cuda.reset_peak_memory_stats()


def peak_gpu_mib(dev: TaskDevice) -> float | None:
    """The most GPU memory the task allocated (since reset_peak), in MiB; None on the CPU."""
    return torch.cuda.max_memory_allocated() / 2**20 if dev.gpu else None


def release(device: str) -> None:
    """After a task: the GPU memory torch's allocator keeps cached goes back to the GPU (for the next client)."""
    if device != "cpu" and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def gpu_facts() -> dict:
    """This host's CUDA as torch sees it: {"cuda": bool, "gpus": [{"id", "name", "memory_mib"}]}; ids are
    CUDA_VISIBLE_DEVICES's entries where it is set (what a child's CUDA_VISIBLE_DEVICES must name)."""
    if not torch.cuda.is_available():
        return {"cuda": False, "gpus": []}
    count = torch.cuda.device_count()
    given = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    ids = given[:count] if len(given) >= count else [str(i) for i in range(count)]
    gpus = []
    for index, gpu_id in enumerate(ids):
        props = torch.cuda.get_device_properties(index)
        gpus.append({"id": gpu_id, "name": props.name, "memory_mib": int(props.total_memory // 2**20)})
    return {"cuda": True, "gpus": gpus}


class _FakeProps:
    def __init__(self, index: int) -> None:
        self.name = f"fake GPU {index}"
        self.total_memory = FAKE_MEMORY_MIB * 2**20


def _install_fake(record: str) -> None:
    """Tests only (FL_LAUNCH_FAKE_CUDA): torch.cuda answers as a host with GPUs would, and says who asked."""
    cuda = torch.cuda
    if getattr(cuda, "_fl_launch_fake", False):
        return
    initialised = set()

    def log(call: str, *args):
        line = {"pid": os.getpid(), "ppid": os.getppid(), "call": call, "args": list(args),
                "cvd": os.environ.get("CUDA_VISIBLE_DEVICES")}
        with open(record, "a") as fh:
            fh.write(json.dumps(line) + "\n")

    def touching(call: str, result):
        def fake(*args, **_kw):
            log(call, *args)
            initialised.add(os.getpid())
            return result(*args) if callable(result) else result
        return fake

    count = int(os.environ.get(FAKE_GPUS_ENV, "1"))
    cuda.is_available = touching("is_available", True)
    cuda.device_count = touching("device_count", count)
    cuda.current_device = touching("current_device", 0)
    cuda.get_device_properties = touching("get_device_properties", lambda index=0: _FakeProps(index))
    cuda.set_per_process_memory_fraction = touching("set_per_process_memory_fraction", None)
    cuda.reset_peak_memory_stats = touching("reset_peak_memory_stats", None)
    cuda.max_memory_allocated = touching("max_memory_allocated", 3 * 2**20)
    cuda._lazy_init = touching("_lazy_init", None)
    cuda.init = touching("init", None)
    cuda.empty_cache = touching("empty_cache", None)
    cuda.is_initialized = lambda: os.getpid() in initialised
    cuda._fl_launch_fake = True


if os.environ.get(FAKE_ENV):
    _install_fake(os.environ[FAKE_ENV])


def main() -> None:
    """A launcher's question about this host, asked in a process of its own: one JSON line."""
    try:
        facts = gpu_facts()
    except Exception as err:  # noqa: BLE001 (a broken driver is an answer too)
        facts = {"cuda": False, "gpus": [], "error": f"{type(err).__name__}: {err}"}
    print(json.dumps(facts), flush=True)


if __name__ == "__main__":
    main()
