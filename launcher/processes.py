"""Spawn a run's processes, each in its own session, reap them, stop them TERM then KILL.

    >>> table = ProcessTable(tag="run-42")       # sets FL_LAUNCH_TAG on every child
    >>> table.spawn("superlink", ["flower-superlink", ...], log=Path("server/superlink.log"))
    >>> table.reap()                             # collects exits, never blocks
    >>> table.stop(["clientapp", "supernode"], grace=10)

Every child starts a session of its own, so ``killpg`` reaches what it starts in
turn (Flower's SuperExec and app processes). The calling process registers as a
child subreaper: descendants orphaned by a stopped parent come back to it and are
reaped here, because PID 1 on these machines reaps nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

TAG_ENV = "FL_LAUNCH_TAG"
RUN_ENV = "FL_LAUNCH_RUN_ID"
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def describe_exit(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


@dataclass
class Managed:
    role: str
    pid: int
    argv: list[str]
    log: str
    client: int | None = None
    port: int | None = None
    host: str = "localhost"
    started: float = field(default_factory=time.time)
    exit_code: int | None = None
    ended: float | None = None

    @property
    def alive(self) -> bool:
        return self.exit_code is None

    def record(self) -> dict:
        return {
            "role": self.role, "client": self.client, "host": self.host, "pid": self.pid,
            "pgid": self.pid, "port": self.port, "log": self.log, "started": self.started,
            "ended": self.ended, "exit_code": self.exit_code, "exit": describe_exit(self.exit_code),
        }


class ProcessTable:
    def __init__(self, tag: str, run_id: str = "") -> None:
        self.tag = tag
        self.run_id = run_id
        self.procs: list[Managed] = []
        self._by_pid: dict[int, Managed] = {}
        become_subreaper()

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(extra or {})
        env[TAG_ENV] = self.tag
        env[RUN_ENV] = self.run_id
        return env

    def spawn(self, role: str, argv: list[str], log: Path, env: dict[str, str] | None = None,
              cwd: Path | None = None, client: int | None = None, port: int | None = None) -> Managed:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab", buffering=0) as out:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self.child_env(env), cwd=cwd, start_new_session=True,
            )
        proc = Managed(role=role, pid=popen.pid, argv=list(argv), log=str(log), client=client, port=port)
        popen.returncode = 0  # reaped by reap(), not by Popen: keep Popen from waiting on it
        self.procs.append(proc)
        self._by_pid[proc.pid] = proc
        return proc

    def reap(self) -> list[Managed]:
        """Collect every exited child (ours or an adopted orphan); returns ours that ended."""
        ended = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            proc = self._by_pid.get(pid)
            if proc is not None and proc.alive:
                proc.exit_code = os.waitstatus_to_exitcode(status)
                proc.ended = time.time()
                ended.append(proc)
        return ended

    def alive(self, role: str | None = None) -> list[Managed]:
        return [p for p in self.procs if p.alive and (role is None or p.role == role)]

    def stop(self, roles: list[str] | None = None, grace: float = 10.0) -> None:
        """TERM the process groups of these roles, KILL what is left after ``grace``."""
        targets = [p for p in self.procs if roles is None or p.role in roles]
        groups = {p.pid for p in targets}
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.reap()
            if not (live_pgids() & groups) and not any(p.alive for p in targets):
                break
            time.sleep(0.05)
        for pgid in live_pgids() & groups:
            _signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (any(p.alive for p in targets) or live_pgids() & groups):
            self.reap()
            time.sleep(0.02)
        self.reap()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def live_pgids() -> set[int]:
    """Process groups that still hold a process that is not a zombie."""
    groups = set()
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE:
                groups.add(os.getpgid(proc.pid))
        except (ProcessLookupError, OSError):
            continue
    return groups
