"""launcher.processes.restarts: a client that left after its memory grew (launcher.flower.node_tasks.EXIT_GREW) is
restarted without spending --max-restarts; a crash spends it. Real child processes, their exits reaped. And a real
run: such a client loses no round (the server waits for its new node)."""

from __future__ import annotations

import re
import time

from launcher.flower.node_tasks import EXIT_GREW
from launcher.processes.restarts import restart_client
from launcher.processes.roles import Role
from launcher.processes.table import ProcessTable
from tests.helpers import run, run_json, runs


def _exited(table: ProcessTable, run_dir, code: int):
    proc = table.spawn(Role.CLIENT, ["sh", "-c", f"exit {code}"], log=run_dir / "client_0" / "supernode.log",
                       client=0)
    deadline = time.monotonic() + 10
    while proc.alive and time.monotonic() < deadline:
        table.reap()
        time.sleep(0.02)
    assert proc.exit_code == code
    return proc


def test_a_restart_the_client_asked_for_spends_no_restart_and_says_why(tmp_path):
    table, restarts, planned, started = ProcessTable("t-planned"), {}, {}, []
    for _ in range(2):  # with no restart left at all (--max-restarts 0), twice
        entry = restart_client(table, tmp_path, _exited(table, tmp_path, EXIT_GREW), restarts, 0,
                               start=lambda: started.append(1), planned=planned)
        assert entry["restarted"] and entry["planned"] and "memory grew" in entry["cause"], entry
    assert started == [1, 1] and restarts == {0: 2} and planned == {0: 2}  # each start a new incarnation
    crash = restart_client(table, tmp_path, _exited(table, tmp_path, 1), restarts, 0,
                           start=lambda: started.append(1), planned=planned)
    assert not crash["restarted"] and "planned" not in crash and started == [1, 1]  # a crash spends the budget
    log = (tmp_path / "client_0" / "client.log").read_text()
    assert log.count("[launcher] client restarted: its memory grew") == 2
    assert "[launcher] client exited, no restart left: exit 1" in log


GROWING_NET = '''
from pathlib import Path

from simulator.model import LeNet5

_kept = []


class GrowingNet(LeNet5):
    """LeNet5 that, training in client 0's process once round 1 is checkpointed (round 2), keeps 400 MiB for
    good, once (a file beside this module marks it): its process grows past the limit in round 2."""

    def forward(self, x):
        marker = Path(__file__).with_name("grew-once")
        if self.training and Path.cwd().name == "client_0" and Path("../checkpoints/round_0001.pt").exists() \\
                and not marker.exists():
            marker.touch()
            ballast = bytearray(400 * 2**20)
            ballast[::4096] = b"x" * len(ballast[::4096])
            _kept.append(ballast)
        return super().forward(x)
'''
ROUND_END = re.compile(r"\[round\] iteration:(\d+)/3 end replies:(\d+) failures:(\d+)")


def test_a_client_that_left_after_its_memory_grew_loses_no_round(tmp_path):
    """Client 0 grows in round 2 and leaves once its reply is sent: round 3 and the final evaluation still have
    both clients (the server waited for its new node), and it was restarted once, as it asked."""
    (tmp_path / "growing.py").write_text(GROWING_NET)
    done = run("fl-launch", "--client-num", "2", "--rounds", "3", "--local-epochs", "1", "--model",
               "growing:GrowingNet", "--log-dir", "logs", cwd=tmp_path, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = runs(tmp_path / "logs")[0]
    server = (run_dir / "server" / "server.log").read_text()
    assert (tmp_path / "grew-once").exists()
    assert (run_dir / "client_0" / "client.log").read_text().count("[launcher] client restarted: its memory grew") == 1
    assert ROUND_END.findall(server) == [("1", "2", "0"), ("2", "2", "0"), ("3", "2", "0")], server
    assert re.search(r"\[final\] final model accuracy: \S+ test_samples:\d+ clients:2", server), server
    restarts = run_json(run_dir).get("restarts", [])
    assert [(r["client"], r.get("planned")) for r in restarts] == [(0, True)], restarts
