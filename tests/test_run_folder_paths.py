"""A run folder is self-contained: a copy or a moved folder resumes where it is now, and serving a model
from a relative log dir works.

    python3 -m pytest -q tests/test_run_folder_paths.py
"""

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import run, run_json, running, runs, wait_until_nothing_tagged

TRAIN = ("--client-num", "2", "--rounds", "4", "--local-epochs", "1", "--dataset", "digits", "--grace", "3")


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under the folder (links as their targets) with a hash of its bytes."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _checkpoints(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("round_*.pt"))


def _interrupted_run(log_dir: Path) -> Path:
    """A 4-round training run stopped by Ctrl-C once round 2's checkpoint is written."""
    with running(*TRAIN, log_dir=log_dir) as (proc, run_dir):
        deadline = time.monotonic() + 240
        while not (run_dir / "checkpoints" / "round_0002.pt").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "round 2 never ended"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert wait_until_nothing_tagged(run_dir.name) == []
    assert max(_checkpoints(run_dir)) < 4  # rounds are left for a resume
    return run_dir


@pytest.mark.slow
def test_resuming_a_copy_writes_only_into_the_copy(tmp_path):
    original = _interrupted_run(tmp_path / "a")
    before = _snapshot(original)
    done = max(_checkpoints(original))
    copy = tmp_path / "b" / original.name
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(original), str(copy)], check=True)

    again = run("fl-launch", "--resume", original.name, "--log-dir", str(tmp_path / "b"), timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    assert wait_until_nothing_tagged(original.name) == []
    assert _snapshot(original) == before  # not one byte of the original changed, no file came or went
    assert _checkpoints(copy) == list(range(5))  # the copy got the new rounds
    info = run_json(copy)
    assert info["status"] == "finished" and info["rounds_done"] == 4 and info["resumed_from_round"] == done + 1
    for client in (0, 1):
        assert f"resumed from round {done + 1}" in (copy / f"client_{client}" / "client.log").read_text()
        assert "iteration:4/4 start" in (copy / f"client_{client}" / "client.log").read_text()


@pytest.mark.slow
def test_resume_after_the_log_dir_moved(tmp_path):
    run_dir = _interrupted_run(tmp_path / "a")
    shutil.move(tmp_path / "a", tmp_path / "moved")
    moved = tmp_path / "moved" / run_dir.name

    again = run("fl-launch", "--resume", run_dir.name, "--log-dir", str(tmp_path / "moved"), timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    assert wait_until_nothing_tagged(run_dir.name) == []
    assert run_json(moved)["status"] == "finished" and run_json(moved)["rounds_done"] == 4
    assert _checkpoints(moved) == list(range(5))
    assert not (tmp_path / "a").exists()  # nothing written where the folder used to be


def test_no_file_of_a_run_folder_names_where_it_is(tmp_path):
    result = run("fl-launch", "--client-num", "2", "--rounds", "1", "--local-epochs", "1", "--tls",
                 "--log-dir", str(tmp_path / "logs"), timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = runs(tmp_path / "logs")[0]
    where = str(run_dir).encode()
    stored = [run_dir / "run.json", run_dir / "app" / "pyproject.toml",
              *run_dir.glob("client_*/node_config.toml"), *run_dir.rglob("*run_config*"),
              *(run_dir / "flwr_home").rglob("pyproject.toml")]  # the app as Flower installed it
    assert len(stored) >= 5
    assert [str(p.relative_to(run_dir)) for p in stored if where in p.read_bytes()] == []


@pytest.mark.slow
def test_get_model_and_inference_from_a_relative_log_dir(tmp_path):
    trained = run("fl-launch", "--client-num", "2", "--rounds", "2", "--local-epochs", "1", "--log-dir", "logs",
                  cwd=tmp_path, timeout=400)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    (train_dir,) = runs(tmp_path / "logs")
    final = torch.load(train_dir / "checkpoints" / "round_0002.pt", weights_only=True)

    for task in ("getModel", "inference"):
        served = run("fl-launch", "--client-num", "2", "--task", task, "--log-dir", "logs", cwd=tmp_path, timeout=400)
        assert served.returncode == 0, served.stdout + served.stderr
        run_dir = (tmp_path / "logs" / "latest").resolve()
        info = run_json(run_dir)
        assert info["status"] == "finished" and info["source_run"] == train_dir.name
        assert info["source_checkpoint"] == f"{train_dir.name}/checkpoints/round_0002.pt"
        copy = torch.load(run_dir / "served" / "round_0002.pt", weights_only=True)  # the folder holds what it served
        assert copy.keys() == final.keys() and all(torch.equal(copy[k], final[k]) for k in final)
        for client in (0, 1):
            log = (run_dir / f"client_{client}" / "client.log").read_text()
            if task == "getModel":
                got = torch.load(run_dir / f"client_{client}" / "model.pt", weights_only=True)
                assert got.keys() == final.keys() and all(torch.equal(got[k], final[k]) for k in final)
                assert "[getModel] get response from server ok!" in log
            else:
                assert "[model inference] the predicted labels: [" in log
    assert len(runs(tmp_path / "logs")) == 3
