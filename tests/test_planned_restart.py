"""launcher.processes.restarts: a client that left after its memory grew (launcher.flower.node_tasks.EXIT_GREW) is
restarted without spending --max-restarts; a crash spends it. Real child processes, their exits reaped."""

from __future__ import annotations

import time

from launcher.flower.node_tasks import EXIT_GREW
from launcher.processes.restarts import restart_client
from launcher.processes.roles import Role
from launcher.processes.table import ProcessTable


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
