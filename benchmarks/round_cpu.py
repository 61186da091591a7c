"""CPU-seconds a run's processes spend per client task, by role, read from /proc at each round's start.

    with RoundCpu(tag, log_dir) as cpu:        # or run_dir=... where the run folder exists already
        run_the_variant()                      # its ServerApp writes server/server.log in the run folder
    cpu.per_task(tasks_per_round)              # {"cpu_ms_per_task": 89.8, "by_role": {"client": 58.0, ...}}

The run's processes are its cgroup's members where fl-launch made one (Ray's daemons rewrite their
environment), else those carrying its tag and their descendants. Each is given its role from run.json, else
from its command line. A process's reaped children count with it (a task child with its client process,
under "task"). Rounds 2 on: round 1 pays the start. CPU-seconds hold on a loaded machine where wall time
does not: the figure to compare across the machine's load.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path

import psutil

from launcher.processes.cgroup import RunGroup
from launcher.processes.tagged import tagged_processes
from launcher.stats.follow import LogFollower

_CMDLINE_ROLES = (("flwr-serverapp", "serverapp"), ("flower-superexec", "superexec"), ("flwr run", "flwr-run"),
                  ("flwr-simulation", "simulation"), ("flower-superlink", "superlink"),
                  ("flower-supernode", "supernode"), ("flwr-clientapp", "task"), ("ray", "ray"),
                  ("raylet", "ray"), ("gcs_server", "ray"))


def _role_by_cmdline(proc: psutil.Process) -> str:
    try:  # a process the fork server forked has its command line and the name it was given (flwr-serverapp)
        cmd = " ".join([*proc.cmdline(), proc.name()])
    except psutil.Error:
        return "other"
    return next((role for key, role in _CMDLINE_ROLES if key in cmd), "other")


def _recorded_roles(run_dir: Path | None) -> dict[int, str]:
    try:
        rows = json.loads((run_dir / "run.json").read_text()).get("processes", []) if run_dir else []
    except (OSError, ValueError):
        return {}
    return {r["pid"]: r["role"] for r in rows if isinstance(r, dict) and "pid" in r}


def run_processes(tag: str) -> list[psutil.Process]:
    """The run's processes: its cgroup's members, else those with the tag and their descendants."""
    group = RunGroup.find(tag)
    if group is None:
        found = {}
        for proc in tagged_processes(tag):
            try:
                found.update({p.pid: p for p in [proc, *proc.children(recursive=True)]})
            except psutil.Error:
                continue
        return list(found.values())
    procs = []
    for pid in group.pids():
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return procs


def cpu_by_role(tag: str, run_dir: Path | None) -> dict[str, float]:
    """CPU-seconds so far of every live process of the run, by role (run.json's, else by command)."""
    recorded = _recorded_roles(run_dir)
    out: dict[str, float] = defaultdict(float)
    for proc in run_processes(tag):
        try:
            times = proc.cpu_times()
            parent = proc.ppid()
        except psutil.Error:
            continue
        role = recorded.get(proc.pid)
        if role is None:
            role = "task" if recorded.get(parent) == "clientapp" else _role_by_cmdline(proc)
        if role == "clientapp":  # its reaped task children are its tasks' CPU
            out["clientapp"] += times.user + times.system
            out["task"] += times.children_user + times.children_system
        elif role == "supervisor":  # its reaped children are the run's own processes, counted live
            out[role] += times.user + times.system
        else:
            out[role] += times.user + times.system + times.children_user + times.children_system
    return out


def per_task(marks: list[dict[str, float]], tasks_per_round: int) -> dict:
    """From CPU snapshots at the start of round 2, 3, ... and at the end (the final evaluation's start), the
    mean CPU-ms per task over those rounds, in all and by role (roles under 0.5 ms left out)."""
    if len(marks) < 2 or tasks_per_round <= 0:
        return {}
    first, last = marks[0], marks[-1]
    scale = 1000 / tasks_per_round / (len(marks) - 1)
    roles = {role: (last.get(role, 0.0) - first.get(role, 0.0)) * scale for role in last}
    return {"cpu_ms_per_task": round(sum(roles.values()), 1),
            "cpu_by_role": {k: round(v, 1) for k, v in sorted(roles.items(), key=lambda kv: -kv[1]) if v >= 0.5}}


class RoundCpu:
    """Snapshots of cpu_by_role at each round's start line in server/server.log (and the final evaluation's)."""

    def __init__(self, tag: str, log_dir: Path, run_dir: Path | None = None) -> None:
        self.tag, self.log_dir, self.run_dir = tag, log_dir, run_dir
        self.marks: dict[int | str, dict[str, float]] = {}
        self._earlier = set(log_dir.glob("2*"))  # run folders of earlier runs in the same log dir
        self._follower: LogFollower | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _find_run_dir(self) -> Path | None:
        if self.run_dir is None:
            found = sorted(p for p in self.log_dir.glob("2*") if p.is_dir() and p not in self._earlier)
            self.run_dir = found[-1] if found else None
        return self.run_dir

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            if self._follower is None:
                if (run_dir := self._find_run_dir()) is None:
                    continue
                self._follower = LogFollower(run_dir / "server" / "server.log")
            new = [e.values["round"] if e.kind == "server_round_start" else "final"
                   for e in self._follower.events() if e.kind in ("server_round_start", "final_start")]
            if new:
                snap = cpu_by_role(self.tag, self.run_dir)
                self.marks.update({key: snap for key in new if key not in self.marks})

    def __enter__(self) -> "RoundCpu":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def per_task(self, tasks_per_round: int) -> dict:
        """Rounds 2 on: CPU-ms per task, in all and by role (per_task); {} with fewer than two rounds."""
        rounds = sorted(k for k in self.marks if isinstance(k, int) and k >= 2)
        ends = [self.marks["final"]] if "final" in self.marks else []
        return per_task([self.marks[r] for r in rounds] + ends, tasks_per_round)
