"""What every limit backend gives for one client: add its processes, read its out-of-memory kills, clean up.

    with limiter.limit("exp1-client-3", ClientLimits(cpu=0.3), profile="pi4") as client:  # a LimitHandle
        client.add(supernode_pid)      # and every process it starts from now on (and its live descendants)
        client.add(taskhost_pid)
        client.pids()                  # {supernode, task host, its forked children}
        client.cause()                 # None, or "out of memory (profile pi4)" once one was killed for memory
    # leaving the block: the limits are lifted from live members and every cgroup made is removed
    held_bytes(client.pids())          # the memory they hold, a page they share counted once (MemoryGauge: each poll)

The backends (cgroup_limits.py, duty_cycle.py) fill in the abstract methods.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


class LimitHandle:
    """One client's limits, applied to the processes it is given and to their children."""

    def __init__(self, name: str, profile: str) -> None:
        self.name = name
        self.profile = profile

    def add(self, pid: int) -> None:
        raise NotImplementedError

    def pids(self) -> set[int]:
        """The live processes held to the limits."""
        raise NotImplementedError

    def oom_kills(self) -> int:
        """How many of the client's processes were killed for going over the memory limit."""
        raise NotImplementedError

    def close(self) -> None:
        """Lift the limits from the processes still alive and remove what was made; safe to call twice."""
        raise NotImplementedError

    def cause(self) -> str | None:
        """The cause to record for a client that died: "out of memory (profile X)", or None."""
        return f"out of memory (profile {self.profile})" if self.oom_kills() else None

    def kill(self) -> None:
        """SIGKILL every process held to the limits (after an out-of-memory kill took only one of them)."""
        for pid in self.pids() - {os.getpid()}:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue

    def __enter__(self) -> "LimitHandle":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def with_descendants(pid: int) -> set[int]:
    """The process and all its live descendants (those started before it was added)."""
    try:
        process = psutil.Process(pid)
        return {pid, *(child.pid for child in process.children(recursive=True))}
    except psutil.Error:
        return set()


_SMAPS = re.compile(rb"^(?:([0-9a-f]+)-[0-9a-f]+ .*|(Shared|Private)_(?:Clean|Dirty):\s+(\d+) kB|Swap:\s+(\d+) kB)$",
                    re.MULTILINE)
REMEASURE = 1.0  # seconds between two reads of the processes' smaps while their resident sets add up over the limit


def held_bytes(pids) -> int:
    """The physical memory these processes hold together, as a device's memory would hold them: a page several of
    them map counted once. From /proc/PID/smaps, mapping by mapping: each process's private pages (and swap), plus
    each mapping's shared pages once (the most any of them has there; processes forked from one another, or from
    the same fork server, have their shared mappings at the same addresses). Pages they share with processes
    outside (the fork server, other clients) count in full, as the device would hold them; the ones gone
    meanwhile count nothing."""
    private = 0
    shared: dict[bytes, int] = {}  # mapping start -> the most shared kB any process has there
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps").read_bytes()
        except OSError:
            continue
        here: dict[bytes, int] = {}
        start = b""
        for match in _SMAPS.finditer(text):
            mapping, kind, kb, swap = match.groups()
            if mapping is not None:
                start = mapping
            elif swap is not None:
                private += int(swap)
            elif kind == b"Private":
                private += int(kb)
            else:
                here[start] = here.get(start, 0) + int(kb)
        for start, kb in here.items():
            shared[start] = max(shared.get(start, 0), kb)
    return (private + sum(shared.values())) * 1024


@dataclass
class MemoryGauge:
    """How much memory one client's processes hold (held_bytes), cheap enough to read each poll against a limit.

        gauge = MemoryGauge(limit=900 * 2**20)
        gauge.over(processes)      # True when they hold more than the limit

    Their resident sets added up (statm: cheap) count a shared page once per process, so they are never below
    what the processes hold: while that sum is within the limit, nothing more is read. Above it, smaps is read
    (held_bytes) when the set of processes changed or REMEASURE seconds passed, and in between the sum is taken
    less the double count that read found (new memory shows in the resident sets at once)."""

    limit: int
    held: int = 0  # the figure at the last look
    _overlap: int = 0  # bytes the resident sets counted more than once, at the last smaps read
    _pids: frozenset = frozenset()
    _read_at: float = float("-inf")

    def over(self, processes) -> bool:
        resident = {}
        for process in processes:
            try:
                resident[process.pid] = process.memory_info().rss
            except psutil.Error:
                continue
        total = sum(resident.values())
        pids = frozenset(resident)
        if total > self.limit and (pids != self._pids or time.monotonic() - self._read_at >= REMEASURE):
            self._overlap = max(0, total - held_bytes(pids))
            self._pids, self._read_at = pids, time.monotonic()
        self.held = total - self._overlap if total > self.limit else total
        return self.held > self.limit
