"""The loaders on real formats: CIFAR-10 pickles written here, scikit-learn's digits."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from partitions import split
from simulator.client_data import load_partition, write_partitions
from simulator.datasets import DataSetError, load_dataset


def write_cifar(root, per_batch=20, batches=("data_batch_1", "data_batch_2", "test_batch")):
    """Batches in CIFAR-10's python format: dict with b"data" (N, 3072) uint8 channel-major, b"labels"."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in batches:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        with open(folder / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, fh)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}, fh)
    return folder, written


def test_cifar10_reads_the_pickle_format(tmp_path):
    folder, written = write_cifar(tmp_path)
    for given in (folder, tmp_path):  # the batches folder itself, or its parent
        ds = load_dataset("cifar10", given)
        assert ds.x.shape == (60, 3, 32, 32) and ds.x.dtype == np.uint8
        assert ds.num_classes == 10 and ds.channels == 3
    data, labels = written["data_batch_1"]
    # channel-major: the first 1024 values are the red plane, row by row
    assert ds.x[0, 0, 0, 5] == data[0, 5]
    assert ds.x[0, 1, 2, 3] == data[0, 1024 + 2 * 32 + 3]
    assert ds.x[0, 2, 31, 31] == data[0, 3071]
    assert ds.y[:20].tolist() == labels


def test_cifar10_errors_are_one_line(tmp_path):
    with pytest.raises(DataSetError, match="does not exist"):
        load_dataset("cifar10", tmp_path / "missing")
    with pytest.raises(DataSetError, match="holds none of"):
        load_dataset("cifar10", tmp_path)
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"this is not a pickle")
    with pytest.raises(DataSetError, match="not a CIFAR-10 python batch"):
        load_dataset("cifar10", folder)
    with pytest.raises(DataSetError, match="needs --data-dir"):
        load_dataset("cifar10", None)


def test_digits_is_the_real_bundled_set_at_32x32():
    ds = load_dataset("digits")
    assert ds.x.shape == (1797, 1, 32, 32) and ds.num_classes == 10
    assert np.bincount(ds.y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert ds.x.max() == 255 and ds.x.min() == 0


def test_digits_are_scikit_learns_own_load_digits_read_without_importing_it():
    """The same images and labels as scikit-learn's load_digits gives (the oracle, imported here), while a process
    that loads the set never imports scikit-learn (its import cost fl-launch ~1.5 s before any process started)."""
    from sklearn.datasets import load_digits

    from simulator.datasets import grey_to_uint8_32

    bunch = load_digits()
    ds = load_dataset("digits")
    assert np.array_equal(ds.x, grey_to_uint8_32(bunch.images.astype(np.float32) / 16.0))
    assert np.array_equal(ds.y, bunch.target) and ds.y.dtype == np.int64
    probe = ("import sys; from simulator.datasets import load_dataset; load_dataset('digits'); "
             "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "[]", out


def test_synthetic_shape_and_determinism():
    a = load_dataset("synthetic", seed=4, num_samples=50, num_classes=5)
    b = load_dataset("synthetic", seed=4, num_samples=50, num_classes=5)
    assert a.x.shape == (50, 3, 32, 32) and set(np.unique(a.y)) <= set(range(5))
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)


def test_partition_files_round_trip(tmp_path):
    ds = load_dataset("digits")
    parts = split(ds.y, 4, "iid", seed=0)
    files = write_partitions(ds, parts, tmp_path, seed=0)
    assert [f.name for f in files] == [f"client_{i}.npz" for i in range(4)]
    part = load_partition(files[2])
    assert part.num_train + part.num_test == len(parts[2])
    assert part.x_train.dtype.is_floating_point and part.x_train.shape[1:] == (1, 32, 32)
    assert float(part.x_train.min()) >= -1.0 and float(part.x_train.max()) <= 1.0
    assert part.num_classes == 10
