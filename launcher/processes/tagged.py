"""Find and stop the processes that carry a run's kill tag, by exact environment match.

    procs = tagged_processes("run-42")      # FL_LAUNCH_TAG == "run-42", nothing looser
    results = terminate_then_kill(procs, grace=10)      # launcher.processes.table

fl-launch sets ``FL_LAUNCH_TAG`` and ``FL_LAUNCH_RUN_ID`` on every process it starts and
their children inherit them; matching reads /proc/<pid>/environ and wants both, so a
process that merely has the tag text in its command line or name, or only FL_LAUNCH_TAG
set by hand, is never a match.
"""

from __future__ import annotations

import os

import psutil

from launcher.processes.table import RUN_ENV, TAG_ENV


def _pid_namespace(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def tagged_processes(tag: str, exclude: set[int] | None = None) -> list[psutil.Process]:
    """This PID namespace's processes with the tag: a device or container sharing the kernel is not here."""
    exclude = (exclude or set()) | {os.getpid(), os.getppid()}
    own_namespace = _pid_namespace("self")
    found = []
    for proc in psutil.process_iter(["status"]):
        if proc.pid in exclude or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if _pid_namespace(proc.pid) != own_namespace:
            continue
        try:
            environ = proc.environ()
            if environ.get(TAG_ENV) == tag and environ.get(RUN_ENV):  # started by a run: both are set
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found
