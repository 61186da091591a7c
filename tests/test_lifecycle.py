"""A run's life around its supervisor: who is alive, resume, stop; judged by PIDs seen while live.

Each test reproduces a failure of issue 14 on the code before it (a foreground run read as interrupted,
two resumes at once, orphans resumed over, Ray's agents outliving fl-finish, slow or lossy Ctrl-C, a full
disk), and judges with the kernel's view: the processes (pid and start time) seen under the supervisor or
recorded while the run lived must all be gone; never the launcher's own tag matcher.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import Seen, run, run_json, running, runs, start, wait_for_status

SMALL = ("--client-num", "2", "--local-epochs", "1", "--grace", "5")


def _tag(name: str) -> str:
    return f"lc-{name}-{os.getpid()}"


def _runs_json(log_dir: Path) -> dict:
    listed = run("fl-stats", "--runs", "--json", "--log-dir", str(log_dir))
    assert listed.returncode == 0, listed.stderr
    return {row["run"]: row for row in json.loads(listed.stdout)}


def _one_line_error(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_foreground_run_is_alive_to_every_check_and_fl_finish_stops_it_whole(tmp_path):
    tag = _tag("fg")
    decoy = subprocess.Popen(["sleep", "600"], env=dict(os.environ, FL_LAUNCH_TAG=tag))  # not started by a run
    seen = Seen()
    try:
        with running(*SMALL, "--rounds", "200", "--kill-tag", tag, log_dir=tmp_path / "logs") as (proc, run_dir):
            assert seen.watch(proc.pid, 2, run_dir) >= 6
            assert _runs_json(tmp_path / "logs")[run_dir.name]["status"] == "running"
            assert "still running" in _one_line_error(
                run("fl-launch", "--resume", run_dir.name, "--log-dir", str(tmp_path / "logs")))
            other = tmp_path / "other"
            assert f"kill tag {tag} is carried by a live run" in _one_line_error(
                run("fl-launch", *SMALL, "--kill-tag", tag, "--log-dir", str(other)))
            assert runs(other) == []
            seen.snapshot(proc.pid, run_dir)
            stopped = run("fl-finish", "--kill-tag", tag, "--log-dir", str(tmp_path / "logs"), "--grace", "5")
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
            assert seen.alive() == []  # gone when fl-finish returns: supervisor, SuperLink, nodes, clients
            proc.communicate(timeout=30)
        assert proc.returncode == 130  # interrupted by the stop, not failed by restarting its clients
        assert run_json(run_dir)["status"] == "interrupted"
        assert run_json(run_dir).get("restarts", []) == []  # no client restarted while the run was stopped
        assert decoy.poll() is None  # FL_LAUNCH_TAG set by hand does not make a process the run's
    finally:
        decoy.kill()
        decoy.wait()


def _interrupted_run(log_dir: Path, rounds: int) -> Path:
    """A training run stopped by Ctrl-C after its first checkpointed round."""
    with running(*SMALL, "--rounds", str(rounds), log_dir=log_dir) as (proc, run_dir):
        _wait(lambda: (run_dir / "checkpoints" / "round_0001.pt").exists(), 60, "round 1's checkpoint")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert run_json(run_dir)["status"] == "interrupted"
    return run_dir


def test_two_resumes_of_one_run_started_together_one_is_refused(tmp_path):
    run_dir = _interrupted_run(tmp_path, rounds=40)
    both = [start("fl-launch", "--resume", run_dir.name, "--log-dir", str(tmp_path))]
    time.sleep(0.3)  # as a user would, a moment apart: either may reach the run first
    both.append(start("fl-launch", "--resume", run_dir.name, "--log-dir", str(tmp_path)))
    try:
        _wait(lambda: any(p.poll() is not None for p in both), 120, "one of the two to be refused")
        (refused,) = [p for p in both if p.poll() is not None]
        out, _ = refused.communicate()
        assert refused.returncode == 2 and "still running" in out and "Traceback" not in out, out
        (taker,) = [p for p in both if p is not refused]
        wait_for_status(run_dir, {"running"}, timeout=120)
        time.sleep(1)
        assert taker.poll() is None
        assert len(run_json(run_dir)["attempts"]) == 1  # one resume took the run, not two
        taker.send_signal(signal.SIGINT)
        taker.communicate(timeout=60)
        assert taker.returncode == 130
    finally:
        for proc in both:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_orphans_of_a_killed_supervisor_read_as_such_block_resume_and_fl_finish_stops_them(tmp_path):
    started = run("fl-launch", *SMALL, "--rounds", "200", "--detach", "--log-dir", str(tmp_path))
    assert started.returncode == 0, started.stdout + started.stderr
    (run_dir,) = runs(tmp_path)
    info = run_json(run_dir)
    seen = Seen()
    seen.watch(info["supervisor"]["pid"], 1.5, run_dir)
    os.kill(info["supervisor"]["pid"], signal.SIGKILL)
    time.sleep(0.5)
    assert _runs_json(tmp_path)[run_dir.name]["status"] == "orphaned"  # not "running", not "interrupted"
    assert "without a supervisor" in _one_line_error(
        run("fl-launch", "--resume", run_dir.name, "--log-dir", str(tmp_path)))
    assert len(seen.alive()) >= 5  # the orphans were still training
    stopped = run("fl-finish", "--run", run_dir.name, "--log-dir", str(tmp_path), "--grace", "5")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert seen.alive() == []
    assert run_json(run_dir)["status"] == "interrupted"
    assert _runs_json(tmp_path)[run_dir.name]["status"] == "interrupted"


def test_a_killed_supervisor_with_nothing_left_reads_interrupted_in_run_json_too(tmp_path):
    started = run("fl-launch", *SMALL, "--rounds", "200", "--detach", "--log-dir", str(tmp_path))
    assert started.returncode == 0, started.stdout + started.stderr
    (run_dir,) = runs(tmp_path)
    supervisor = run_json(run_dir)["supervisor"]["pid"]
    seen = Seen()
    seen.watch(supervisor, 1.0, run_dir)
    frozen: set[tuple[int, float]] = set()
    while len(frozen) < seen.snapshot(supervisor):  # stop the tree until nothing new appears in it
        for key in set(seen.procs) - frozen:
            frozen.add(key)
            try:
                os.kill(key[0], signal.SIGSTOP)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    for pid, _ in frozen:  # then everything at once, as an OOM kill of the whole tree would
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _wait(lambda: seen.alive() == [], 10, "the killed processes to go")
    assert _runs_json(tmp_path)[run_dir.name]["status"] == "interrupted"
    assert run_json(run_dir)["status"] == "interrupted"  # written back: run.json agrees with what is alive


@pytest.mark.slow
def test_virtual_run_whose_supervisor_was_killed_leaves_nothing_after_fl_finish(tmp_path):
    tag = _tag("virtual")
    started = run("fl-launch", "--mode", "virtual", "--client-num", "4", "--workers", "1", "--rounds", "200",
                  "--local-epochs", "1", "--kill-tag", tag, "--detach", "--log-dir", str(tmp_path), timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    (run_dir,) = runs(tmp_path)
    supervisor = run_json(run_dir)["supervisor"]["pid"]
    seen = Seen()
    seen.watch(supervisor, 5, run_dir)  # Ray's GCS, raylet, workers and agents included
    os.kill(supervisor, signal.SIGKILL)
    for _ in range(10):
        seen.snapshot(None, run_dir)
    stopped = run("fl-finish", "--kill-tag", tag, "--log-dir", str(tmp_path), "--grace", "5")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert seen.alive() == []  # at once: Ray's agents, which hide the tag, too


def _ctrl_c_when(proc: subprocess.Popen, ready, what: str, before=None) -> tuple[str, float]:
    """SIGINT to ``proc`` once ``ready()`` holds (and ``before()`` ran): its output, and seconds until it exited."""
    try:
        _wait(ready, 120, what)
        if before is not None:
            before()
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        return out, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _starting(log_dir: Path):
    def started() -> bool:
        try:
            return bool(runs(log_dir)) and run_json(runs(log_dir)[0]).get("status") == "starting"
        except (FileNotFoundError, json.JSONDecodeError):  # the folder is there, its run.json not yet
            return False
    return started


def test_ctrl_c_during_start_up_stops_at_once(tmp_path):
    proc = start("fl-launch", *SMALL, "--rounds", "5", "--log-dir", str(tmp_path))
    seen = Seen()
    out, took = _ctrl_c_when(proc, _starting(tmp_path), "start-up", before=lambda: seen.watch(proc.pid, 0.5))
    assert proc.returncode == 130, out
    assert took < 6, f"Ctrl-C during start-up took {took:.1f} s"
    assert seen.alive() == []
    assert run_json(runs(tmp_path)[0])["status"] == "interrupted"


def test_ctrl_c_while_the_data_is_prepared_leaves_no_folder(tmp_path):
    proc = start("fl-launch", "--client-num", "20", "--dataset", "synthetic", "--samples-per-client", "4000",
                 "--log-dir", str(tmp_path / "logs"))
    out, _ = _ctrl_c_when(proc, lambda: runs(tmp_path / "logs"), "the run folder")
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "nothing was started" in out
    assert runs(tmp_path / "logs") == []


def test_ctrl_c_while_a_detached_run_starts_stops_it(tmp_path):
    proc = start("fl-launch", *SMALL, "--rounds", "50", "--detach", "--log-dir", str(tmp_path))
    seen = Seen()
    out, _ = _ctrl_c_when(proc, _starting(tmp_path), "start-up", before=lambda: seen.watch(
        run_json(runs(tmp_path)[0])["supervisor"]["pid"], 0.5, runs(tmp_path)[0]))
    assert proc.returncode == 130, out
    assert "stopped" in out and "Traceback" not in out
    assert seen.alive() == []
    assert run_json(runs(tmp_path)[0])["status"] == "interrupted"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs")
def test_a_full_disk_fails_the_run_in_one_line_with_run_json_readable(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], check=True)
    try:
        seen = Seen()
        with running(*SMALL, "--rounds", "200", log_dir=disk / "logs") as (proc, run_dir):
            seen.watch(proc.pid, 1, run_dir)
            with open(disk / "filler", "wb") as filler:  # the disk fills up mid-run
                try:
                    while True:
                        filler.write(b"\0" * (1 << 20))
                        filler.flush()
                except OSError:
                    pass
            out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 1, out
        assert "Traceback" not in out
        info = run_json(run_dir)
        assert info["status"] == "failed" and info["reason"], info.get("reason")
        assert seen.alive() == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
