"""The rule that renews a long-lived task runner whose memory grew: an --app's task worker, or a built-in client.

    growth = MemoryGrowth()
    ...                          # a task runs
    if why := growth.after_task():
        ...                      # "its memory grew from 310 to 590 MiB": leave after this task's reply
    sys.exit(EXIT_GREW)          # a node's planned exit: the supervisor restarts it without counting a crash

A leak costs a fresh process, not the client. Also where a task's freed heap goes: given back after each task
(a worker), or kept for the next (``keep_task_heap``: a client that runs its own tasks) and given back once the
client idles (``give_back_task_heap``). A leaf module (no Flower import): the supervisor reads
EXIT_GREW and GROWTH_LIMIT_MIB from here without importing what runs the tasks.
"""

from __future__ import annotations

import ctypes
import functools
import os

GROWTH_LIMIT_MIB = 256  # resident memory may grow this much past the first task's before the runner is renewed
EXIT_GREW = 75  # a built-in client's process leaves after a task that grew its memory past the limit


class MemoryGrowth:
    """A long-lived task runner's resident memory after each task against after its first: the rule that
    replaces a worker, or restarts a node running its own tasks. ``give_back``: the heap the task freed is given
    back first (a worker); else it is kept for the next task (``keep_task_heap``), in every figure alike."""

    def __init__(self, give_back: bool = True) -> None:
        self.first: float | None = None
        self.give_back = give_back

    def after_task(self) -> str:
        """"" while within GROWTH_LIMIT_MIB of the first task's, else how it grew."""
        if self.give_back:
            give_back_freed_memory()
        rss = rss_mib()
        self.first = rss if self.first is None else self.first
        return f"its memory grew from {self.first:.0f} to {rss:.0f} MiB" if rss - self.first > GROWTH_LIMIT_MIB else ""


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """This process's glibc, its allocator's functions declared once; None where the C library is another."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        _ = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


# glibc's mallopt parameters (malloc.h) and what a client that runs its own tasks sets them to
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEPT_HEAP_BYTES = 64 * 2**20  # the freed top of the heap kept (glibc gives back what lies above it)
HEAP_BLOCK_BYTES = 32 * 2**20  # blocks up to this size come from the heap, not a mapping unmapped when freed
TRIM_NUDGE_BYTES = 128 * 2**10  # glibc trims an arena's top on a free of 64 kB or more


def keep_task_heap() -> None:
    """Keep what a task frees for the next task in this process: a task's training makes ~6-10 MB of buffers,
    and given back after every task they cost the next one ~1,900 page faults and ~4.5 kernel CPU-ms on the
    seed's command (benchmarks/client_faults.py). glibc otherwise gives back a freed top above 128 kB, and maps
    (and unmaps when freed) every block from 128 kB up to where its sliding threshold has reached. The sizes are
    the ceilings of glibc's own sliding thresholds (32 MiB, and twice that kept): an evaluation batch of 512
    CIFAR images makes ~9.6 MB blocks, which 4 MiB left to mappings made anew each time (W1: 31,000 faults and
    ~75 kernel CPU-ms a task, against 4,500 and ~43 with these)."""
    if (libc := _glibc()) is not None:
        libc.mallopt(M_MMAP_THRESHOLD, HEAP_BLOCK_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, KEPT_HEAP_BYTES)


def give_back_task_heap() -> None:
    """On the thread that ran the tasks, once the client idles: what ``keep_task_heap`` kept for its tasks goes
    back. glibc's malloc_trim returns the main heap's free top and the free pages inside every arena, but the free
    top of a thread's arena only goes back when a free() on it finds the top above the trim threshold: so the
    threshold is lowered for one such free of this thread's, then restored. Other threads' arenas keep their
    free tops (up to KEPT_HEAP_BYTES each: the node's server thread, torch's with --torch-threads above 1)."""
    if (libc := _glibc()) is None:
        return
    libc.mallopt(M_TRIM_THRESHOLD, TRIM_NUDGE_BYTES)
    try:
        libc.free(libc.malloc(TRIM_NUDGE_BYTES))  # from this thread's arena (under HEAP_BLOCK_BYTES), >= 64 kB
        libc.malloc_trim(0)
    finally:
        libc.mallopt(M_TRIM_THRESHOLD, KEPT_HEAP_BYTES)


def give_back_freed_memory() -> None:
    """Return the heap a task freed to the kernel (glibc keeps it otherwise): a worker idles between tasks,
    fifty of them at once on one host."""
    if (libc := _glibc()) is not None:
        libc.malloc_trim(0)


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0
