"""The ServerApp a run's SuperExec starts, forked by the run's fork server instead of started fresh.

    task = fork_task("launcher.flower.plain_logs", ["flwr-serverapp", "--serverappio-api-address", ...])
    task.pid if task else subprocess.Popen(...)       # None: no fork server named, or none answered

A fresh ``flwr-serverapp`` imports torch, Flower and the app, ~3 CPU-s, on the two cores that start fifty clients
at the same moment: round 1 waits for both. The run's fork server (launcher.processes.fork_server) has them imported
already. Where the supervisor names it to the SuperLink (contract.fork_requests.FORK_SERVER_ENV: a run of the
built-in app with clients on this machine; a user's ServerApp starts fresh, in a process with nothing of ours
loaded), the SuperExec's Popen of a ServerApp (launcher.flower.plain_logs) asks it for the same command, with the
SuperExec's environment, working folder, stdin, stdout and stderr. The new process is the supervisor's child (the
fork server's subreaper), not the SuperExec's: Flower's SubprocessExecutor keeps nothing of the Popen it makes,
and the ServerApp watches the SuperExec by ``--parent-pid`` (a PID that exists, not its parent's) as before
(tests/test_flower_internals.py pins both). Where the fork server does not answer within READY_TIMEOUT_S, the
command starts fresh as it did, and the fork server is not asked again; where it answers that it started nothing
(a fork that failed), the command starts fresh and the next one asks again.
"""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass

from contract.fork_requests import ForkServer, NotStarted, RequestLost, request_fork, wait_ready

FORKED_COMMANDS = frozenset({"flwr-serverapp"})  # flwr-simulation runs Ray, whose workers the fork server lacks
# Flower voids a claimed task whose process has not pulled it within 30 s: the wait for the fork server (its
# imports, a few seconds) and the request end well before, and a fresh start has time left after them.
READY_TIMEOUT_S = 10.0
_unanswered: set[ForkServer] = set()  # fork servers that did not answer once: not asked again


@dataclass(frozen=True)
class ForkedTask:
    """What stands for Popen's return: the forked process's PID (it is not this process's child); None where the
    fork server took the request and its answer was lost (the task's claim then lapses and Flower retries it)."""

    args: list[str]
    pid: int | None


def fork_task(module: str, args: list[str], **popen_kwargs) -> ForkedTask | None:
    """``python -m module args`` forked by the run's fork server, as ``subprocess.Popen(args, **popen_kwargs)``
    would start ``args`` (only ``stdin``, ``stdout`` and ``stderr`` are taken); None where it cannot, before
    anything was asked (the caller then starts it fresh)."""
    forks = ForkServer.from_env(os.environ)
    streams = [popen_kwargs.get(name) for name in ("stdin", "stdout", "stderr")]
    if (forks is None or forks in _unanswered or not args or args[0] not in FORKED_COMMANDS
            or set(popen_kwargs) - {"stdin", "stdout", "stderr"}
            or any(isinstance(s, int) and s < 0 and s != subprocess.DEVNULL for s in streams)):  # PIPE, STDOUT
        return None
    started = time.monotonic()
    try:
        with ExitStack() as opened:
            stdio = tuple(_descriptor(stream, own, opened) for stream, own in zip(streams, (0, 1, 2)))
            if wait_ready(forks.run_dir, READY_TIMEOUT_S, alive=forks.alive):
                left = max(1.0, READY_TIMEOUT_S - (time.monotonic() - started))
                return ForkedTask(list(args), request_fork(
                    forks.run_dir, module, list(args), log="", env=dict(os.environ), cwd=os.getcwd(),
                    timeout=left, stdio=stdio, name=args[0], exact_env=True))
    except RequestLost:
        return ForkedTask(list(args), None)  # it may run: a second one would find its task taken, and fail the run
    except NotStarted:  # it answered: nothing started this time, the caller starts it fresh
        return None
    except Exception:  # noqa: BLE001 (nothing was started: the caller starts it fresh)
        pass
    _unanswered.add(forks)
    return None


def _descriptor(stream, own: int, opened: ExitStack) -> int:
    """The descriptor Popen would give the child for this stream argument."""
    if stream is None:
        return own
    if stream == subprocess.DEVNULL:
        return opened.enter_context(open(os.devnull, "r+b")).fileno()
    return stream if isinstance(stream, int) else stream.fileno()
