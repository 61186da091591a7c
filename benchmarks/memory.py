"""Peak total memory of a run: the sum of PSS over every process carrying its tag, sampled.

    >>> with PeakMemory(lambda: tagged_processes("bench-w1-b")) as peak:
    ...     run_the_thing()          # processes started with FL_LAUNCH_TAG=bench-w1-b
    >>> peak.mib, peak.processes

PSS (proportional set size) splits each shared page between the processes that map
it, so the sum over a run is what the run costs the machine: torch pages shared by
forked workers count once, not once per process.

Reading a process's PSS walks its page tables (~13 ms for a 400 MB Python with torch; psutil and
smaps_rollup alike): read for every process twice a second, it took a third of a core from the
run it measured (3500 FEMNIST clients' final evaluation: 18.6 s sampled, 14.7 s not). So each tick
sums the resident sizes (statm, microseconds), and PSS is read again only when that sum has grown
past what it was at the last PSS reading (by RSS_GROWTH) and AT_MOST_EVERY seconds have passed (a start-up
grows it on every tick), or FULL_EVERY seconds have passed.
"""

from __future__ import annotations

import threading
import time

import psutil

from launcher.processes.tagged import tagged_processes


def total_pss_mib(procs: list[psutil.Process]) -> tuple[float, int]:
    total = count = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
            count += 1
        except psutil.Error:
            continue
    return total / 2**20, count


def tagged(tag: str):
    """The processes to sum: those carrying the tag (they inherit it from what the benchmark started)."""
    return lambda: tagged_processes(tag)


RSS_GROWTH = 1.01  # PSS is read again once the summed RSS grew 1% past its value at the last reading
AT_MOST_EVERY = 2.0  # seconds between two readings for growth (fifty clients starting: a reading costs ~0.3 CPU-s)
FULL_EVERY = 10.0  # and at least this often (seconds)


def total_rss_mib(procs: list[psutil.Process]) -> float:
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


class PeakMemory:
    def __init__(self, processes, interval: float = 0.5, limit_mib: float | None = None) -> None:
        self.processes_of, self.interval, self.limit_mib = processes, interval, limit_mib
        self.mib, self.processes, self.hit_limit = 0.0, 0, False
        self.readings = 0  # PSS readings taken (each a walk of every process's pages)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        rss_at_reading, read_at = 0.0, 0.0
        while not self._stop.is_set():
            procs = self.processes_of()
            rss = total_rss_mib(procs)
            since = time.monotonic() - read_at
            if (rss > rss_at_reading * RSS_GROWTH and since >= AT_MOST_EVERY) or since >= FULL_EVERY:
                mib, count = total_pss_mib(procs)
                rss_at_reading, read_at, self.readings = rss, time.monotonic(), self.readings + 1
                if mib > self.mib:
                    self.mib, self.processes = mib, count
                if self.limit_mib and mib > self.limit_mib:
                    self.hit_limit = True
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
