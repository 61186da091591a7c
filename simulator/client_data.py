"""One client's partition on disk (``client_<i>.npz``) and in memory as tensors.

    from simulator.client_data import write_partitions, load_partition
    files = write_partitions(dataset, index_arrays, "run/partitions", seed=0)
    part = load_partition(files[0])        # float tensors, normalised
    part.x_train.shape, part.num_train
    # (torch.Size([143, 1, 32, 32]), 143)

The launcher splits once per run and writes one file per client; a client reads
only its own file. Images stay uint8 on disk and become float32 once, on load.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contract.run_layout import partition_file
from partitions import train_test_split
from simulator.femnist import NUM_CLASSES as FEMNIST_CLASSES
from simulator.femnist import read_writer_bins

if TYPE_CHECKING:  # torch is imported on load, so the launcher can write files without it
    import torch

TEST_FRACTION = 0.2
KEYS = ("x_train", "y_train", "x_test", "y_test")
TEST_KEYS = ("x_test", "y_test")


def partition_files(folder: str | Path) -> list[Path]:
    """The partitions in a folder, in client order (client_10 after client_9), each as load_partition takes it."""
    found = {p.with_suffix(".npz") for p in Path(folder).glob("client_*") if p.suffix in ("", ".npz")}
    return sorted(found, key=lambda p: int(p.stem.split("_")[1]))


def write_partitions(dataset, index_arrays, folder: str | Path, seed: int) -> list[Path]:
    """Write each client's train/test split; returns the files in client order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for client, indices in enumerate(index_arrays):
        train, test = train_test_split(indices, TEST_FRACTION, seed=seed * 100_003 + client)
        path = partition_file(folder, client)
        np.savez(
            path,
            x_train=dataset.x[train], y_train=dataset.y[train],
            x_test=dataset.x[test], y_test=dataset.y[test],
            num_classes=np.int64(dataset.num_classes),
        )
        files.append(path)
    return files


@dataclass
class Partition:
    x_train: "torch.Tensor"
    y_train: "torch.Tensor"
    x_test: "torch.Tensor"
    y_test: "torch.Tensor"
    num_classes: int

    @property
    def num_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.y_test.shape[0])

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    def to(self, device) -> "Partition":
        """The same data on ``device`` (a task's GPU); itself when it is there already."""
        if self.x_train.device == device:
            return self
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_test=self.x_test.to(device), y_test=self.y_test.to(device))


def load_partition(path: str | Path, train: bool = True) -> Partition:
    """Read one client's data into float32 tensors: uint8 images normalised to -1..1, floats as they are.
    ``train=False``: its test split only (a task that only evaluates; the train split is empty, no bytes read).

    ``client_<i>.npz``, or where the launcher linked ``client_<i>`` to a MindSpore
    writer folder instead, that writer's .bin files.
    """
    import torch

    path = Path(path)
    if not path.exists() and path.with_suffix("").is_dir():
        arrays, num_classes = read_writer_bins(path.with_suffix("")), FEMNIST_CLASSES
    else:
        with np.load(path) as npz:  # the launcher's split, or a user's (simulator.npz_split)
            arrays = {k: npz[k] for k in (KEYS if train else TEST_KEYS)}
            num_classes = int(npz["num_classes"]) if "num_classes" in npz.files else 0  # 0: the run's

    def images(a: np.ndarray) -> torch.Tensor:
        if a.ndim == 3:  # grey (n, H, W)
            a = a[:, None]
        if a.dtype != np.uint8:
            return torch.from_numpy(a).float()
        return torch.from_numpy(a).float().div_(127.5).sub_(1.0)

    x_test, y_test = images(arrays["x_test"]), torch.from_numpy(arrays["y_test"]).long()
    return Partition(
        x_train=images(arrays["x_train"]) if train else x_test[:0],
        y_train=torch.from_numpy(arrays["y_train"]).long() if train else y_test[:0],
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
    )
