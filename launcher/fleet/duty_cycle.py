"""CPU share and memory limits without privileges: SIGSTOP/SIGCONT duty cycling and a resident-set watchdog.

    client = DutyCycleLimit("exp1-client-3", cpu=0.25, memory=100 * 2**20, profile="pi4")
    client.add(pid)          # the process, its process group and its descendants
    client.oom_kills()       # 1 once the watchdog killed the client for its resident memory
    client.close()           # the watcher stops and every process is left running (SIGCONT)

A watcher thread runs each client in periods of PERIOD seconds: SIGCONT, share x PERIOD running, SIGSTOP for
the rest. It signals each process added, the process group of each that leads its own (so a child forked a
moment ago stops with its parent), and every descendant, looked up again every RESCAN seconds (a child that
called setsid is caught there). Once per half period it sums the resident set of them all (psutil); above the
limit it SIGKILLs every one and counts an out-of-memory kill. A share of 1 is not cycled: no CPU use is
measured, so a client with several busy threads gets share x PERIOD of each thread's time, not of one core's,
and memory growing faster than the watchdog looks can overshoot the limit for up to half a period. A signal a
stopped process is sent (SIGTERM) takes effect when it runs again: within (1 - share) x PERIOD.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil

from launcher.fleet.handle import LimitHandle

PERIOD = 0.1
RESCAN = 0.5


class DutyCycleLimit(LimitHandle):
    def __init__(self, name: str, cpu: float, memory: int | None, profile: str, period: float = PERIOD) -> None:
        super().__init__(name, profile)
        self.share = cpu
        self.memory = memory
        self.period = period
        self.roots: dict[int, psutil.Process] = {}
        self._known: dict[int, psutil.Process] = {}  # psutil.Process: no signal reaches a reused PID
        self._scanned = 0.0
        self._kills = 0
        self.peak_rss = 0
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

    def pids(self) -> set[int]:
        with self._lock:
            self._rescan()
            return set(self._known)

    def oom_kills(self) -> int:
        return self._kills

    def close(self) -> bool:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5 * self.period + 1)
        with self._lock:
            self._signal(signal.SIGCONT)
        return True

    # the watcher thread

    def _rescan(self) -> None:
        """The live processes: the roots and their descendants (called with the lock held)."""
        found: dict[int, psutil.Process] = {}
        for process in self.roots.values():
            try:
                if process.is_running():
                    found.update((child.pid, child) for child in process.children(recursive=True))
            except psutil.Error:
                continue
        for process in [*self.roots.values(), *self._known.values()]:  # a child whose parent died is still ours
            found.setdefault(process.pid, process)
        for pid, process in list(found.items()):
            try:
                if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                    del found[pid]
            except psutil.Error:
                del found[pid]
        found.pop(os.getpid(), None)
        self._known = found
        self._scanned = time.monotonic()

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

    def _check_memory(self) -> None:
        if self.memory is None:
            return
        total = 0
        for process in self._known.values():
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, total)
        if total > self.memory:
            self._signal(signal.SIGKILL)
            self._kills += 1

    def _step(self, signum: int | None) -> None:
        with self._lock:
            if time.monotonic() - self._scanned > RESCAN:
                self._rescan()
            if signum is not None:
                self._signal(signum)
            self._check_memory()

    def _watch(self) -> None:
        on, off = self.share * self.period, (1.0 - self.share) * self.period
        try:
            while not self._stop.is_set():
                if self.share >= 1.0:
                    self._step(None)
                    self._stop.wait(self.period / 2)
                    continue
                began = time.monotonic()
                self._step(signal.SIGCONT)
                self._stop.wait(max(0.0, began + on - time.monotonic()))
                self._step(signal.SIGSTOP)
                stopped = time.monotonic()
                # the next period at its time, but never less than the off time after a late stop
                self._stop.wait(max(began + self.period, stopped + off) - stopped)
        finally:
            with self._lock:
                self._signal(signal.SIGCONT)
