"""Spawn a run's processes, each in its own session, reap them, stop them TERM then KILL.

    table = ProcessTable(tag="run-42")       # sets FL_LAUNCH_TAG on every child
    table.spawn(Role.SUPERLINK, ["flower-superlink", ...], log=Path("server/superlink.log"))
    table.reap()                             # collects exits, never blocks
    table.stop([Role.CLIENTAPP, Role.SUPERNODE], grace=10)

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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from contract.fork_requests import ForkServer, request_fork, wait_ready
from launcher.processes.entry_modules import FORK_SERVER
from launcher.processes.roles import Role

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


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def same_process(pid: int | None, created: float | None) -> psutil.Process | None:
    """The live process with this pid AND start time (a reused pid is another process), else None."""
    if not pid or created is None:
        return None
    try:
        proc = psutil.Process(pid)
        # within a second: the kernel counts from boot, psutil adds a boot time that moves when the clock is set
        if abs(proc.create_time() - created) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except psutil.Error:
        pass
    return None


@dataclass
class Managed:
    role: Role
    pid: int
    argv: list[str]
    log: str
    client: int | None = None
    port: int | None = None
    host: str = "localhost"
    started: float = field(default_factory=time.time)
    exit_code: int | None = None
    ended: float | None = None
    created: float | None = None  # the kernel's start time: with the pid, names this process and no later one

    def __post_init__(self) -> None:
        if self.created is None:
            self.created = create_time(self.pid)

    @property
    def alive(self) -> bool:
        return self.exit_code is None

    def record(self, run_dir: Path | None = None) -> dict:
        """For run.json / agent.json: ``log`` relative to ``run_dir`` when it is in there (the folder may move)."""
        log = Path(self.log)
        if run_dir is not None and log.is_relative_to(run_dir):
            log = log.relative_to(run_dir)
        return {
            "role": self.role, "client": self.client, "host": self.host, "pid": self.pid,
            "pgid": self.pid, "port": self.port, "log": str(log), "started": self.started, "created": self.created,
            "ended": self.ended, "exit_code": self.exit_code, "exit": describe_exit(self.exit_code),
        }


class ProcessTable:
    def __init__(self, tag: str, run_id: str = "") -> None:
        self.tag = tag
        self.run_id = run_id
        self.procs: list[Managed] = []
        self._by_pid: dict[int, Managed] = {}
        self._early_exits: dict[int, tuple[int, float]] = {}  # pid -> (exit code, when): reaped before adopted
        self._forks_for: Path | None = None  # run folder whose fork server this table uses
        self._forks_ready = False
        become_subreaper()

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(extra or {})
        env[TAG_ENV] = self.tag
        env[RUN_ENV] = self.run_id
        return env

    def spawn(self, role: Role, argv: list[str], log: Path, env: dict[str, str] | None = None,
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

    def start_fork_server(self, run_dir: Path, env: dict[str, str]) -> ForkServer:
        """Start launcher.processes.fork_server for this run (it imports while other things start);
        later ``fork`` calls go through it once it is ready, and so may the run's other processes it is named to."""
        proc = self.spawn(Role.FORKSERVER, [sys.executable, "-m", FORK_SERVER, "--run-dir", str(run_dir)],
                          log=run_dir / "server" / "forkserver.log", env=env, cwd=run_dir)
        self._forks_for = run_dir
        return ForkServer(proc.pid, run_dir)

    def _fork_server_ready(self, timeout: float = 120.0) -> bool:
        if self._forks_for is None or not self.alive(Role.FORKSERVER):
            return False
        if not self._forks_ready:
            self._forks_ready = wait_ready(
                self._forks_for, timeout, alive=lambda: (self.reap(), bool(self.alive(Role.FORKSERVER)))[1])
        return self._forks_ready

    def fork(self, role: Role, module: str, args: list[str], log: Path, env: dict[str, str], cwd: Path,
             client: int | None = None, port: int | None = None) -> Managed:
        """``python -m module args``, forked by the fork server when there is one, else spawned."""
        argv = [sys.executable, "-m", module, *args]
        if not self._fork_server_ready():
            return self.spawn(role, argv, log=log, env=env, cwd=cwd, client=client, port=port)
        log.parent.mkdir(parents=True, exist_ok=True)
        pid = request_fork(self._forks_for, module, args, str(log), env, str(cwd))
        proc = Managed(role=role, pid=pid, argv=argv, log=str(log), client=client, port=port)
        self.procs.append(proc)
        self._by_pid[pid] = proc
        code, when = self._early_exits.pop(pid, (None, 0.0))
        if code is not None and time.time() - when < 60:  # not an older process that had this PID
            proc.exit_code, proc.ended = code, when
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
            if proc is None:
                self._early_exits[pid] = (os.waitstatus_to_exitcode(status), time.time())
            elif proc.alive:
                proc.exit_code = os.waitstatus_to_exitcode(status)
                proc.ended = time.time()
                ended.append(proc)
        return ended

    def alive(self, role: Role | frozenset[Role] | None = None) -> list[Managed]:
        """The live processes (of ``role``, or of any role of a set)."""
        roles = role if isinstance(role, frozenset) else {role}
        return [p for p in self.procs if p.alive and (role is None or p.role in roles)]

    def stop(self, roles: list[Role] | None = None, grace: float = 10.0, client: int | None = None) -> None:
        """SIGTERM these roles' processes (of one client, if given) and all their descendants;
        SIGKILL what is left after ``grace``."""
        self.reap()
        targets = [p for p in self.procs if p.alive and (roles is None or p.role in roles)
                   and (client is None or p.client == client)]
        terminate_then_kill(_with_descendants([p.pid for p in targets]), grace, on_wait=self.reap)
        # A multi-threaded process shows as a zombie while its other threads still exit, and
        # waitpid() collects it only after them: wait for the exit status itself.
        deadline = time.monotonic() + 5
        while any(p.alive for p in targets) and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.02)

    def stop_all(self, grace: float = 10.0) -> None:
        """Everything still below this process, adopted orphans included."""
        self.stop(None, grace)
        try:
            leftovers = psutil.Process().children(recursive=True)
        except psutil.Error:
            leftovers = []
        terminate_then_kill(leftovers, grace, on_wait=self.reap)
        self.reap()


@dataclass
class StopResult:
    pid: int
    name: str
    outcome: str  # terminated | killed | gone | survived | would stop


def _with_descendants(pids: list[int]) -> list[psutil.Process]:
    found: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                found.setdefault(p.pid, p)
        except psutil.Error:
            continue
    return list(found.values())


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def command_of(proc: psutil.Process) -> str:
    try:
        command = " ".join(proc.cmdline()) or proc.name()
        if FORK_SERVER in command and not proc.name().startswith("python"):
            return f"{proc.name()} (forked by: {command})"  # a client process, named by the fork server
        return command
    except psutil.Error:
        return "?"


def terminate_then_kill(procs: list[psutil.Process], grace: float, on_wait=None) -> list[StopResult]:
    """SIGTERM all, SIGKILL those still alive after ``grace`` seconds; zombies count as gone."""
    names = {p.pid: command_of(p) for p in procs}
    outcome: dict[int, str] = {}
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            outcome[proc.pid] = "gone"
    pending = [p for p in procs if p.pid not in outcome]
    for sig_deadline, label in ((grace, "terminated"), (5.0, "killed")):
        deadline = time.monotonic() + sig_deadline
        while pending and time.monotonic() < deadline:
            if on_wait is not None:
                on_wait()
            for p in pending:
                if _gone(p):
                    outcome[p.pid] = label
            pending = [p for p in pending if p.pid not in outcome]
            if pending:
                time.sleep(0.05)
        if label == "terminated":
            for proc in pending:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
    for proc in pending:
        outcome[proc.pid] = "survived"
    return [StopResult(p.pid, names[p.pid], outcome[p.pid]) for p in procs]
