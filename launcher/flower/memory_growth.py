"""The rule that renews a long-lived task runner whose memory grew: an --app's task worker, or a built-in client.

    growth = MemoryGrowth()
    ...                          # a task runs
    if why := growth.after_task():
        ...                      # "its memory grew from 310 to 590 MiB": leave after this task's reply
    sys.exit(EXIT_GREW)          # a node's planned exit: the supervisor restarts it without counting a crash

A leak costs a fresh process, not the client. A leaf module (no Flower import): the supervisor reads
EXIT_GREW and GROWTH_LIMIT_MIB from here without importing what runs the tasks.
"""

from __future__ import annotations

import ctypes
import os

GROWTH_LIMIT_MIB = 256  # resident memory may grow this much past the first task's before the runner is renewed
EXIT_GREW = 75  # a built-in client's process leaves after a task that grew its memory past the limit


class MemoryGrowth:
    """A long-lived task runner's resident memory after each task against after its first (the heap the task
    freed given back first): the rule that replaces a worker, or restarts a node running its own tasks."""

    def __init__(self) -> None:
        self.first: float | None = None

    def after_task(self) -> str:
        """"" while within GROWTH_LIMIT_MIB of the first task's, else how it grew."""
        give_back_freed_memory()
        rss = rss_mib()
        self.first = rss if self.first is None else self.first
        return f"its memory grew from {self.first:.0f} to {rss:.0f} MiB" if rss - self.first > GROWTH_LIMIT_MIB else ""


def give_back_freed_memory() -> None:
    """Return the heap a task freed to the kernel (glibc keeps it otherwise): a worker idles between tasks,
    fifty of them at once on one host."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0
