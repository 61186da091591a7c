"""What a run is doing now, from its run.json checked against the live processes.

    >>> live_status(RunFolder("logs/20261124-053012-4f2a"))
    {'status': 'running', 'clients_alive': 10, 'clients': 10, 'rounds_done': 3, ...}

run.json says "running" until its supervisor writes the end; a supervisor killed
with SIGKILL writes nothing, so a run whose supervisor is gone reads as
"interrupted" here.
"""

from __future__ import annotations

import psutil

from launcher.log_follow import LogFollower
from launcher.processes import TAG_ENV
from launcher.run_folder import RunFolder

LIVE = ("prepared", "starting", "running")


def _alive_with_tag(pid: int | None, tag: str) -> bool:
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(TAG_ENV) == tag
    except (psutil.Error, OSError):
        return False


def live_status(folder: RunFolder) -> dict:
    info = folder.read()
    tag = info.get("kill_tag", "")
    status = info.get("status", "unknown")
    if status in LIVE and not _alive_with_tag((info.get("supervisor") or {}).get("pid"), tag):
        status = "interrupted"
    clients = len((info.get("plan") or {}).get("nodes", []))
    alive = {p["client"] for p in info.get("processes", [])
             if p["role"] == "clientapp" and p.get("exit_code") is None and _alive_with_tag(p["pid"], tag)}
    rounds_done = info.get("rounds_done")
    if rounds_done is None:  # still running: count the rounds the server aggregated (each once, over attempts)
        rounds_done = len({e.values["round"] for e in LogFollower(folder.server_dir / "server.log").events()
                           if e.kind == "server_round_end" and e.values["aggregated"]})
    return {
        "run": info.get("run_id", folder.run_id), "tag": tag, "task": info.get("task"), "status": status,
        "clients_alive": len(alive), "clients": clients, "rounds_done": rounds_done,
        "rounds": (info.get("settings") or {}).get("rounds"), "final_accuracy": info.get("final_accuracy"),
        "created": info.get("created"),
    }
