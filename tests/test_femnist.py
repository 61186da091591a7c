"""FEMNIST's two on-disk layouts, read into one data folder per run: client i is the i-th writer, sorted."""

import json

import numpy as np
import pytest

from benchmarks.femnist_files import write_leaf, write_mindspore
from simulator.client_data import load_partition, partition_files
from simulator.datasets import DataSetError
from simulator.femnist import open_femnist


def _leaf_users(folder):
    """{user: (x, y)} over every JSON file of a folder, read with json itself."""
    users = {}
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text())
        assert doc["num_samples"] == [len(doc["user_data"][u]["y"]) for u in doc["users"]]
        for user in doc["users"]:
            users[user] = (np.array(doc["user_data"][user]["x"]), np.array(doc["user_data"][user]["y"]))
    return users


def test_leaf_json_without_a_split_is_split_9_to_1_per_writer(tmp_path):
    names = write_leaf(tmp_path / "leaf", writers=12, per_writer=(10, 30), users_per_file=5)
    source = open_femnist(tmp_path / "leaf")
    assert (source.layout, source.channels, source.num_classes) == ("leaf-json", 1, 62)
    assert source.writers == sorted(names)
    counts = source.write_clients(7, tmp_path / "data", seed=3)
    users = _leaf_users(tmp_path / "leaf")
    assert len(partition_files(tmp_path / "data")) == 7
    for client, writer in enumerate(sorted(names)[:7]):
        part = load_partition(tmp_path / "data" / f"client_{client}.npz")
        x, y = users[writer]
        assert counts[client] == len(y) == len(part.y_train) + len(part.y_test)
        assert len(part.y_test) == max(1, round(len(y) * 0.1))
        assert sorted(part.y_train.tolist() + part.y_test.tolist()) == sorted(y.tolist())
        assert tuple(part.x_train.shape[1:]) == (1, 32, 32) and part.num_classes == 62
        # LEAF's pixels in 0..1 come out of the uint8 round trip in -1..1, resized 28 -> 32
        assert -1.0 <= float(part.x_train.min()) and float(part.x_train.max()) <= 1.0
        means = x.mean(axis=1)
        got = ((part.x_train.mean(dim=(1, 2, 3)) + 1) / 2).numpy()
        assert all(np.abs(means - g).min() < 0.02 for g in got)


def test_leaf_split_is_the_same_for_the_same_seed_and_not_for_another(tmp_path):
    write_leaf(tmp_path / "leaf", writers=4, per_writer=(20, 30))
    labels = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        open_femnist(tmp_path / "leaf").write_clients(4, tmp_path / name, seed=seed)
        labels[name] = [load_partition(tmp_path / name / f"client_{i}.npz").y_test.tolist() for i in range(4)]
    assert labels["a"] == labels["b"]
    assert labels["a"] != labels["c"]


def test_leaf_train_and_test_folders_are_kept_as_they_are(tmp_path):
    names = write_leaf(tmp_path / "leaf", writers=6, per_writer=(10, 20), split=True, users_per_file=4)
    source = open_femnist(tmp_path / "leaf")
    assert source.writers == sorted(names)
    source.write_clients(6, tmp_path / "data", seed=0)
    train, test = _leaf_users(tmp_path / "leaf" / "train"), _leaf_users(tmp_path / "leaf" / "test")
    for client, writer in enumerate(sorted(names)):
        part = load_partition(tmp_path / "data" / f"client_{client}.npz")
        assert part.y_train.tolist() == train[writer][1].tolist()
        assert part.y_test.tolist() == test[writer][1].tolist()


def test_mindspore_writer_folders_are_read_by_each_client_as_they_are(tmp_path):
    names = write_mindspore(tmp_path / "ms", writers=5, per_writer=(8, 40))
    source = open_femnist(tmp_path / "ms")
    assert (source.layout, source.channels, source.writers) == ("mindspore-bin", 3, sorted(names))
    counts = source.write_clients(3, tmp_path / "data", seed=0)
    assert len(partition_files(tmp_path / "data")) == 3
    for client, writer in enumerate(sorted(names)[:3]):
        folder = tmp_path / "ms" / writer
        [data] = folder.glob("*_train_data.bin")
        [label] = folder.glob("*_train_label.bin")
        [test_label] = folder.glob("*_test_label.bin")
        batches = int(data.name.split("_bn_")[1].split("_")[0])
        x = np.fromfile(data, dtype="<f4").reshape(-1, 32, 32, 3)
        y = np.fromfile(label, dtype="<i4")
        assert batches == (len(y) + 31) // 32
        part = load_partition(tmp_path / "data" / f"client_{client}.npz")
        assert np.array_equal(part.x_train.numpy(), x.transpose(0, 3, 1, 2))  # NHWC -> NCHW, floats untouched
        assert part.y_train.tolist() == y.tolist() and part.num_classes == 62
        assert counts[client] == len(y) + len(np.fromfile(test_label, dtype="<i4"))


def _break(kind, root):
    if kind == "more clients than writers":
        write_leaf(root, writers=3)
        return lambda: open_femnist(root).write_clients(4, root.parent / "d", seed=0), "3 writers"
    if kind == "not JSON":
        root.mkdir()
        (root / "all_data_0.json").write_text('{"users": ["a"], "user_data": {"a": {"x": [[0.1, ')
        return lambda: open_femnist(root).write_clients(1, root.parent / "d", seed=0), "cannot be read as JSON"
    if kind == "JSON that is not LEAF":
        root.mkdir()
        (root / "x.json").write_text('{"hello": 1}')
        return lambda: open_femnist(root), "no 'users' list"
    if kind == "images not 784 floats":
        root.mkdir()
        (root / "a.json").write_text(json.dumps({"users": ["u"], "num_samples": [2],
                                                 "user_data": {"u": {"x": [[0.5] * 10] * 2, "y": [1, 2]}}}))
        return lambda: open_femnist(root).write_clients(1, root.parent / "d", seed=0), "784 floats"
    if kind == "label past 61":
        root.mkdir()
        (root / "a.json").write_text(json.dumps({"users": ["u"], "num_samples": [2],
                                                 "user_data": {"u": {"x": [[0.5] * 784] * 2, "y": [1, 62]}}}))
        return lambda: open_femnist(root).write_clients(1, root.parent / "d", seed=0), "outside 0..61"
    if kind == "truncated .bin":
        [writer] = write_mindspore(root, writers=1)
        [data] = (root / writer).glob("*_train_data.bin")
        data.write_bytes(data.read_bytes()[:-7])
        return lambda: open_femnist(root).write_clients(1, root.parent / "d", seed=0), "do not hold the same number"
    if kind == "neither layout":
        (root / "x").mkdir(parents=True)
        (root / "x" / "notes.txt").write_text("hi")
        return lambda: open_femnist(root), "neither LEAF JSON"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["more clients than writers", "not JSON", "JSON that is not LEAF",
                                  "images not 784 floats", "label past 61", "truncated .bin", "neither layout"])
def test_bad_files_are_one_line_errors(tmp_path, kind):
    action, expected = _break(kind, tmp_path / "femnist")
    with pytest.raises(DataSetError) as err:
        action()
    assert expected in str(err.value) and "\n" not in str(err.value)
