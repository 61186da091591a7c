"""FEMNIST by writer: LEAF's JSON files or MindSpore's per-writer .bin folders.

    source = open_femnist("~/data/femnist")      # the layout is detected
    source.layout, len(source.writers), source.channels
    # ('leaf-json', 3500, 1)
    samples = source.write_clients(50, "run/data", seed=0)   # client i = i-th writer, sorted

Layouts read (../shared/notes/platform-facts.md):
- LEAF JSON: ``*.json`` files with ``users``, ``num_samples`` and ``user_data``
  ({user: {"x": [[784 floats in 0..1]], "y": [int]}}), either in ``train/`` and
  ``test/`` (LEAF's own split, kept) or all in one folder (or ``all_data/``):
  then each writer is split 9:1 from the seed. Images become uint8 1x32x32
  (bilinear 28 -> 32) in one ``client_<i>.npz`` per client, written file by
  file, so memory follows one JSON file, not the data set; files holding none
  of the run's writers (by their ``users``, read from the head) are skipped.
  The converted files are kept in the conversion cache (simulator.convert_cache)
  and linked into later runs of the same files and seed, not converted again.
- MindSpore: one folder per writer holding
  ``{user}_bn_{batches}_{train|test}_{data|label}.bin`` (float32 NHWC 32x32x3,
  int32 labels). Nothing is copied: ``client_<i>`` in the run's data folder is a
  link to the writer's folder and the client reads its own .bin files when it
  starts (``read_writer_bins``); the floats are used as they are.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract.run_layout import client_dir, partition_file
from partitions import train_test_split
from simulator.convert_cache import ConversionCache, file_identity, slot_name
from simulator.datasets import DataSetError, data_folder, grey_to_uint8_32

NUM_CLASSES = 62
TEST_FRACTION = 0.1  # where the data has no split of its own
BIN_SHAPE = (32, 32, 3)  # MindSpore's NHWC image
_SPLITS = ("train", "test")


@dataclass
class FemnistSource:
    root: Path
    layout: str  # "leaf-json" | "mindspore-bin"
    writers: list[str]  # sorted: client i is writers[i]
    channels: int
    _where: dict[str, object] = field(default_factory=dict, repr=False)  # split -> files (json), writer -> folder (bin)
    num_classes: int = NUM_CLASSES
    _users_in: dict[Path, set[str]] = field(default_factory=dict, repr=False)  # LEAF file -> its users, if listed

    def check_clients(self, num_clients: int) -> None:
        if num_clients > len(self.writers):
            raise DataSetError(f"{self.root} holds {len(self.writers)} writers: --client-num {num_clients} is "
                               "more clients than writers (--partition natural gives each client one writer)")

    def write_clients(self, num_clients: int, folder: str | Path, seed: int) -> list[int]:
        """Ready client 0..num_clients-1's data in ``folder``; returns each client's sample count."""
        self.check_clients(num_clients)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.layout == "mindspore-bin":
            return self._link_bins(num_clients, folder)
        cache = ConversionCache.default()
        if cache is None:
            return self._convert_json(num_clients, folder, seed)
        # LEAF's own train/test split does not depend on the seed; a 9:1 split made here does
        slot = slot_name("femnist-leaf", root=self.root.resolve(), seed=seed if "all" in self._where else None)
        try:
            identity = {split_name: file_identity(files) for split_name, files in self._where.items()}
        except OSError as err:
            raise DataSetError(f"{self.root}: a file changed while it was read ({err})") from None
        return cache.provide(slot, identity, num_clients, folder,
                             lambda into: self._convert_json(num_clients, into, seed))

    def _link_bins(self, num_clients: int, folder: Path) -> list[int]:
        counts = []
        for client, writer in enumerate(self.writers[:num_clients]):
            files = bin_files(self._where[writer])
            counts.append(sum(_bin_count(files[(s, "data")], files[(s, "label")]) for s in _SPLITS))
            os.symlink(Path(self._where[writer]).resolve(), client_dir(folder, client), target_is_directory=True)
        return counts

    def _convert_json(self, num_clients: int, folder: Path, seed: int) -> list[int]:
        client_of = {w: i for i, w in enumerate(self.writers[:num_clients])}
        staged: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}  # a writer's splits seen so far
        counts: dict[int, int] = {}
        for split_name, files in self._where.items():
            for path in files:
                if path in self._users_in and not self._users_in[path] & client_of.keys():
                    continue  # none of this run's writers: not parsed
                for user, (x, y) in _read_leaf_json(path).items():
                    if user in client_of:
                        staged.setdefault(user, {})[split_name] = (grey_to_uint8_32(x.reshape(-1, 28, 28)), y)
                        if set(staged[user]) == set(self._where):
                            counts[client_of[user]] = _write_client(folder, client_of[user], staged.pop(user), seed)
        missing = [w for w, c in client_of.items() if c not in counts]
        if missing:
            raise DataSetError(f"{self.root}: writer {missing[0]} is listed in 'users' but lacks data "
                               f"in {' and '.join(self._where)}")
        return [counts[i] for i in range(num_clients)]


def _write_client(folder: Path, client: int, parts: dict, seed: int) -> int:
    if "all" in parts:
        x, y = parts["all"]
        if len(y) < 2:
            raise DataSetError(f"writer of client {client} has {len(y)} sample(s): a split needs 2")
        train, test = train_test_split(np.arange(len(y)), TEST_FRACTION, seed=seed * 100_003 + client)
        parts = {"train": (x[train], y[train]), "test": (x[test], y[test])}
    np.savez(partition_file(folder, client),
             x_train=parts["train"][0], y_train=parts["train"][1],
             x_test=parts["test"][0], y_test=parts["test"][1], num_classes=np.int64(NUM_CLASSES))
    return len(parts["train"][1]) + len(parts["test"][1])


def open_femnist(data_dir: str | Path | None) -> FemnistSource:
    """Detect the layout and list the writers (for LEAF: every file's ``users``)."""
    root = data_folder("femnist", data_dir, "(LEAF's JSON folder or MindSpore's writer folders)")
    if (root / "train").is_dir() and (root / "test").is_dir() and list((root / "train").glob("*.json")):
        return _leaf(root, {"train": sorted((root / "train").glob("*.json")),
                            "test": sorted((root / "test").glob("*.json"))})
    for folder in (root, root / "all_data"):
        if folder.is_dir() and (found := sorted(folder.glob("*.json"))):
            return _leaf(root, {"all": found})
    writers = {p.parent.name: p.parent for p in root.glob("*/*_bn_*_train_data.bin")}
    if writers:
        return FemnistSource(root, "mindspore-bin", sorted(writers), channels=BIN_SHAPE[2], _where=writers)
    raise DataSetError(f"{root} holds neither LEAF JSON (*.json, or train/ and test/) nor MindSpore writer folders "
                       "(<user>/<user>_bn_<n>_train_data.bin)")


def _leaf(root: Path, files: dict[str, list[Path]]) -> FemnistSource:
    writers: set[str] = set()
    users_in = {}
    for split_name, paths in files.items():
        for path in paths:
            users_in[path] = _leaf_users(path, parse_all=split_name != "test")
            if split_name != "test":
                writers.update(users_in[path] or ())
    listed = {path: users for path, users in users_in.items() if users is not None}
    return FemnistSource(root, "leaf-json", sorted(writers), channels=1, _where=files, _users_in=listed)


def _leaf_users(path: Path, parse_all: bool = True) -> set[str] | None:
    """The file's ``users``; LEAF writes them before ``user_data``, so the images are rarely parsed here.

    None when they are not at the head and ``parse_all`` is off.
    """
    data = _leaf_head(path)
    if data is None and not parse_all:
        return None
    data = data or _load_json(path)
    users = data.get("users")
    if not isinstance(users, list):
        raise DataSetError(f"{path} is not a LEAF file: no 'users' list")
    return {str(u) for u in users}


def _leaf_head(path: Path, chunk: int = 1 << 20) -> dict | None:
    """``{"users": ..., "num_samples": ...}`` parsed from the text before ``"user_data"``, or None."""
    head = ""
    try:
        with open(path, encoding="utf-8") as fh:
            while (piece := fh.read(chunk)):
                head += piece
                if (at := head.find('"user_data"')) >= 0:
                    break
            else:
                return None
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = json.loads(head[:at].rstrip().rstrip(",") + "}")
    except ValueError:
        return None
    return data if isinstance(data, dict) and "users" in data else None


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as err:
        raise DataSetError(f"{path} cannot be read as JSON ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise DataSetError(f"{path} is not a LEAF file: the top level is not an object")
    return data


def _read_leaf_json(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{user: (x float32 (n, 784), y int64 (n,))} of one LEAF file, checked."""
    data = _load_json(path)
    out = {}
    for user, record in (data.get("user_data") or {}).items():
        try:
            x = np.asarray(record["x"], dtype=np.float32).reshape(-1, 784)
            y = np.asarray(record["y"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as err:
            raise DataSetError(f"{path}: user {user}: expected x as lists of 784 floats and y as ints "
                               f"({err})") from None
        if len(x) != len(y):
            raise DataSetError(f"{path}: user {user} has {len(x)} images and {len(y)} labels")
        if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
            raise DataSetError(f"{path}: user {user} has labels outside 0..{NUM_CLASSES - 1}")
        out[str(user)] = (x, y)
    return out


def bin_files(folder: str | Path) -> dict[tuple[str, str], Path]:
    """{(train|test, data|label): path} of one MindSpore writer folder."""
    folder = Path(folder)
    found = {}
    for split_name in _SPLITS:
        for kind in ("data", "label"):
            matches = sorted(folder.glob(f"*_bn_*_{split_name}_{kind}.bin"))
            if len(matches) != 1:
                raise DataSetError(f"{folder}: expected one *_bn_*_{split_name}_{kind}.bin, found {len(matches)}")
            found[(split_name, kind)] = matches[0]
    return found


def _bin_count(data: Path, label: Path) -> int:
    per_image = int(np.prod(BIN_SHAPE)) * 4
    data_bytes, label_bytes = data.stat().st_size, label.stat().st_size
    if data_bytes % per_image or label_bytes % 4 or data_bytes // per_image != label_bytes // 4:
        raise DataSetError(f"{data.parent}: {data.name} ({data_bytes} B) and {label.name} ({label_bytes} B) do not "
                           f"hold the same number of float32 {BIN_SHAPE} images and int32 labels")
    return label_bytes // 4


def read_writer_bins(folder: str | Path) -> dict[str, np.ndarray]:
    """One writer's arrays: x_* float32 (n, 3, 32, 32), y_* int64."""
    files = bin_files(folder)
    out = {}
    for split_name in _SPLITS:
        _bin_count(files[(split_name, "data")], files[(split_name, "label")])
        x = np.fromfile(files[(split_name, "data")], dtype="<f4").reshape(-1, *BIN_SHAPE)
        out[f"x_{split_name}"] = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        y = np.fromfile(files[(split_name, "label")], dtype="<i4").astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
            raise DataSetError(f"{files[(split_name, 'label')]} has labels outside 0..{NUM_CLASSES - 1}")
        out[f"y_{split_name}"] = y
    return out
