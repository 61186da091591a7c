"""LEAF's JSON is converted once: later runs of the same files and seed link the cached client files.

Oracles: the file bytes (sha256) against a conversion with the cache off; inodes (a run's client file shares
its inode with the cache entry it was linked from, and a rebuilt entry has new ones); and sources whose
images are destroyed while their size, mtime and ``users`` head are kept, which only a conversion reads.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.femnist_files import write_leaf
from simulator.client_data import load_partition
from simulator.femnist import open_femnist
from tests.helpers import run, run_json, runs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("FL_LAUNCH_CACHE", str(folder))
    return folder


def _write(root, folder, clients, seed=0):
    return open_femnist(root).write_clients(clients, folder, seed=seed)


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).glob("client_*.npz"))}


def _inodes(folder):
    return {p.name: p.stat().st_ino for p in sorted(Path(folder).glob("client_*.npz"))}


def _uncached(root, folder, clients, monkeypatch, seed=0):
    with monkeypatch.context() as m:
        m.setenv("FL_LAUNCH_CACHE", "off")
        _write(root, folder, clients, seed)
    return _hashes(folder)


def _entries(cache):
    return sorted(p for p in cache.iterdir() if "." not in p.name) if cache.exists() else []


def _destroy_images(root):
    """Every JSON file's ``user_data`` made unparsable; its size, mtime and ``users`` head kept."""
    for path in sorted(root.rglob("*.json")):
        st = path.stat()
        text = path.read_text()
        at = text.index('"user_data"') + len('"user_data"')
        path.write_text(text[:at] + "x" * (len(text) - at))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert path.stat().st_size == st.st_size


def test_the_second_run_links_the_first_runs_conversion_and_converts_nothing(tmp_path, cache, monkeypatch):
    root = tmp_path / "leaf"
    write_leaf(root, writers=12, per_writer=(10, 20), users_per_file=5)
    plain = _uncached(root, tmp_path / "plain", 8, monkeypatch, seed=3)
    counts = _write(root, tmp_path / "run1", 8, seed=3)
    [entry] = _entries(cache)
    assert _hashes(tmp_path / "run1") == plain  # byte for byte what a conversion without the cache writes
    assert _inodes(tmp_path / "run1") == _inodes(entry) and len(plain) == 8
    _destroy_images(root)
    assert _write(root, tmp_path / "run2", 8, seed=3) == counts  # a conversion would fail on every file
    assert _hashes(tmp_path / "run2") == plain
    assert _inodes(tmp_path / "run2") == _inodes(tmp_path / "run1")
    assert _write(root, tmp_path / "run3", 5, seed=3) == counts[:5]  # fewer clients: the same entry
    # removing the cache takes nothing from the runs that linked it (as before a --resume)
    shutil.rmtree(cache)
    assert _hashes(tmp_path / "run2") == plain
    assert load_partition(tmp_path / "run2" / "client_7.npz").y_train.numel() > 0


def test_another_seed_is_another_entry_and_leaf_split_folders_ignore_the_seed(tmp_path, cache, monkeypatch):
    root = tmp_path / "leaf"
    write_leaf(root, writers=6, per_writer=(20, 30))
    _write(root, tmp_path / "s1", 4, seed=1)
    _write(root, tmp_path / "s2", 4, seed=2)
    assert len(_entries(cache)) == 2
    assert _hashes(tmp_path / "s2") == _uncached(root, tmp_path / "plain2", 4, monkeypatch, seed=2)
    split = tmp_path / "split"
    write_leaf(split, writers=6, per_writer=(20, 30), split=True)
    _write(split, tmp_path / "t1", 4, seed=1)
    _write(split, tmp_path / "t2", 4, seed=2)
    assert len(_entries(cache)) == 3 and _inodes(tmp_path / "t1") == _inodes(tmp_path / "t2")


def _change(kind, root):
    files = sorted(root.glob("*.json"))
    if kind == "touched":
        os.utime(files[0], ns=(time.time_ns(), files[0].stat().st_mtime_ns + 1_000_000_000))
    elif kind == "labels changed":
        doc = json.loads(files[0].read_text())
        for user in doc["users"]:
            doc["user_data"][user]["y"] = [(v + 1) % 62 for v in doc["user_data"][user]["y"]]
        files[0].write_text(json.dumps(doc))
    elif kind == "file added":  # a writer that sorts first: client 0 is now it
        x = [[0.5] * 784] * 12
        (root / "zz_extra.json").write_text(json.dumps({"users": ["a0000"], "num_samples": [12],
                                                        "user_data": {"a0000": {"x": x, "y": [7] * 12}}}))
    elif kind == "file removed":
        files[-1].unlink()
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["touched", "labels changed", "file added", "file removed"])
def test_a_changed_source_is_converted_again(tmp_path, cache, monkeypatch, kind):
    root = tmp_path / "leaf"
    write_leaf(root, writers=12, per_writer=(10, 20), users_per_file=5)
    _write(root, tmp_path / "run1", 6)
    _change(kind, root)
    _write(root, tmp_path / "run2", 6)
    before, after = _inodes(tmp_path / "run1"), _inodes(tmp_path / "run2")
    assert not set(before.values()) & set(after.values())  # nothing linked from the stale entry
    assert _hashes(tmp_path / "run2") == _uncached(root, tmp_path / "plain", 6, monkeypatch)
    [entry] = _entries(cache)  # the stale entry was replaced, not kept beside it
    assert _inodes(entry) == after


def test_two_data_sets_never_share_an_entry(tmp_path, cache, monkeypatch):
    a, b, copy = tmp_path / "a", tmp_path / "b", tmp_path / "copy"
    names = write_leaf(a, writers=6, per_writer=(10, 20), seed=0)
    assert write_leaf(b, writers=6, per_writer=(10, 20), seed=1) == names  # the same writers, other images
    shutil.copytree(a, copy)
    for source in (a, b, copy):
        _write(source, tmp_path / f"run-{source.name}", 6)
    assert len(_entries(cache)) == 3
    assert _hashes(tmp_path / "run-b") == _uncached(b, tmp_path / "plain-b", 6, monkeypatch)
    assert _hashes(tmp_path / "run-b") != _hashes(tmp_path / "run-a") == _hashes(tmp_path / "run-copy")
    inodes = [set(_inodes(tmp_path / f"run-{s.name}").values()) for s in (a, b, copy)]
    assert not inodes[0] & inodes[1] and not inodes[0] & inodes[2] and not inodes[1] & inodes[2]


@pytest.mark.parametrize("harm", ["truncated file", "missing file", "no manifest", "manifest cut short"])
def test_a_broken_entry_is_converted_again(tmp_path, cache, monkeypatch, harm):
    root = tmp_path / "leaf"
    write_leaf(root, writers=8, per_writer=(10, 20))
    _write(root, tmp_path / "run1", 6)
    [entry] = _entries(cache)
    # the run's own files are links: harm done to the entry in place would reach run1 too, so it is done on copies
    for path in entry.iterdir():
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)
    target = entry / "client_3.npz"
    if harm == "truncated file":
        target.write_bytes(target.read_bytes()[:-100])
    elif harm == "missing file":
        target.unlink()
    elif harm == "no manifest":
        (entry / "manifest.json").unlink()
    else:
        text = (entry / "manifest.json").read_text()
        (entry / "manifest.json").write_text(text[: len(text) // 2])
    _write(root, tmp_path / "run2", 6)
    plain = _uncached(root, tmp_path / "plain", 6, monkeypatch)
    assert _hashes(tmp_path / "run2") == plain == _hashes(tmp_path / "run1")
    load_partition(tmp_path / "run2" / "client_3.npz")
    [entry] = _entries(cache)
    assert _inodes(entry) == _inodes(tmp_path / "run2")


def _converter(root, out, clients):
    code = ("import sys; from simulator.femnist import open_femnist; "
            "open_femnist(sys.argv[1]).write_clients(int(sys.argv[3]), sys.argv[2], seed=0)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", code, str(root), str(out), str(clients)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_conversion_killed_midway_leaves_no_entry_and_the_next_run_converts(tmp_path, cache, monkeypatch):
    root = tmp_path / "leaf"
    write_leaf(root, writers=300, per_writer=(20, 40), users_per_file=20)
    proc = _converter(root, tmp_path / "killed", 300)
    deadline = time.monotonic() + 120
    while not list(cache.glob("*.tmp-*/client_*.npz")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _entries(cache) == [] and len(list(cache.glob("*.tmp-*"))) == 1  # only the half-written folder
    _write(root, tmp_path / "run", 300)
    assert list(cache.glob("*.tmp-*")) == []  # the dead process's folder removed
    assert _hashes(tmp_path / "run") == _uncached(root, tmp_path / "plain", 300, monkeypatch)


def test_two_runs_filling_the_cache_at_once_both_get_whole_partitions(tmp_path, cache, monkeypatch):
    root = tmp_path / "leaf"
    write_leaf(root, writers=60, per_writer=(20, 40), users_per_file=10)
    procs = [_converter(root, tmp_path / f"run{i}", 60) for i in range(2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    plain = _uncached(root, tmp_path / "plain", 60, monkeypatch)
    assert _hashes(tmp_path / "run0") == _hashes(tmp_path / "run1") == plain
    [entry] = _entries(cache)
    assert list(cache.glob("*.*-*")) == [] and _hashes(entry) == plain


def _launch(log_dir, data_dir, tag):
    return run("fl-launch", "--client-num", "2", "--rounds", "1", "--local-epochs", "1", "--mode", "process",
               "--dataset", "femnist", "--data-dir", str(data_dir), "--log-dir", str(log_dir), "--kill-tag", tag,
               timeout=600)


@pytest.mark.slow  # two 2-client runs, about 80 s
def test_fl_launch_twice_on_one_leaf_folder_converts_once(tmp_path, cache):
    root = tmp_path / "leaf"
    write_leaf(root, writers=4, per_writer=(20, 30))
    first = _launch(tmp_path / "logs1", root, "test-femnist-cache-1")
    assert first.returncode == 0, first.stdout + first.stderr
    _destroy_images(root)  # only a cached run can start now
    second = _launch(tmp_path / "logs2", root, "test-femnist-cache-2")
    assert second.returncode == 0, second.stdout + second.stderr
    (run1,), (run2,) = runs(tmp_path / "logs1"), runs(tmp_path / "logs2")
    assert run_json(run2)["status"] == "finished"
    assert _hashes(run1 / "data") == _hashes(run2 / "data") and len(_hashes(run2 / "data")) == 2
    for i in range(2):
        assert "[evaluate] evaluate acc" in (run2 / f"client_{i}" / "client.log").read_text()
