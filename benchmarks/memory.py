"""Peak total memory of a run: the sum of PSS over every process carrying its tag, sampled.

    >>> with PeakMemory(lambda: tagged_processes("bench-w1-b")) as peak:
    ...     run_the_thing()          # processes started with FL_LAUNCH_TAG=bench-w1-b
    >>> peak.mib, peak.processes

PSS (proportional set size) splits each shared page between the processes that map
it, so the sum over a run is what the run costs the machine: torch pages shared by
forked workers count once, not once per process.
"""

from __future__ import annotations

import threading

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


class PeakMemory:
    def __init__(self, processes, interval: float = 0.5, limit_mib: float | None = None) -> None:
        self.processes_of, self.interval, self.limit_mib = processes, interval, limit_mib
        self.mib, self.processes, self.hit_limit = 0.0, 0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            mib, count = total_pss_mib(self.processes_of())
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
