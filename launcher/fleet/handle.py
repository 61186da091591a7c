"""What every limit backend gives for one client: add its processes, read its out-of-memory kills, clean up.

    with limiter.limit("exp1-client-3", ClientLimits(cpu=0.3), profile="pi4") as client:  # a LimitHandle
        client.add(supernode_pid)      # and every process it starts from now on (and its live descendants)
        client.add(taskhost_pid)
        client.pids()                  # {supernode, task host, its forked children}
        client.cause()                 # None, or "out of memory (profile pi4)" once one was killed for memory
    # leaving the block: the limits are lifted from live members and every cgroup made is removed

The backends (cgroup_limits.py, duty_cycle.py) fill in the abstract methods; the memory a client holds is
memory.py's.
"""

from __future__ import annotations

import os
import signal

import psutil


class LimitHandle:
    """One client's limits, applied to the processes it is given and to their children."""

    watches_memory = False  # True: the handle itself kills the client above its memory (memory.MemoryGauge)

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

    def close(self, until: float | None = None) -> bool:
        """Lift the limits from the processes still alive and remove what was made, waiting for dying members
        until ``until`` (time.monotonic(); None: the backend's own wait); safe to call twice."""
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
