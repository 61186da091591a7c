"""What happens when one of a client's two processes dies mid-run, wherever it runs.

    entry = restart_client(table, run_dir, proc, restarts, limit=3, start=lambda: start_node(...))
    entry
    # {'client': 1, 'role': 'clientapp', 'cause': 'killed by SIGKILL', 'node_id': 6909..., 'restarted': True, ...}

The dead node's id is read from its SuperNode's log before anything else (the
caller marks it lost, so the server stops waiting for it), the other process of
the pair is stopped, the exit goes into the client's log, and the pair starts
again as a new node while ``restarts[client] < limit``. The supervisor does this
for local clients, the device agent for its own.

An exit is restarted only once it settled: a stop's SIGTERM (fl-finish, a shutdown) may reach a client
before the process that would restart it, so an exit waits RESTART_SETTLE_S for a stop to show:

    exits = SettlingExits()
    exits.add(table.reap())                      # each poll
    for proc in exits.settled():
        if stopping():                           # asked again for each one: a restart takes seconds
            break
        restart_client(..., may_start=lambda: not stopping())

A stop that begins while a restart is under way (its other process being stopped) still wins:
``may_start`` is asked again just before the client's log line and its new processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from contract.loglines import LogWriter, client_log_path
from contract.run_layout import client_dir
from launcher.flower.memory_growth import EXIT_GREW, GROWTH_LIMIT_MIB
from launcher.flower.node_log import supernode_id
from launcher.processes.clock import now_iso
from launcher.processes.roles import CLIENT_ROLES
from launcher.processes.table import Managed, ProcessTable, describe_exit

RESTART_SETTLE_S = 2.0  # how long a client's exit waits for a stop that may have caused it


@dataclass
class SettlingExits:
    """Clients whose process exited, each with the time from which it may be restarted."""

    settle: float = RESTART_SETTLE_S
    waiting: dict[int, tuple[Managed, float]] = field(default_factory=dict)

    def add(self, ended: list[Managed]) -> None:
        for proc in first_exit_per_client(ended):
            self.waiting.setdefault(proc.client, (proc, time.monotonic() + self.settle))

    def settled(self) -> list[Managed]:
        """The exits whose settle time is over (taken out), oldest client number first."""
        now = time.monotonic()
        due = sorted(c for c, (_, at) in self.waiting.items() if at <= now)
        return [self.waiting.pop(c)[0] for c in due]

    def clients(self) -> set[int]:
        return set(self.waiting)

    def drop(self) -> None:
        """A stop has begun: none of the exits waiting will be restarted."""
        self.waiting.clear()


GREW_CAUSE = (f"its memory grew by over {GROWTH_LIMIT_MIB} MiB since its first task (a restart it asked for, "
              f"not counted against --max-restarts)")


def first_exit_per_client(ended: list[Managed]) -> list[Managed]:
    """One exit per client: when both processes of a pair end together, the pair restarts once."""
    first: dict[int, Managed] = {}
    for proc in ended:
        if proc.role in CLIENT_ROLES:
            first.setdefault(proc.client, proc)
    return list(first.values())


def restart_client(table: ProcessTable, run_dir: Path, proc: Managed, restarts: dict[int, int], limit: int,
                   start: Callable[[], object], may_start: Callable[[], bool] = lambda: True,
                   cause: str | None = None, planned: dict[int, int] | None = None) -> dict | None:
    """``restarts``: every restart of each client so far (its next start's incarnation); ``planned``: those of
    them a client asked for (a node that left after its memory grew past the limit, EXIT_GREW), which do not
    count against ``limit``. ``cause``: why it exited, when the caller knows better than its exit code (an
    emulated device's memory limit: "out of memory (profile pi4)"). ``may_start()`` is asked once the pair's
    other process is stopped (that takes up to 2 s), just before anything is written or started: False (a stop
    has begun, the run folder is gone) leaves the client down with nothing written or started, and returns None."""
    planned = {} if planned is None else planned
    asked = proc.exit_code == EXIT_GREW
    client, cause = proc.client, cause or (GREW_CAUSE if asked else describe_exit(proc.exit_code))
    folder = client_dir(run_dir, client)
    node = supernode_id(folder / "supernode.log")
    table.stop(CLIENT_ROLES, grace=2.0, client=client)
    if not may_start():
        return None
    done = restarts.get(client, 0) - planned.get(client, 0)  # the crashes restarted so far
    log = LogWriter(client_log_path(folder), "FLClient")
    try:
        if asked or done < limit:
            restarts[client] = restarts.get(client, 0) + 1
            if asked:
                planned[client] = planned.get(client, 0) + 1
                log.write("client_renewed", level="WARNING", role=proc.role, cause=cause)
            else:
                log.write("client_restart", level="WARNING", role=proc.role, restart=done + 1, max_restarts=limit,
                          cause=cause)
            start()
        else:
            log.write("client_lost", level="ERROR", role=proc.role, cause=cause)
    finally:
        log.close()
    return {"client": client, "role": proc.role, "cause": cause, "at": now_iso(), "node_id": node,
            "restarted": asked or done < limit, "restart": done if asked else min(done + 1, limit),
            **({"planned": True} if asked else {})}
