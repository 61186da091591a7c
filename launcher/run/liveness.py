"""What a run is doing now: its run.json checked against the kernel.

    live_status(RunFolder("logs/20261124-053012-4f2a"))
    # {'status': 'running', 'clients_alive': 10, 'clients': 10, 'rounds_done': 3, 'activity': None, ...}
    [p.pid for p in run_processes(folder.read())]     # what fl-finish would stop
    # [41230, 41236, ...]

A run is supervised while a process holds its supervisor lock (RunFolder.supervised). run.json says
"running" until its supervisor writes the end; when it says so and nobody holds the lock, the run is
- "orphaned": processes it started still live (its supervisor was SIGKILLed); fl-finish stops them;
- "interrupted": nothing of it is alive; run.json is corrected to say so.
Processes are named by pid and start time as run.json recorded them (a reused pid is not the run's),
plus the members of the run's cgroup (launcher.processes.cgroup), never by their environment alone.
"""

from __future__ import annotations

import psutil

from launcher.processes.cgroup import RunGroup
from launcher.processes.clock import now_iso
from launcher.processes.roles import TASK_ROLES, Role
from launcher.processes.table import same_process
from launcher.run.folder import RunFolder
from launcher.run.record import recorded_rounds
from launcher.run.run_status import LIVE, RunStatus
from launcher.stats.follow import LogFollower

NO_END = "its supervisor ended without recording an end (killed by SIGKILL?)"


def _recorded(info: dict) -> list[dict]:
    supervisor = info.get("supervisor") or {}
    procs = [p for p in info.get("processes", []) if p.get("host", "localhost") == "localhost"]
    return [*procs, {"role": Role.SUPERVISOR, **supervisor}] if supervisor else procs


def recorded_alive(info: dict) -> list[tuple[dict, psutil.Process]]:
    """(record, process) for each process run.json records that is still the same live process."""
    found = []
    for record in _recorded(info):
        proc = same_process(record.get("pid"), record.get("created"))
        if proc is not None:
            found.append((record, proc))
    return found


def processes_of(pids) -> list[psutil.Process]:
    """The live processes among these pids."""
    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return found


def run_group(info: dict) -> RunGroup | None:
    """The cgroup the run's supervisor made, while it exists (the same group: its inode recorded)."""
    ident = info.get("cgroup")
    return RunGroup.find(info["kill_tag"], ident) if isinstance(ident, int) and info.get("kill_tag") else None


def run_processes(info: dict) -> list[psutil.Process]:
    """Every live local process of the run: those recorded, their descendants, and its cgroup's members."""
    found: dict[int, psutil.Process] = {}
    for _, proc in recorded_alive(info):
        try:
            for p in [proc, *proc.children(recursive=True)]:
                found.setdefault(p.pid, p)
        except psutil.Error:
            continue
    group = run_group(info)
    for proc in processes_of(group.pids() if group else ()):
        found.setdefault(proc.pid, proc)
    return list(found.values())


def _record_interrupted(folder: RunFolder) -> None:
    def fix(data: dict) -> None:
        if data.get("status") in LIVE and not folder.supervised() and not run_processes(data):
            data.update(status=RunStatus.INTERRUPTED, reason=NO_END, ended=now_iso())
    try:
        folder.edit(fix)
    except OSError:  # a read-only or full folder: the answer below is true all the same
        pass


def _status(folder: RunFolder, info: dict) -> str:
    recorded = info.get("status", "unknown")
    if recorded not in LIVE or folder.supervised():
        return recorded
    if run_processes(info):
        return RunStatus.ORPHANED
    _record_interrupted(folder)
    return RunStatus.INTERRUPTED


def _activity(status: str, info: dict) -> str | None:
    """What a live run's supervisor says it is doing ("starting: 3 of 5 clients connected", "restarting client
    2"); None when it is simply at work, or when nobody supervises it (then run.json's word is stale)."""
    activity = info.get("activity")
    return activity if isinstance(activity, str) and status in (RunStatus.PREPARED, RunStatus.STARTING,
                                                                   RunStatus.RUNNING) else None


def live_status(folder: RunFolder) -> dict:
    info = folder.read()
    tag = info.get("kill_tag", "")
    status = _status(folder, info)
    clients = len((info.get("plan") or {}).get("nodes", []))
    alive = {record["client"] for record, _ in recorded_alive(info)
             if record["role"] in TASK_ROLES and record.get("exit_code") is None}
    rounds_done = info.get("rounds_done")
    if rounds_done is None:  # still running: count the rounds the server aggregated (each once, over attempts)
        rounds_done = len({e.values["round"] for e in LogFollower(folder.server_dir / "server.log").events()
                           if e.kind == "server_round_end" and e.values["aggregated"]})
    return {
        "run": info.get("run_id", folder.run_id), "tag": tag, "task": info.get("task"), "status": status,
        "clients_alive": len(alive), "clients": clients, "rounds_done": rounds_done,
        "rounds": recorded_rounds(info), "final_accuracy": info.get("final_accuracy"),
        "created": info.get("created"), "activity": _activity(status, info),
        "reason": NO_END if status == RunStatus.INTERRUPTED and info.get("status") in LIVE else info.get("reason"),
    }
