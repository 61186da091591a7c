"""Faults: a client process dies mid-run; the round goes on, the client comes back."""

import json
import os
import re
import signal
import time

import pytest

from launcher.stats.follow import LogFollower
from tests.helpers import run_json, running, runs, wait_until_nothing_tagged

pytestmark = pytest.mark.slow


def _server_events(run_dir, kind):
    return [e.values for e in LogFollower(run_dir / "server" / "server.log").events() if e.kind == kind]


def test_a_killed_client_restarts_and_no_round_waits_for_it(tmp_path):
    with running(
        "--client-num", "3", "--rounds", "5", "--round-timeout", "120", "--max-restarts", "1",
        "--min-clients", "2", log_dir=tmp_path  # the round the client dies in is aggregated with the other two
    ) as (proc, run_dir):
        deadline = time.monotonic() + 120
        while not any(v["round"] == 2 for v in _server_events(run_dir, "server_round_start")):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        victim = next(p for p in run_json(run_dir)["processes"] if p["role"] == "client" and p["client"] == 1)
        first_node = re.search(r"SuperNode ID: (\d+)", (run_dir / "client_1" / "supernode.log").read_text())
        os.kill(victim["pid"], signal.SIGKILL)
        killed = time.monotonic()
        while not any(v["round"] == 2 for v in _server_events(run_dir, "server_round_end")):
            assert time.monotonic() - killed < 10, "round 2 waited for the killed client"
            time.sleep(0.1)
        out, _ = proc.communicate(timeout=400)
    # the node Flower registered for the killed client (its own log line) is the one the server was told of
    assert int(first_node.group(1)) in json.loads((run_dir / "server" / "lost_nodes.json").read_text())
    assert proc.returncode == 0, out
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == 5
    (restart,) = info["restarts"]
    assert (restart["client"], restart["role"], restart["cause"], restart["restarted"]) == \
        (1, "client", "killed by SIGKILL", True)
    rounds = [v["round"] for v in _server_events(run_dir, "server_round_end")]
    assert rounds == [1, 2, 3, 4, 5]  # each round's line once
    ends = {v["round"]: v for v in _server_events(run_dir, "server_round_end")}
    assert ends[2]["replies"] >= 2 and ends[2]["seconds"] < 60  # not the 120 s round timeout
    assert ends[5]["replies"] == 3  # the restarted client is back
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"round_{r:04d}.pt" for r in range(6)]
    log = (run_dir / "client_1" / "client.log").read_text()
    for client in (0, 2):  # the clients that never died: one start line per round
        text = (run_dir / f"client_{client}" / "client.log").read_text()
        assert [text.count(f"[round] iteration:{r}/5 start") for r in range(1, 6)] == [1] * 5
    assert "[launcher] client exited, restart 1 of 1: killed by SIGKILL" in log
    assert len([p for p in info["processes"] if p["role"] == "client" and p["client"] == 1]) == 2
    assert wait_until_nothing_tagged(run_dir.name) == []


def test_resume_after_the_superlink_dies_loses_and_repeats_no_round(tmp_path):
    import json

    from tests.helpers import run

    with running(
        "--client-num", "3", "--rounds", "4", "--grace", "3", log_dir=tmp_path
    ) as (proc, run_dir):
        deadline = time.monotonic() + 180
        while not any(v["round"] == 2 for v in _server_events(run_dir, "server_round_end")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        superlink = next(p for p in run_json(run_dir)["processes"] if p["role"] == "superlink")
        os.kill(superlink["pid"], signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert run_json(run_dir)["status"] == "failed"
    assert wait_until_nothing_tagged(run_dir.name) == []
    completed = max(v["round"] for v in _server_events(run_dir, "server_round_end"))
    assert completed in (2, 3)

    again = run("fl-launch", "--resume", run_dir.name, "--log-dir", str(tmp_path), timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == 4
    assert info["resumed_from_round"] == completed + 1 and info["attempts"][0]["status"] == "failed"
    assert runs(tmp_path) == [run_dir]  # the same folder, no new run
    ends = [v["round"] for v in _server_events(run_dir, "server_round_end")]
    assert sorted(ends) == [1, 2, 3, 4] and len(set(ends)) == 4  # each completed round once
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"round_{r:04d}.pt" for r in range(5)]
    stats = json.loads(run("fl-stats", "client_0", "--run", run_dir.name, "--log-dir", str(tmp_path), "--json").stdout)
    assert [r["round"] for r in stats["rounds"]] == [1, 2, 3, 4]
    for i in range(3):  # the logs went on in the same files
        assert f"[launcher] resumed from round {completed + 1}" in (run_dir / f"client_{i}" / "client.log").read_text()
    assert wait_until_nothing_tagged(run_dir.name) == []
    refused = run("fl-launch", "--resume", run_dir.name, "--log-dir", str(tmp_path))
    assert refused.returncode == 2 and "already completed its 4 rounds" in refused.stderr


SLOW_EVAL_NET = '''
import time

from simulator.model import LeNet5


class SlowEvalNet(LeNet5):
    """LeNet5 whose every evaluation takes 3 s longer: a final evaluation long enough to stop the run in."""

    def forward(self, x):
        if not self.training:
            time.sleep(3)
        return super().forward(x)
'''
HELD_FINAL_NET = '''
import time
from pathlib import Path

from simulator.model import LeNet5

HERE = Path(__file__).parent


def _final_evaluation_held():
    return (HERE / "hold").exists() and any("[final] evaluating the final model" in log.read_text()
                                            for log in HERE.glob("logs/*/server/server.log"))


class HeldFinalNet(LeNet5):
    """LeNet5 whose final evaluation waits while a file ``hold`` lies beside this module: a run stopped in it
    stays stopped in it, however long its stop takes."""

    def forward(self, x):
        while not self.training and _final_evaluation_held():
            time.sleep(0.05)
        return super().forward(x)
'''
FINAL_LINE = re.compile(r"\[final\] final model accuracy: ", re.M)
ROUND_LINE = re.compile(r"\[round\] iteration:(\d+)/2 (start|end)", re.M)


def test_resume_after_a_stop_in_the_final_evaluation_only_evaluates(tmp_path):
    """Stopped once round 2 (the last) is aggregated, before the final evaluation ends: --resume evaluates the
    final model, trains no round again, leaves the checkpoints as they were, and ends finished."""
    import hashlib

    from tests.helpers import run, start

    (tmp_path / "sloweval.py").write_text(SLOW_EVAL_NET)
    proc = start("fl-launch", "--client-num", "2", "--rounds", "2", "--local-epochs", "1", "--grace", "3",
                 "--model", "sloweval:SlowEvalNet", "--log-dir", "logs", cwd=tmp_path)

    def final_next():  # round 2 aggregated: the final evaluation is next
        found = runs(tmp_path / "logs")
        return found[0] if found and (found[0] / "checkpoints" / "round_0002.pt").exists() else None

    run_dir, out = _kill_the_superlink_once(proc, final_next)
    assert proc.returncode == 1, out
    server_log = run_dir / "server" / "server.log"
    assert run_json(run_dir)["status"] == "failed" and not FINAL_LINE.search(server_log.read_text())
    assert wait_until_nothing_tagged(run_dir.name) == []
    checkpoints = run_dir / "checkpoints"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(checkpoints.iterdir())}
    assert sorted(before) == ["round_0000.pt", "round_0001.pt", "round_0002.pt"]
    rounds_before = ROUND_LINE.findall(server_log.read_text())

    again = run("fl-launch", "--resume", run_dir.name, "--log-dir", "logs", cwd=tmp_path, timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == 2 and info["resumed_from_round"] == 3
    assert info["final_accuracy"] is not None and info["attempts"][0]["status"] == "failed"
    text = server_log.read_text()
    assert len(FINAL_LINE.findall(text)) == 1
    assert ROUND_LINE.findall(text) == rounds_before  # no round line since: no round trained again
    assert sorted(rounds_before) == sorted([("1", "start"), ("1", "end"), ("2", "start"), ("2", "end")])
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(checkpoints.iterdir())}
    assert after == before
    for client in (0, 1):  # after the resume marker: the final evaluation once, no round
        log = (run_dir / f"client_{client}" / "client.log").read_text()
        resumed = log.split("[launcher] resumed from round 3")[1]
        assert len(FINAL_LINE.findall(resumed)) == 1 and not re.search(r"\[round\] iteration:", resumed), resumed
    assert wait_until_nothing_tagged(run_dir.name) == []
    refused = run("fl-launch", "--resume", run_dir.name, "--log-dir", "logs", cwd=tmp_path)
    assert refused.returncode == 2 and "already completed its 2 rounds" in refused.stderr


def test_resume_of_a_fleet_run_whose_round_failed_at_its_deadline_only_evaluates(tmp_path, monkeypatch):
    """A --fleet run whose round 1 fails at its deadline (seed 29: both clients offline in round 1, both online in
    round 2, availability 0.5) and whose round 2 is aggregated, stopped during its final evaluation: --resume
    trains no round again (the failed round is done, not a gap), evaluates the final model, and ends finished.
    The virtual clients' final evaluation runs in Flower's simulation process, which outlives the SuperLink's
    SIGKILL until the supervisor stops it: the test holds that evaluation (HELD_FINAL_NET) until the run ended."""
    import subprocess
    import sys

    from contract.fleet_record import Fleet, Profile
    from tests.fleet_runs import prepare_fleet_run
    from tests.helpers import run

    (tmp_path / "heldfinal.py").write_text(HELD_FINAL_NET)
    (tmp_path / "hold").touch()
    monkeypatch.chdir(tmp_path)  # --model's module is imported from here
    fleet = Fleet.of("fleet.toml", 2, (Profile("half", range(0, 2), availability=0.5),))
    run_dir = prepare_fleet_run(tmp_path / "logs", fleet, clients=2, rounds=2, deadline=60.0, seed=29,
                                tag="t-failed-final", model="heldfinal:HeldFinalNet")
    server_log = run_dir / "server" / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "launcher.run.supervisor", str(run_dir)], text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, out = _kill_the_superlink_once(proc, lambda: run_dir if server_log.exists() and
                                      "[final] evaluating the final model" in server_log.read_text() else None)
    (tmp_path / "hold").unlink()
    text = server_log.read_text()
    assert re.findall(r"\[round\] iteration:(\d+) failed at the deadline", text) == ["1"], text
    assert run_json(run_dir)["status"] == "failed" and not FINAL_LINE.search(text), out
    assert wait_until_nothing_tagged("t-failed-final") == []
    rounds_before = ROUND_LINE.findall(text)
    assert ("2", "end") in rounds_before

    again = run("fl-launch", "--resume", str(run_dir), "--log-dir", "logs", cwd=tmp_path, timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["resumed_from_round"] == 3, info.get("reason")
    text = server_log.read_text()
    assert ROUND_LINE.findall(text) == rounds_before  # no round line since: no round trained again
    resumed = text.split("[launcher] resumed from round 3")[1]
    assert len(FINAL_LINE.findall(resumed)) == 1 and not re.search(r"\[round\] iteration:", resumed), resumed
    assert wait_until_nothing_tagged("t-failed-final") == []


def _kill_the_superlink_once(proc, ready):
    """Wait until ``ready()`` names the run folder, SIGKILL its SuperLink, and let the run end: (folder, output)."""
    try:
        deadline = time.monotonic() + 300
        while (run_dir := ready()) is None:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read() if proc.poll() else ""
            time.sleep(0.02)
        superlink = next(p for p in run_json(run_dir)["processes"] if p["role"] == "superlink")
        os.kill(superlink["pid"], signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return run_dir, out
