"""The ServerApp a run's SuperExec starts, forked by the run's fork server instead of started fresh.

    task = fork_task("launcher.flower.plain_logs", ["flwr-serverapp", "--serverappio-api-address", ...])
    task.pid if task else subprocess.Popen(...)       # None: no fork server named, or none answered

A fresh ``flwr-serverapp`` imports torch, Flower and the app, ~3 CPU-s, on the two cores that start fifty clients
at the same moment: round 1 waits for both. The run's fork server (launcher.processes.fork_server) has them imported
already. Where the supervisor names it to the SuperLink (contract.fork_requests.FORK_SERVER_ENV: a run with clients
on this machine), the SuperExec's Popen of a ServerApp (launcher.flower.plain_logs) asks it for the same command,
with the SuperExec's environment, working folder, stdin, stdout and stderr. The new process is the supervisor's
child (the fork server's subreaper), not the SuperExec's: Flower's SubprocessExecutor keeps nothing of the Popen
it makes, and the ServerApp watches the SuperExec by ``--parent-pid`` as before (tests/test_flower_internals.py
pins both). Where the fork server does not answer, the command starts fresh as it did.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass

from contract.fork_requests import ForkServer, request_fork, wait_ready

FORKED_COMMANDS = frozenset({"flwr-serverapp"})  # flwr-simulation runs Ray, whose workers the fork server lacks
READY_TIMEOUT_S = 120.0  # the fork server binds once its imports are done (a few seconds, more on a loaded host)


@dataclass(frozen=True)
class ForkedTask:
    """What stands for Popen's return: the forked process's PID (it is not this process's child)."""

    args: list[str]
    pid: int


def fork_task(module: str, args: list[str], **popen_kwargs) -> ForkedTask | None:
    """``python -m module args`` forked by the run's fork server, as ``subprocess.Popen(args, **popen_kwargs)``
    would start ``args`` (only ``stdin``, ``stdout`` and ``stderr`` are taken); None where it cannot."""
    forks = ForkServer.from_env(os.environ)
    streams = [popen_kwargs.get(name) for name in ("stdin", "stdout", "stderr")]
    if (forks is None or not args or args[0] not in FORKED_COMMANDS or set(popen_kwargs) - {"stdin", "stdout", "stderr"}
            or any(isinstance(s, int) and s < 0 and s != subprocess.DEVNULL for s in streams)):  # PIPE, STDOUT
        return None
    if not wait_ready(forks.run_dir, READY_TIMEOUT_S, alive=forks.alive):
        return None
    with ExitStack() as opened:
        stdio = tuple(_descriptor(stream, own, opened) for stream, own in zip(streams, (0, 1, 2)))
        try:
            pid = request_fork(forks.run_dir, module, list(args), log="", env=dict(os.environ), cwd=os.getcwd(),
                               stdio=stdio, name=args[0], exact_env=True)
        except OSError:
            return None
    return ForkedTask(list(args), pid)


def _descriptor(stream, own: int, opened: ExitStack) -> int:
    """The descriptor Popen would give the child for this stream argument."""
    if stream is None:
        return own
    if stream == subprocess.DEVNULL:
        return opened.enter_context(open(os.devnull, "r+b")).fileno()
    return stream if isinstance(stream, int) else stream.fileno()
