"""Faults: a client process dies mid-run; the round goes on, the client comes back."""

import os
import signal
import time

from launcher.log_follow import LogFollower
from tests.helpers import run_json, runs, start, wait_for_status, wait_until_nothing_tagged


def _server_events(run_dir, kind):
    return [e.values for e in LogFollower(run_dir / "server" / "server.log").events() if e.kind == kind]


def test_a_killed_client_restarts_and_no_round_waits_for_it(tmp_path):
    proc = start("fl-launch", "--client-num", "3", "--rounds", "5", "--log-dir", str(tmp_path),
                 "--round-timeout", "120", "--max-restarts", "1")
    try:
        while not runs(tmp_path):
            time.sleep(0.1)
        run_dir = runs(tmp_path)[0]
        wait_for_status(run_dir, {"running"}, timeout=180)
        deadline = time.monotonic() + 120
        while not any(v["round"] == 2 for v in _server_events(run_dir, "server_round_start")):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        victim = next(p for p in run_json(run_dir)["processes"] if p["role"] == "clientapp" and p["client"] == 1)
        os.kill(victim["pid"], signal.SIGKILL)
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == 5
    (restart,) = info["restarts"]
    assert (restart["client"], restart["role"], restart["cause"], restart["restarted"]) == \
        (1, "clientapp", "killed by SIGKILL", True)
    ends = {v["round"]: v for v in _server_events(run_dir, "server_round_end")}
    assert sorted(ends) == [1, 2, 3, 4, 5]
    assert ends[2]["replies"] >= 2 and ends[2]["seconds"] < 60  # not the 120 s round timeout
    assert ends[5]["replies"] == 3  # the restarted client is back
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"round_{r:04d}.pt" for r in range(6)]
    log = (run_dir / "client_1" / "client.log").read_text()
    assert "[launcher] clientapp exited, restart 1 of 1: killed by SIGKILL" in log
    assert len([p for p in info["processes"] if p["role"] == "clientapp" and p["client"] == 1]) == 2
    assert wait_until_nothing_tagged(run_dir.name) == []
