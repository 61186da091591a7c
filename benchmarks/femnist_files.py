"""Small FEMNIST data sets in the two on-disk layouts, written the way LEAF and MindSpore write them (for the
tests and benchmarks.femnist_scale, one copy).

    >>> write_leaf(tmp_path / "leaf", writers=200, per_writer=(6, 12), split=False)
    >>> write_mindspore(tmp_path / "ms", writers=5, per_writer=(8, 14))

Images are class prototypes plus noise (learnable), 62 classes, writers named
like LEAF's (``f0000_14``) and with a different sample count each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

NUM_CLASSES = 62


def writer_names(count: int) -> list[str]:
    return [f"f{i:04d}_{(i * 37) % 90 + 10:02d}" for i in range(count)]


def _samples(rng, count: int, side: int, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    prototypes = np.random.default_rng(1234).uniform(0, 1, size=(NUM_CLASSES, side * side * channels))
    y = rng.integers(0, NUM_CLASSES, size=count)
    x = np.clip(prototypes[y] + rng.normal(0, 0.15, size=(count, side * side * channels)), 0, 1)
    return x.astype(np.float32), y.astype(np.int64)


def write_leaf(root: Path, writers: int, per_writer=(6, 12), split: bool = False, users_per_file: int = 50,
               seed: int = 0) -> list[str]:
    """LEAF's JSON: ``all_data_<k>.json`` in ``root`` or, with ``split``, train/ and test/ (9:1 per writer)."""
    rng = np.random.default_rng(seed)
    names = writer_names(writers)
    shuffled = list(rng.permutation(names))  # LEAF's files are not in sorted order
    for k in range(0, writers, users_per_file):
        users = shuffled[k:k + users_per_file]
        parts: dict[str, dict] = {"train": {}, "test": {}, "all": {}}
        for user in users:
            x, y = _samples(rng, int(rng.integers(*per_writer)), 28)
            cut = max(1, len(y) // 10)
            parts["all"][user] = (x, y)
            parts["test"][user], parts["train"][user] = (x[:cut], y[:cut]), (x[cut:], y[cut:])
        for name in (("train", "test") if split else ("all",)):
            folder = root / name if split else root
            folder.mkdir(parents=True, exist_ok=True)
            doc = {"users": users, "num_samples": [len(parts[name][u][1]) for u in users],
                   "user_data": {u: {"x": parts[name][u][0].round(4).tolist(), "y": parts[name][u][1].tolist()}
                                 for u in users}}
            suffix = f"_{name}_9" if split else ""
            (folder / f"all_data_{k // users_per_file}_niid_0_keep_0{suffix}.json").write_text(json.dumps(doc))
    return names


def write_mindspore(root: Path, writers: int, per_writer=(8, 14), seed: int = 0) -> list[str]:
    """MindSpore's per-writer folders: ``{user}/{user}_bn_{batches}_{train|test}_{data|label}.bin``."""
    rng = np.random.default_rng(seed)
    names = writer_names(writers)
    for user in names:
        folder = root / user
        folder.mkdir(parents=True, exist_ok=True)
        x, y = _samples(rng, int(rng.integers(*per_writer)), 32, channels=3)
        x = x.reshape(-1, 32, 32, 3)  # NHWC float32, as MindSpore stores it
        cut = max(1, len(y) // 10)
        for split_name, (xs, ys) in (("train", (x[cut:], y[cut:])), ("test", (x[:cut], y[:cut]))):
            batches = (len(ys) + 31) // 32
            xs.astype("<f4").tofile(folder / f"{user}_bn_{batches}_{split_name}_data.bin")
            ys.astype("<i4").tofile(folder / f"{user}_bn_{batches}_{split_name}_label.bin")
    return names
