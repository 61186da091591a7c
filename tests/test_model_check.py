"""--model is checked in a child that fl-launch forks while it prepares the run (launcher.run.plan._check_model):
the child never holds the run's lock, never outlives fl-launch, and what it reports is one line.

Oracles: the child's PID, written by the user's module itself while it is imported; /proc (its descriptors,
whether it lives); the run folder's lock taken by the test (flock), and the folders left in the log dir.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from launcher.run import plan
from launcher.run.plan import PlanError
from tests.helpers import run, runs, start

SLOW_IMPORT = '''"""Writes its process's PID next to itself, then takes its time being imported."""
import os
import time
from pathlib import Path

Path(__file__).with_name("child.pid").write_text(str(os.getpid()))
time.sleep(300)
'''


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait(what, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := what():
            return found
        time.sleep(0.05)
    return None


def _holds_lock_file(pid: int) -> bool:
    """Has ``pid`` a descriptor of some run folder's .supervisor.lock open?"""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/.supervisor.lock"):
                return True
        except OSError:
            continue
    return False


def _lock_free(run_dir: Path) -> bool:
    fd = os.open(run_dir / ".supervisor.lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _start_slow_check(tmp_path: Path):
    (tmp_path / "slowimport.py").write_text(SLOW_IMPORT)
    log_dir = tmp_path / "logs"
    proc = start("fl-launch", "--client-num", "2", "--rounds", "1", "--model", "slowimport:Net", "--log-dir",
                 str(log_dir), "--kill-tag", "t-model-check", cwd=tmp_path)
    pid_file = tmp_path / "child.pid"
    assert _wait(lambda: pid_file.exists() and pid_file.read_text(), 120), proc.communicate(timeout=5)[0]
    child = int(pid_file.read_text())
    assert child != proc.pid and _alive(child)
    return proc, child, log_dir


def _stop(proc: subprocess.Popen, child: int) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if _alive(child):
        os.kill(child, signal.SIGKILL)


def test_ctrl_c_during_the_model_check_stops_its_child_and_leaves_nothing(tmp_path):
    """Ctrl-C while the user's module takes its time at import: fl-launch ends at once (it waited for the
    child before), the child is gone, and no run folder is left; the child never had the run's lock."""
    proc, child, log_dir = _start_slow_check(tmp_path)
    try:
        assert not _holds_lock_file(child)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
        assert _wait(lambda: not _alive(child), 5), "the model check's child outlived fl-launch"
        assert runs(log_dir) == []
    finally:
        _stop(proc, child)


def test_fl_finish_during_the_model_check_stops_the_run_and_its_child(tmp_path):
    """fl-finish --kill-tag while fl-launch checks --model: fl-launch ends interrupted at once (before, it waited
    for the child until fl-finish killed it, and the child lived on with the run's lock), nothing is left."""
    proc, child, log_dir = _start_slow_check(tmp_path)
    try:
        started = time.monotonic()
        finished = run("fl-finish", "--kill-tag", "t-model-check", "--log-dir", str(log_dir), timeout=120)
        assert proc.wait(timeout=20) == 130, proc.communicate()[0]
        assert time.monotonic() - started < 30, finished.stdout
        assert _wait(lambda: not _alive(child), 5), "the model check's child outlived fl-launch"
        assert runs(log_dir) == []
    finally:
        _stop(proc, child)


def test_a_killed_fl_launch_takes_its_model_check_child_along_and_holds_no_lock(tmp_path):
    """fl-launch SIGKILLed while it checks --model: the child dies with it, and the run folder's lock is free
    (the run does not read as running)."""
    proc, child, log_dir = _start_slow_check(tmp_path)
    try:
        [run_dir] = runs(log_dir)
        assert not _lock_free(run_dir)  # fl-launch holds it while it prepares
        proc.kill()
        proc.wait()
        assert _wait(lambda: not _alive(child), 5), "the model check's child outlived fl-launch"
        assert _lock_free(run_dir)
    finally:
        _stop(proc, child)


def test_a_model_killed_by_a_real_time_signal_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "rtkill.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGRTMIN + 2)\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PlanError, match=r"^--model rtkill:Net: .* was killed by signal SIGRTMIN\+2$"):
        plan._check_model("rtkill:Net", (1, 28, 28), 10)


def test_an_empty_error_from_the_check_is_still_a_line(monkeypatch):
    def empty_error(*args):  # the pipe's write end comes last
        os.write(args[-1], b"error:  \n")
        return 0

    monkeypatch.setattr(plan, "_model_check_child", empty_error)
    with pytest.raises(PlanError, match=r"^--model m:Net: its check failed without saying why$"):
        plan._check_model("m:Net", (1, 28, 28), 10)


def test_the_built_in_model_is_named_in_the_check_s_messages(monkeypatch):
    import simulator.model  # noqa: PLC0415 (torch)

    def exits(*args, **kwargs):
        raise SystemExit(4)

    monkeypatch.setattr(simulator.model, "check_model", exits)
    with pytest.raises(PlanError, match=r"^the built-in LeNet5 \(--model\): it called sys.exit\(4\)"):
        plan._check_model("", (1, 28, 28), 10)
