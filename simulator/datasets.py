"""Whole data sets as uint8 images (N, C, 32, 32) and int64 labels.

    from simulator.datasets import load_dataset
    ds = load_dataset("digits")
    ds.x.shape, ds.num_classes
    # ((1797, 1, 32, 32), 10)

Nothing is downloaded: ``digits`` ships inside scikit-learn, ``cifar10`` is read
from a ``cifar-10-batches-py`` folder in its standard pickle format, and
``synthetic`` is generated from the seed.
"""

from __future__ import annotations

import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.errors import InputError

# femnist is read by writer (simulator.femnist), npz is a user's own split (simulator.npz_split)
DATASETS = ("digits", "cifar10", "synthetic", "femnist", "npz")
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
MAX_CLASSES = 1_000_000  # any data set: the built-in model's output layer is 84 x 10**6 weights at most


class DataSetError(InputError):
    """A data set cannot be read: a missing, incomplete or malformed data dir."""


@dataclass(frozen=True)
class DataSet:
    x: np.ndarray  # uint8, (N, C, 32, 32)
    y: np.ndarray  # int64, (N,)
    num_classes: int

    @property
    def channels(self) -> int:
        return int(self.x.shape[1])


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    num_samples: int = 1000,
    num_classes: int = 10,
) -> DataSet:
    """Load ``name``; ``num_samples``/``num_classes`` only shape ``synthetic``."""
    if name == "digits":
        return _digits()
    if name == "cifar10":
        return _cifar10(data_folder("cifar10", data_dir, "pointing at cifar-10-batches-py"))
    if name == "synthetic":
        return _synthetic(num_samples, num_classes, seed)
    if name in ("femnist", "npz"):
        raise DataSetError(f"{name} comes split by client: simulator.femnist, simulator.npz_split")
    raise DataSetError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")


def data_folder(name: str, data_dir: str | Path | None, what: str) -> Path:
    """``--data-dir`` of data set ``name``, which must be an existing folder (``what``: what it should hold)."""
    if data_dir is None:
        raise DataSetError(f"--dataset {name} needs --data-dir {what}")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataSetError(f"data dir {root} does not exist or is not a folder")
    return root


def _digits() -> DataSet:
    """scikit-learn's bundled copy of the UCI digits (its load_digits reads the same file), read without
    importing scikit-learn: its import (scipy.stats and the rest) cost fl-launch ~1.5 s before anything started."""
    table = np.loadtxt(digits_file(), delimiter=",", dtype=np.float32)  # 1797 rows: 64 pixels in 0..16, the label
    images = table[:, :-1].reshape(-1, 8, 8) / 16.0  # (N, 8, 8) in 0..1
    return DataSet(x=grey_to_uint8_32(images), y=table[:, -1].astype(np.int64), num_classes=10)


def digits_file() -> Path:
    """sklearn/datasets/data/digits.csv.gz, found without running scikit-learn's __init__."""
    spec = importlib.util.find_spec("sklearn")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    raise DataSetError("--dataset digits needs scikit-learn installed (it ships the digits data set)")


def grey_to_uint8_32(images: np.ndarray) -> np.ndarray:
    """(n, h, w) grey images in 0..1 -> (n, 1, 32, 32) uint8, resized bilinearly."""
    n, h, w = images.shape
    big = bilinear_matrix(h, 32) @ images.astype(np.float32) @ bilinear_matrix(w, 32).T
    return np.clip(np.rint(big * 255.0), 0, 255).astype(np.uint8)[:, None]


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix that resizes one axis by linear interpolation."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    mat = np.zeros((n_out, n_in), dtype=np.float32)
    mat[np.arange(n_out), lo] += 1 - frac
    mat[np.arange(n_out), hi] += frac
    return mat


def _cifar10(root: Path) -> DataSet:
    """``root``: an existing folder (data_folder), cifar-10-batches-py itself or the folder holding it."""
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    present = [f for f in CIFAR_FILES if (root / f).is_file()]
    if not present:
        raise DataSetError(f"{root} holds none of {', '.join(CIFAR_FILES)}: not a cifar-10-batches-py folder")
    xs, ys = [], []
    for name in present:
        batch = _read_cifar_batch(root / name)
        xs.append(batch[0])
        ys.append(batch[1])
    return DataSet(x=np.concatenate(xs), y=np.concatenate(ys), num_classes=10)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as err:  # a truncated or foreign file: one clear line
        raise DataSetError(f"{path} is not a CIFAR-10 python batch ({type(err).__name__}: {err})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataSetError(f"{path}: expected data of shape (N, 3072) and N labels, got {data.shape} and {len(labels)}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataSetError(f"{path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def _synthetic(num_samples: int, num_classes: int, seed: int) -> DataSet:
    """Class prototypes plus noise: learnable, CIFAR-shaped, any size."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(40, 215, size=(num_classes, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, num_classes, size=num_samples).astype(np.int64)
    x = np.empty((num_samples, 3, 32, 32), dtype=np.uint8)
    for start in range(0, num_samples, 4096):  # chunks bound the float32 scratch
        stop = min(start + 4096, num_samples)
        noise = rng.normal(0, 60, size=(stop - start, 3, 32, 32)).astype(np.float32)
        x[start:stop] = np.clip(prototypes[y[start:stop]] + noise, 0, 255).astype(np.uint8)
    return DataSet(x=x, y=y, num_classes=num_classes)
