"""The seed's own command, `fl-launch --client-num 50 --task train`, process against virtual mode.

    python -m benchmarks.seed_command                        # 50 clients, 5 rounds: floor, both modes (~7 min)
    python -m benchmarks.seed_command --clients 20 --rounds 4 --modes process
    python -m benchmarks.seed_command --workload W2 --modes floor virtual   # MindSpore's shape (~4 min)

For each mode: wall per round (rounds 2 on: round 1 pays the start), time to round 1, peak summed
PSS (benchmarks.memory), and the CPU-seconds every process of the run (its cgroup) spent per client
task, by role, read from /proc at each round's start line in server/server.log. CPU-seconds hold under
contention where wall time does not: the figure to compare across machines' load. A process's
reaped children count with it (a task child with its client process, under "task"). Writes
benchmarks/results/seed_command.json and its section of docs/performance.md (another workload:
benchmarks/results/seed_command_<workload>.json and the table on stdout).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil

from benchmarks.performance_page import write_section
from benchmarks.variants import floor, launch
from benchmarks.workloads import W, Workload
from launcher.processes.cgroup import RunGroup
from launcher.processes.tagged import tagged_processes

RESULTS = Path(__file__).parent / "results"
_ROUND_START = re.compile(r"iteration:(\d+)/\d+ start")
_CMDLINE_ROLES = (("flwr-serverapp", "serverapp"), ("flower-superexec", "superexec"), ("flwr run", "flwr-run"),
                  ("flwr-simulation", "simulation"), ("ray::", "ray-worker"),
                  ("default_worker.py", "ray-worker"), ("ray", "ray"), ("raylet", "ray"), ("gcs_server", "ray"))


def _role_by_cmdline(proc: psutil.Process) -> str:
    try:
        cmd = " ".join(proc.cmdline())
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
    """The run's processes: its cgroup's members (Ray's daemons rewrite their environment), else those with the tag."""
    group = RunGroup.find(tag)
    if group is None:
        return tagged_processes(tag)
    found = []
    for pid in group.pids():
        try:
            found.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return found


def cpu_by_role(tag: str, run_dir: Path | None) -> dict[str, float]:
    """CPU-seconds so far of every live process carrying the run's tag, by role (run.json's, else by command)."""
    recorded = _recorded_roles(run_dir)
    procs = {p.pid: p for p in run_processes(tag)}
    out: dict[str, float] = defaultdict(float)
    for pid, proc in procs.items():
        try:
            times = proc.cpu_times()
            parent = proc.ppid()
        except psutil.Error:
            continue
        role = recorded.get(pid)
        if role is None:
            role = "task" if recorded.get(parent) == "clientapp" else _role_by_cmdline(proc)
        if role == "clientapp":  # its reaped task children are its tasks' CPU
            out["clientapp"] += times.user + times.system
            out["task"] += times.children_user + times.children_system
        elif role == "supervisor":
            out[role] += times.user + times.system
        else:
            out[role] += times.user + times.system + times.children_user + times.children_system
    return out


class RoundCpu:
    """Snapshots of cpu_by_role at each round's start line (and at the final evaluation's)."""

    def __init__(self, tag: str, log_dir: Path) -> None:
        self.tag, self.log_dir = tag, log_dir
        self.marks: dict = {}
        self._earlier = set(log_dir.glob("2*"))  # run folders of earlier runs in the same log dir
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _run_dir(self) -> Path | None:
        found = sorted(p for p in self.log_dir.glob("2*") if p.is_dir() and p not in self._earlier)
        return found[-1] if found else None

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            run_dir = self._run_dir()
            try:
                text = (run_dir / "server" / "server.log").read_text(errors="replace") if run_dir else ""
            except OSError:
                continue
            new = [int(m.group(1)) for m in _ROUND_START.finditer(text) if int(m.group(1)) not in self.marks]
            if "[final] evaluating" in text and "final" not in self.marks:
                new.append("final")
            if new:
                snap = (time.monotonic(), cpu_by_role(self.tag, run_dir))
                for key in new:
                    self.marks[key] = snap

    def __enter__(self) -> "RoundCpu":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def per_task(self, tasks_per_round: int) -> dict:
        """Rounds 2 on: mean wall per round and CPU-ms per task, by role."""
        keys = sorted(k for k in self.marks if k != "final") + (["final"] if "final" in self.marks else [])
        spans = [(a, b) for a, b in zip(keys, keys[1:]) if a != 1]
        if not spans:
            return {}
        roles: dict[str, float] = defaultdict(float)
        for a, b in spans:
            (_, before), (_, after) = self.marks[a], self.marks[b]
            for role, value in after.items():
                roles[role] += (value - before.get(role, 0.0)) * 1000 / tasks_per_round / len(spans)
        walls = [self.marks[b][0] - self.marks[a][0] for a, b in spans]
        return {"rounds": [a for a, _ in spans], "s_per_round": round(sum(walls) / len(walls), 2),
                "cpu_ms_per_task": round(sum(roles.values()), 1),
                "by_role": {k: round(v, 1) for k, v in sorted(roles.items(), key=lambda kv: -kv[1]) if v >= 0.5}}


def measure(mode: str, workload: Workload, out_dir: Path) -> dict:
    tag = f"bench-seed-{mode}-{os.getpid()}"
    log_dir = out_dir / mode
    args = [*workload.launch_args(str(log_dir), tag), "--mode", mode] if workload.name != "SEED" else [
        "--client-num", str(workload.clients), "--task", "train", "--rounds", str(workload.rounds), "--mode", mode,
        "--log-dir", str(log_dir), "--kill-tag", tag]
    with RoundCpu(tag, log_dir) as cpu:
        run = launch(args, log_dir, tag, timeout=1800, variant=f"fl-launch {mode}")
    return {"mode": mode, "status": run.status, "to_round1_s": run.to_round1_s, "s_per_round_all": run.per_round_s,
            "peak_pss_mib": run.peak_pss_mib, "processes": run.processes, "final_acc": run.final_acc,
            "run_dir": run.run_dir, **cpu.per_task(workload.clients)}


def measure_floor(workload: Workload, out_dir: Path) -> dict:
    """The clients' compute alone (benchmarks.variants.floor: every client's round work on one single-thread
    process per core, over the partitions fl-launch makes), as the workload's floor; CPU per task rounds 2 on."""
    run = floor(workload, out_dir / "floor", f"bench-seed-floor-{os.getpid()}")
    later = run.round_s[1:] or run.round_s
    cpu = run.task_cpu_s[workload.clients:] or run.task_cpu_s
    return {"mode": "floor", "s_per_round": round(sum(later) / len(later), 2), "s_per_round_all": run.per_round_s,
            "peak_pss_mib": run.peak_pss_mib,
            "cpu_ms_per_task": round(1000 * sum(cpu) / max(1, len(cpu)), 1)}


def markdown(rows: list[dict], workload: Workload) -> str:
    what = (f"`fl-launch --client-num {workload.clients} --task train --rounds {workload.rounds}` (digits, "
            f"3 local epochs)" if workload.name == "SEED" else f"{workload.name}: {workload.title}")
    lines = [f"{what}, {os.cpu_count()} cores, {platform.machine()}; CPU per task: every process of the run, "
             "rounds 2 on; "
             "floor: the clients' compute alone.",
             "", "| mode | s/round (2 on) | x floor | to round 1 | CPU-ms per task | by role (ms per task) | peak PSS "
             "| final acc |",
             "|---|---|---|---|---|---|---|---|"]
    base = next((r["s_per_round"] for r in rows if r["mode"] == "floor"), None)
    for r in rows:
        roles = ", ".join(f"{k} {v:.0f}" for k, v in r.get("by_role", {}).items())
        times = f"{r['s_per_round'] / base:.2f}x" if base and r.get("s_per_round") else ""
        to_round1 = f"{r['to_round1_s']} s" if r.get("to_round1_s") is not None else ""
        lines.append(f"| {r['mode']} | {r.get('s_per_round')} | {times} | {to_round1} | "
                     f"{r.get('cpu_ms_per_task', '')} | {roles} | {r['peak_pss_mib'] / 1024:.2f} GiB | "
                     f"{r.get('final_acc', '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="SEED", choices=sorted(W),
                        help="benchmarks.workloads' workload (SEED: the seed's command)")
    parser.add_argument("--clients", type=int, help="the workload's clients (SEED: 50)")
    parser.add_argument("--rounds", type=int, help="the workload's rounds (SEED: 5)")
    parser.add_argument("--local-epochs", type=int, help="the workload's local epochs")
    parser.add_argument("--modes", nargs="+", default=["floor", "process", "virtual"],
                        choices=["floor", "process", "virtual"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    workload = W[args.workload]
    workload = dataclasses.replace(workload, clients=args.clients or workload.clients,
                                   rounds=args.rounds or workload.rounds,
                                   local_epochs=args.local_epochs or workload.local_epochs)
    logs = args.out / "logs" / "seed_command"
    rows = []
    for mode in args.modes:
        load = os.getloadavg()[0]
        rows.append(measure_floor(workload, logs) if mode == "floor" else measure(mode, workload, logs))
        rows[-1]["load_1m"] = [round(load, 1), round(os.getloadavg()[0], 1)]  # at its start and end
    args.out.mkdir(parents=True, exist_ok=True)
    name = "seed_command" if workload.name == "SEED" else f"seed_command_{workload.name}"
    (args.out / f"{name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    text = markdown(rows, workload)
    if workload.name == "SEED":
        write_section("seed_command", text)
    print(text)


if __name__ == "__main__":
    main()
