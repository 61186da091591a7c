"""Data a user has already split: one ``client_<i>.npz`` per client, used as it is.

    split = open_npz_split("~/data/my-split")      # client_0.npz, client_1.npz, ...
    split.clients, split.shape, split.num_classes
    # (3, (1, 28, 28), 10)
    split.write_clients(3, "run/data", seed=0)     # run/data/client_<i>.npz -> the user's files

Each file holds ``x_train``, ``y_train``, ``x_test``, ``y_test``: images as
(n, C, H, W) or grey (n, H, W), uint8 (scaled to -1..1 when read) or float (used
as they are); integer labels 0..K-1. ``num_classes`` is K = the largest label
over every file + 1, unless the files carry a ``num_classes`` scalar. Nothing is
copied: the run's data folder links to the files (devices get copies).
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.run_layout import partition_file
from simulator.datasets import MAX_CLASSES, DataSetError, data_folder

KEYS = ("x_train", "y_train", "x_test", "y_test")
FLOAT32_MAX = float(np.finfo(np.float32).max)
_NAME = re.compile(r"client_(\d+)\.npz")


@dataclass
class NpzSplit:
    root: Path
    files: list[Path]  # client_0.npz, client_1.npz, ... in client order
    shape: tuple[int, ...]  # one image: (C, H, W)
    num_classes: int

    @property
    def clients(self) -> int:
        return len(self.files)

    @property
    def channels(self) -> int:
        return self.shape[0]

    def check_clients(self, num_clients: int) -> None:
        if num_clients > self.clients:
            raise DataSetError(f"{self.root} holds {self.clients} client files: --client-num {num_clients} is "
                               "more clients than that")

    def write_clients(self, num_clients: int, folder: str | Path, seed: int = 0) -> list[int]:
        """Link client 0..num_clients-1's files into ``folder`` (as FemnistSource.write_clients readies its
        clients; the user's split needs no seed); returns each client's sample count."""
        self.check_clients(num_clients)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        counts = []
        for client, path in enumerate(self.files[:num_clients]):
            os.symlink(path.resolve(), partition_file(folder, client))
            with np.load(path) as npz:
                counts.append(len(npz["y_train"]) + len(npz["y_test"]))
        return counts


def open_npz_split(data_dir: str | Path | None) -> NpzSplit:
    root = data_folder("npz", data_dir, "(a folder of client_<i>.npz files)")
    numbered = {int(m.group(1)): p for p in root.iterdir() if (m := _NAME.fullmatch(p.name))}
    if not numbered:
        raise DataSetError(f"{root} holds no client_<i>.npz files")
    files = [numbered[i] for i in range(len(numbered)) if i in numbered]
    if len(files) != len(numbered):
        raise DataSetError(f"{root}: client_<i>.npz must be numbered 0..{len(numbered) - 1} without gaps; "
                           f"client_{len(files)}.npz is missing")
    shape, top, declared = None, -1, None
    for path in files:
        arrays = _read(path)
        for split in ("train", "test"):
            x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
            image = (1, *x.shape[1:]) if x.ndim == 3 else tuple(x.shape[1:])
            if x.ndim not in (3, 4) or len(x) != len(y) or y.ndim != 1 or len(y) == 0:
                raise DataSetError(f"{path}: x_{split} {x.shape} and y_{split} {y.shape} must be n images "
                                   "(n, C, H, W) or (n, H, W) and n labels, n > 0")
            if shape is not None and image != shape:
                raise DataSetError(f"{path}: images of shape {image}, where {files[0].name} has {shape}")
            if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
                raise DataSetError(f"{path}: y_{split} must hold integer labels from 0")
            if int(y.max()) >= MAX_CLASSES:
                raise DataSetError(f"{path}: label {int(y.max())} in y_{split}; labels run 0..K-1 with K at most "
                                   f"{MAX_CLASSES} classes")
            _check_images(path, f"x_{split}", x)
            shape, top = image, max(top, int(y.max()))
        if "num_classes" in arrays:
            declared = _declared_classes(path, arrays["num_classes"])
    num_classes = declared if declared is not None else top + 1
    if top >= num_classes:
        raise DataSetError(f"{root}: label {top} is outside num_classes {num_classes}")
    return NpzSplit(root, files, shape, max(num_classes, 2))


def _check_images(path: Path, key: str, x: np.ndarray) -> None:
    """Images are uint8, or real numbers that are all finite (a NaN would train a NaN model)."""
    if x.dtype == np.uint8:
        return
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) or x.dtype == np.bool_:
        raise DataSetError(f"{path}: {key} holds {x.dtype} values; images are uint8 or float")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise DataSetError(f"{path}: {key} holds {bad} NaN or infinite value(s)")
    if np.abs(x).max(initial=0) > FLOAT32_MAX:
        raise DataSetError(f"{path}: {key} holds values beyond float32's range")


def _declared_classes(path: Path, value: np.ndarray) -> int:
    if value.shape != () or not np.issubdtype(value.dtype, np.integer) or not 2 <= int(value) <= MAX_CLASSES:
        raise DataSetError(f"{path}: num_classes must be one integer from 2 to {MAX_CLASSES}")
    return int(value)


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise DataSetError(f"{path} lacks {', '.join(missing)} (needs {', '.join(KEYS)})")
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataSetError(f"{path} is not a readable .npz ({type(err).__name__}: {err})") from None
