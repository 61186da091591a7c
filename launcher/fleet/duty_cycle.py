"""CPU share and memory limits without privileges: SIGSTOP/SIGCONT duty cycling and a memory watchdog.

    client = DutyCycleLimit("exp1-client-3", cpu=0.25, memory=100 * 2**20, profile="pi4")
    client.add(pid)          # the process, its process group and its descendants
    client.oom_kills()       # 1 once the watchdog killed the client for its resident memory
    client.close()           # the watcher stops and every process is left running (SIGCONT)

A watcher thread holds each client to share x PERIOD seconds of CPU time in every PERIOD, as the kernel's CFS
quota does: SIGCONT at the start of a period, then it reads the client's CPU time (/proc/PID/task/TID/schedstat,
nanoseconds) until the budget is spent and SIGSTOPs it for the rest of the period; time run past the budget is
taken from the next periods, a budget left unused (the client was idle or the machine busy) is not carried over.
It signals each process added, the process group of each that leads its own (so a child forked a moment ago
stops with its parent), and every descendant, looked up again before each signal from
/proc/PID/task/TID/children (a child that called setsid is caught at the next stop). At each signal it also reads
the memory they hold together (memory.MemoryGauge: a page they share counted once); above the limit it SIGKILLs
every one and counts an out-of-memory kill.
Limits: a share of 1 is not cycled (several busy threads may then use more than one core); memory growing
between two looks can overshoot the limit for that long; a signal sent to a stopped process (SIGTERM) acts when
it runs again, within (1 - share) x PERIOD; CPU time of a child that lived and died between two looks is not
counted; the watcher is a thread of the caller, so a caller that holds the GIL long delays it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil

from launcher.fleet.handle import LimitHandle
from launcher.fleet.memory import MemoryGauge

PERIOD = 0.1
MIN_WAIT = 0.002
MAX_DEBT_PERIODS = 10
TICK = os.sysconf("SC_CLK_TCK")


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of a process (schedstat's nanoseconds, else stat's ticks)."""
    found: dict[int, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                found[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICK
            except (OSError, ValueError, IndexError):
                continue
    return found


def _children(process: psutil.Process) -> list[int]:
    """The process's children: /proc/PID/task/TID/children (cheap), else psutil's scan of every process."""
    try:
        tasks = list(Path(f"/proc/{process.pid}/task").iterdir())
        return [int(pid) for task in tasks for pid in (task / "children").read_text().split()]
    except (OSError, ValueError):
        try:
            return [child.pid for child in process.children()]
        except psutil.Error:
            return []


class DutyCycleLimit(LimitHandle):
    def __init__(self, name: str, cpu: float, memory: int | None, profile: str, period: float = PERIOD) -> None:
        super().__init__(name, profile)
        self.share = cpu
        self.memory = memory
        self.period = period
        self.roots: dict[int, psutil.Process] = {}
        self._known: dict[int, psutil.Process] = {}  # psutil.Process: no signal reaches a reused PID
        self._kills = 0
        self._cpu_seen: dict[tuple[int, int], float] = {}  # (pid, tid) -> CPU seconds at the last look
        self.gauge = MemoryGauge(memory) if memory is not None else None
        self.watches_memory = self.gauge is not None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"limits-{name}", daemon=True)
        self._thread.start()

    def add(self, pid: int) -> None:
        with self._lock:
            try:
                self.roots[pid] = psutil.Process(pid)
            except psutil.Error:
                return
            self._rescan()
            for known in self._known:  # what a new process ran before is not the client's to pay for
                for tid, seconds in _thread_cpu(known).items():
                    self._cpu_seen.setdefault((known, tid), seconds)

    def pids(self) -> set[int]:
        with self._lock:
            self._rescan()
            return set(self._known)

    def oom_kills(self) -> int:
        return self._kills

    def close(self, until: float | None = None) -> bool:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5 * self.period + 1)
        with self._lock:
            self._signal(signal.SIGCONT)
        return True

    # the watcher thread

    def _rescan(self) -> None:
        """The live processes: the roots, their descendants, and children seen before whose parent died."""
        found: dict[int, psutil.Process] = {}
        queue = [*self.roots.values(), *self._known.values()]
        while queue:
            process = queue.pop()
            if process.pid in found:
                continue
            try:
                if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.Error:
                continue
            found[process.pid] = process
            for child in _children(process):
                if child not in found:
                    try:
                        queue.append(self._known.get(child) or psutil.Process(child))
                    except psutil.Error:
                        continue
        found.pop(os.getpid(), None)
        self._known = found

    def _signal(self, signum: int) -> None:
        own_group = os.getpgrp()
        for pid, process in self.roots.items():
            try:
                if process.is_running() and os.getpgid(pid) == pid != own_group:
                    os.killpg(pid, signum)
            except (OSError, psutil.Error):
                continue
        for process in self._known.values():
            try:
                process.send_signal(signum)
            except psutil.Error:
                continue

    def _cpu_used(self) -> float:
        """CPU seconds the known processes ran since the last look (threads first seen count whole)."""
        used = 0.0
        seen: dict[tuple[int, int], float] = {}
        for pid in self._known:
            for tid, seconds in _thread_cpu(pid).items():
                seen[pid, tid] = seconds
                used += seconds - self._cpu_seen.get((pid, tid), 0.0)
        self._cpu_seen = seen
        return max(used, 0.0)

    def _check_memory(self) -> None:
        if self.gauge is None:
            return
        if self.gauge.over(self._known.values()):
            self._signal(signal.SIGKILL)
            self._kills += 1

    def _step(self, signum: int | None) -> None:
        with self._lock:
            self._rescan()
            if signum is not None:
                self._signal(signum)
            self._check_memory()

    def _watch(self) -> None:
        quota = self.share * self.period
        debt = 0.0
        try:
            while not self._stop.is_set():
                if self.share >= 1.0:
                    self._step(None)
                    self._stop.wait(self.period / 2)
                    continue
                end = time.monotonic() + self.period
                budget = quota - debt
                if budget <= 0:  # overran earlier: this period stays stopped
                    debt -= quota
                else:
                    self._step(signal.SIGCONT)
                    used = 0.0
                    while not self._stop.is_set() and used < budget and time.monotonic() < end:
                        self._stop.wait(min(max(budget - used, MIN_WAIT), max(0.0, end - time.monotonic())))
                        with self._lock:
                            used += self._cpu_used()
                    self._step(signal.SIGSTOP)
                    with self._lock:
                        used += self._cpu_used()
                    debt = min(max(used - budget, 0.0), MAX_DEBT_PERIODS * quota)
                self._stop.wait(max(0.0, end - time.monotonic()))
        finally:
            with self._lock:
                self._signal(signal.SIGCONT)
