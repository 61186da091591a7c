"""Find and stop the processes that carry a run's kill tag, by exact environment match.

    >>> procs = tagged_processes("run-42")      # FL_LAUNCH_TAG == "run-42", nothing looser
    >>> results = terminate_then_kill(procs, grace=10)      # launcher.processes

fl-launch sets ``FL_LAUNCH_TAG`` on every process it starts and their children
inherit it; matching reads /proc/<pid>/environ, so a process that merely has the
tag text in its command line or name is never a match.
"""

from __future__ import annotations

import os

import psutil

from launcher.processes import TAG_ENV


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
            if proc.environ().get(TAG_ENV) == tag:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found
