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
RESTART_LINE = re.compile(r"\[launcher\] clientapp exited, restart \d+ of \d+")


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _clientapp(run_dir: Path, client: int) -> int:
    (pid,) = [p["pid"] for p in run_json(run_dir)["processes"]
              if p["role"] == "clientapp" and p["client"] == client and p["exit_code"] is None]
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


@pytest.mark.slow
def test_fl_stats_runs_says_how_many_clients_connected_and_which_restart(tmp_path):
    logs = tmp_path / "logs"
    proc = start("fl-launch", *SMALL, "--log-dir", str(logs))
    said: list[str] = []
    try:
        _wait(lambda: runs(logs), 60, "the run folder")
        run_dir = runs(logs)[0]
        while True:  # until round 1: what fl-stats --runs says, as a user would poll it
            row = _runs_rows(logs).get(run_dir.name, {})
            if row.get("status") == "running":
                break
            assert proc.poll() is None, proc.stdout.read()
            if row.get("status") == "starting":
                said.append(row.get("activity") or "")
        assert any(re.fullmatch(r"[0-2] of 2 clients connected", s) for s in said), said
        assert row.get("activity") is None  # training: nothing more to say
        os.kill(_clientapp(run_dir, 1), signal.SIGKILL)
        killed = time.monotonic()
        while "running: restarting client 1" not in _table_status(logs, run_dir.name):
            assert time.monotonic() - killed < 20, "no 'restarting client 1' while it restarts"
        _wait(lambda: _runs_rows(logs)[run_dir.name].get("activity") is None, 60, "client 1 to reconnect")
        assert [r["client"] for r in run_json(run_dir)["restarts"]] == [1]
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
