"""A run is finished only when it did what was asked; a round not aggregated is not done.

Real fl-launch runs, judged by the checkpoints (hashes, tensors loaded with torch, a model evaluated here
on a client's test split) and by the exit code and run.json a user sees.
"""

import hashlib
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import torch

from simulator.model import LeNet5
from tests.helpers import run, run_json, runs, start, wait_until_nothing_tagged

SMALL = ("--client-num", "2", "--dataset", "digits", "--local-epochs", "1")


def _file_hashes(run_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((run_dir / "checkpoints").glob("*.pt"))}


def _content_hash(path: Path) -> str:
    """The tensors' values (file bytes differ by name alone: torch.save records the file's stem)."""
    h = hashlib.sha256()
    for name, tensor in sorted(torch.load(path, map_location="cpu", weights_only=True).items()):
        h.update(name.encode())
        h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()


def _wait_for_text(path: Path, text: str, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text()):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}"
        time.sleep(0.02)


def _the_run(log_dir: Path, proc) -> Path:
    deadline = time.monotonic() + 60
    while not runs(log_dir):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return runs(log_dir)[0]


def _accuracy_on_client_test_split(checkpoint: Path, data_file: Path) -> float:
    """LeNet5 for digits (1 channel, 10 classes) with the checkpoint's weights, on the client's own test
    images, normalised as the client does it (uint8 to -1..1)."""
    model = LeNet5(channels=1, num_classes=10)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    model.eval()
    with np.load(data_file) as npz:
        x, y = npz["x_test"], npz["y_test"]
    images = torch.from_numpy(x).float()
    if x.dtype == np.uint8:
        images = images / 127.5 - 1.0
    if images.ndim == 3:
        images = images[:, None]
    with torch.no_grad():
        predicted = model(images).argmax(1).numpy()
    return float((predicted == y).mean())


def test_a_stop_mid_round_then_resume_trains_that_round_once_from_the_last_checkpoint(tmp_path):
    rounds = 4
    proc = start("fl-launch", *SMALL, "--rounds", str(rounds), "--batch-size", "4", "--log-dir", str(tmp_path))
    try:
        run_dir = _the_run(tmp_path, proc)
        _wait_for_text(run_dir / "server" / "server.log", f"[round] iteration:2/{rounds} start", proc)
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out
    assert wait_until_nothing_tagged(run_dir.name) == []
    before = _file_hashes(run_dir)
    assert sorted(before) == ["round_0000.pt", "round_0001.pt"], before  # none for the interrupted round 2

    again = run("fl-launch", "--resume", run_dir.name, "--log-dir", str(tmp_path), timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    after = _file_hashes(run_dir)
    assert sorted(after) == [f"round_{r:04d}.pt" for r in range(rounds + 1)]
    assert {name: after[name] for name in before} == before  # what was done stays byte for byte
    contents = [_content_hash(run_dir / "checkpoints" / f"round_{r:04d}.pt") for r in range(rounds + 1)]
    assert all(a != b for a, b in zip(contents, contents[1:])), "a round left the model as it was"
    assert run_json(run_dir)["rounds_done"] == rounds

    # The resumed round 2 started from round_0001.pt: client 0 evaluated what it received before training.
    log = (run_dir / "client_0" / "client.log").read_text()
    resumed = log[log.index("[launcher] resumed from round 2"):]
    round_two = resumed[resumed.index(f"[round] iteration:2/{rounds} start"):]
    logged = float(re.search(r"evaluate acc: ([\d.]+)", round_two).group(1))
    data = run_dir / "data" / "client_0.npz"
    expected = _accuracy_on_client_test_split(run_dir / "checkpoints" / "round_0001.pt", data)
    initial = _accuracy_on_client_test_split(run_dir / "checkpoints" / "round_0000.pt", data)
    assert abs(expected - initial) > 0.05  # the check below tells the two models apart
    assert abs(logged - expected) < 1e-6, (logged, expected, initial)
    assert wait_until_nothing_tagged(run_dir.name) == []


def test_inference_with_a_model_the_data_does_not_fit_fails(tmp_path):
    trained = run("fl-launch", "--client-num", "2", "--dataset", "synthetic", "--num-classes", "5",
                  "--samples-per-client", "60", "--rounds", "1", "--local-epochs", "1", "--log-dir", str(tmp_path))
    assert trained.returncode == 0, trained.stdout + trained.stderr
    served = run("fl-launch", "--client-num", "2", "--task", "inference", "--log-dir", str(tmp_path), timeout=300)
    assert served.returncode == 1, served.stdout + served.stderr
    run_dir = [d for d in runs(tmp_path) if run_json(d)["task"] == "inference"][0]
    info = run_json(run_dir)
    assert info["status"] == "failed", info
    assert "0 of 2" in info["reason"] and "worker.log" in info["reason"], info["reason"]
    assert "status: failed" in served.stdout
    assert wait_until_nothing_tagged(run_dir.name) == []


def test_a_model_that_becomes_nan_fails_the_run_and_is_not_checkpointed(tmp_path):
    """Adam with a step of 1e19 overflows BatchNorm's running variance within an epoch: the model goes NaN.
    (NaN in the data itself is refused before anything starts: tests/test_inputs_catalogue.py.)"""
    result = run("fl-launch", "--client-num", "2", "--rounds", "3", "--local-epochs", "2", "--lr", "1e19",
                 "--log-dir", str(tmp_path / "logs"), timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    run_dir = runs(tmp_path / "logs")[0]
    info = run_json(run_dir)
    assert info["status"] == "failed" and "round 1" in info["reason"] and "non-finite" in info["reason"], info
    saved = sorted((run_dir / "checkpoints").glob("*.pt"))
    assert saved, "not even the initial model was saved"
    for path in saved:
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert all(torch.isfinite(t.float()).all() for t in state.values()), path.name
    assert [p.name for p in saved] == ["round_0000.pt"]  # round 1 was the bad one: nothing after it
    assert wait_until_nothing_tagged(run_dir.name) == []


def test_a_round_a_hung_client_never_answered_is_skipped_and_the_run_fails(tmp_path):
    timeout = 8
    proc = start("fl-launch", *SMALL, "--rounds", "2", "--batch-size", "4", "--round-timeout", str(timeout),
                 "--log-dir", str(tmp_path))
    stopped = None
    try:
        run_dir = _the_run(tmp_path, proc)
        server_log = run_dir / "server" / "server.log"
        _wait_for_text(server_log, "[round] iteration:1/2 start", proc)
        victim = next(p for p in run_json(run_dir)["processes"] if p["role"] == "client" and p["client"] == 0)
        stopped = os.getpgid(victim["pid"])  # its own session: the task child it forked is in the group
        os.killpg(stopped, signal.SIGSTOP)
        _wait_for_text(server_log, "[round] iteration:1/2 end", proc, timeout=timeout + 60)
        os.killpg(stopped, signal.SIGCONT)
        stopped = None
        out, _ = proc.communicate(timeout=180)
    finally:
        if stopped is not None:
            os.killpg(stopped, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out
    info = run_json(run_dir)
    assert info["status"] == "failed", info
    assert re.search(r"\bround 1\b", info["reason"]) and "timed out" in info["reason"], info["reason"]
    assert f"after {timeout} s" in info["reason"], info["reason"]
    assert "round 1" in out and "timed out" in out  # the summary says it too
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
    assert names == ["round_0000.pt", "round_0002.pt"], names  # round 2 went on; round 1 has no checkpoint
    assert info["rounds_done"] == 0  # no round done without a gap
    assert wait_until_nothing_tagged(run_dir.name) == []
    initial = hashlib.sha256((run_dir / "checkpoints" / "round_0000.pt").read_bytes()).hexdigest()
    resumed = run("fl-launch", "--resume", run_dir.name, "--log-dir", str(tmp_path), timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == 2 and info["resumed_from_round"] == 1
    assert hashlib.sha256((run_dir / "checkpoints" / "round_0000.pt").read_bytes()).hexdigest() == initial
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt")) == \
        ["round_0000.pt", "round_0001.pt", "round_0002.pt"]
