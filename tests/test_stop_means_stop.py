"""Stop means stop (issue 23): no client is restarted once a stop began, whatever order its signals take; a run
is found by its tag while it prepares its data; a run whose folder is removed fails in one line and nothing
writes the folder again; fl-stats --runs says what a starting or restarting run does.

Judged by what the test itself sees: the PIDs it signals, the processes seen while the run lived (pid and
start time), the client logs' own lines counted with this file's regexes, the folder listed from disk.
"""

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import Seen, run, run_json, running, runs, start

SMALL = ("--client-num", "2", "--local-epochs", "1", "--grace", "5", "--rounds", "200")
RESTART_LINE = re.compile(r"\[launcher\] (?:client|clientapp) exited, restart \d+ of \d+")


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _clientapp(run_dir: Path, client: int) -> int:
    (pid,) = [p["pid"] for p in run_json(run_dir)["processes"]
              if p["role"] == "client" and p["client"] == client and p["exit_code"] is None]
    return pid


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _restart_lines(run_dir: Path) -> int:
    return sum(len(RESTART_LINE.findall(log.read_text())) for log in run_dir.glob("client_*/client.log"))


def _stop_client_then_supervisor(tmp_path: Path, name: str, order) -> Path:
    """A foreground run whose client 0 gets a SIGTERM from outside around the supervisor's own, in ``order``."""
    with running(*SMALL, log_dir=tmp_path / name) as (proc, run_dir):
        order(proc.pid, _clientapp(run_dir, 0))
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out  # interrupted, not failed
    assert "Traceback" not in out
    return run_dir


def _client_first(supervisor: int, client: int) -> None:
    """As a shutdown or a tag-wide kill may: the client first, the supervisor half a second later."""
    os.kill(client, signal.SIGTERM)
    _wait(lambda: _gone(client), 10, "the clientapp to exit")
    time.sleep(0.5)  # the supervisor has reaped the exit by now (it polls every 0.25 s)
    os.kill(supervisor, signal.SIGTERM)


def _both_before_it_looks(supervisor: int, client: int) -> None:
    """The supervisor held still while its client exits and its own SIGTERM arrives: it sees both at once."""
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.kill(client, signal.SIGTERM)
        _wait(lambda: _gone(client), 10, "the clientapp to exit")
        os.kill(supervisor, signal.SIGTERM)
    finally:
        os.kill(supervisor, signal.SIGCONT)


@pytest.mark.slow
@pytest.mark.parametrize("order", [_client_first, _both_before_it_looks], ids=["client-first", "both-at-once"])
def test_a_client_stopped_around_its_supervisor_is_not_restarted(tmp_path, order):
    run_dir = _stop_client_then_supervisor(tmp_path, "logs", order)
    info = run_json(run_dir)
    assert info["status"] == "interrupted"
    assert info.get("restarts", []) == []
    assert _restart_lines(run_dir) == 0


def test_fl_finish_stops_a_run_that_still_prepares_its_data(tmp_path):
    tag = f"prep-{os.getpid()}"
    logs = tmp_path / "logs"
    proc = start("fl-launch", "--client-num", "20", "--dataset", "synthetic", "--samples-per-client", "4000",
                 "--local-epochs", "1", "--kill-tag", tag, "--log-dir", str(logs))
    try:
        _wait(lambda: runs(logs) or proc.poll() is not None, 60, "the run folder")
        assert proc.poll() is None
        assert not (runs(logs)[0] / "server" / "superlink.log").exists()  # still preparing: nothing started
        stopped = run("fl-finish", "--kill-tag", tag, "--log-dir", str(logs), "--grace", "5")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "no process" not in stopped.stdout, stopped.stdout
        assert proc.wait(timeout=30) == 130  # gone when fl-finish returns (it waits), never trained
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in out and "nothing was started" in out, out
    assert runs(logs) == []
    assert not list(logs.glob("*/server/superlink.log"))


@pytest.mark.slow
def test_a_run_whose_folder_is_removed_fails_in_one_line_and_nothing_is_written_again(tmp_path):
    seen = Seen()
    with running(*SMALL, log_dir=tmp_path / "logs") as (proc, run_dir):
        seen.watch(proc.pid, 1, run_dir)
        victim = _clientapp(run_dir, 0)
        os.rename(run_dir, tmp_path / "trash")  # the folder's path is gone at once (rm -rf takes a while)
        shutil.rmtree(tmp_path / "trash", ignore_errors=True)
        os.kill(victim, signal.SIGKILL)  # a client dies: before, its restart rebuilt the folder
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "Traceback" not in out, out
    assert len([line for line in out.splitlines() if "was removed" in line]) >= 1, out
    time.sleep(1)
    assert not run_dir.exists(), sorted(str(p) for p in run_dir.rglob("*"))
    assert seen.alive() == []


def _runs_rows(logs: Path) -> dict:
    listed = run("fl-stats", "--runs", "--json", "--log-dir", str(logs))
    assert listed.returncode == 0, listed.stderr
    return {row["run"]: row for row in json.loads(listed.stdout)}


def _table_status(logs: Path, run_id: str) -> str:
    listed = run("fl-stats", "--runs", "--log-dir", str(logs))
    assert listed.returncode == 0, listed.stderr
    (line,) = [line for line in listed.stdout.splitlines() if run_id in line]
    return line


def _activity(run_dir: Path) -> str | None:
    try:
        return run_json(run_dir).get("activity")
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or between two writes
        return None


def _said_while_frozen(supervisor: int, logs: Path, run_dir: Path, said, what: str) -> str:
    """The run's line in fl-stats --runs while its supervisor is stopped (SIGSTOP) the moment its run.json says
    ``said`` (polled, cheap): the run stays in that phase for as long as fl-stats takes, however fast it goes."""
    deadline = time.monotonic() + 120
    while not said(_activity(run_dir)):
        assert time.monotonic() < deadline, f"timed out waiting for {what}; run.json says {_activity(run_dir)!r}"
        time.sleep(0.005)
    os.kill(supervisor, signal.SIGSTOP)
    try:
        return _table_status(logs, run_dir.name)
    finally:
        os.kill(supervisor, signal.SIGCONT)


@pytest.mark.slow
def test_fl_stats_runs_says_how_many_clients_connected_and_which_restart(tmp_path):
    logs = tmp_path / "logs"
    proc = start("fl-launch", *SMALL, "--log-dir", str(logs))
    try:
        _wait(lambda: runs(logs), 60, "the run folder")
        run_dir = runs(logs)[0]
        connected = re.compile(r"[0-2] of 2 clients connected")
        line = _said_while_frozen(proc.pid, logs, run_dir, lambda a: bool(a and connected.fullmatch(a)),
                                  "the clients to connect")
        assert re.search(r"starting: [0-2] of 2 clients connected", line), line
        _wait(lambda: _runs_rows(logs)[run_dir.name].get("status") == "running", 120, "round 1")
        row = _runs_rows(logs)[run_dir.name]
        assert row.get("activity") is None, row  # training: nothing more to say
        os.kill(_clientapp(run_dir, 1), signal.SIGKILL)
        line = _said_while_frozen(proc.pid, logs, run_dir, lambda a: a == "restarting client 1", "the restart")
        assert "running: restarting client 1" in line, line
        _wait(lambda: _runs_rows(logs)[run_dir.name].get("activity") is None, 60, "client 1 to reconnect")
        assert [r["client"] for r in run_json(run_dir)["restarts"]] == [1]
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# fl-launch with a signal sent to itself at a chosen point of the preparation (the hooks wrap the real functions)
SIGNALLED_LAUNCH = """
import os, shutil, signal, sys
import launcher.cli.launch as launch
import launcher.run.plan as plan

def after(real, sig):
    def hooked(*args, **kwargs):
        done = real(*args, **kwargs)
        os.kill(os.getpid(), sig)  # delivered as this returns
        return done
    return hooked

def before(real, sig):
    def hooked(*args, **kwargs):
        os.kill(os.getpid(), sig)
        return real(*args, **kwargs)
    return hooked

if sys.argv[1] == "returned":  # the preparation is done, and the stop comes as prepare_run returns
    launch.prepare_run = after(launch.prepare_run, signal.SIGTERM)
else:  # a stop while the data loads, a second one as the half-made folder is being removed
    plan.load_dataset = after(plan.load_dataset, signal.SIGTERM)
    shutil.rmtree = before(shutil.rmtree, signal.SIGINT)
launch.main(sys.argv[2:])
"""


@pytest.mark.parametrize("when", ["returned", "twice"])
def test_a_stop_as_the_preparation_ends_or_a_second_stop_keep_no_run_folder(tmp_path, when):
    """A signal as prepare_run returns (before fl-launch looks at what it got), or a second signal while the first
    one's half-made folder is removed: one line, exit 130, and no run folder left."""
    import subprocess
    import sys

    logs = tmp_path / "logs"
    done = subprocess.run([sys.executable, "-c", SIGNALLED_LAUNCH, when, "--client-num", "2", "--log-dir", str(logs)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 130, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "no run folder kept" in done.stderr
    assert list(logs.iterdir()) == [], sorted(str(p) for p in logs.rglob("*"))  # not even a dangling latest
