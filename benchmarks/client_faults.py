"""Page faults and kernel CPU of a run's client processes, per task: how much of a task's memory is made anew.

    python -m benchmarks.client_faults                         # the seed's command: 50 clients, 8 rounds
    python -m benchmarks.client_faults --clients 20 --rounds 6 --out /tmp/faults.json

Runs ``fl-launch --client-num N --task train --rounds R`` (one process per client: a SuperNode that runs its own
tasks) and reads each client process's /proc/<pid>/stat at the start of round 2 and of round R (round 1 pays the
start): minor page faults, user and kernel CPU-ms, per task. A page a task touches that the process gave back to
the kernel before (glibc's trim, an unmapped block) costs a fault and a zeroed page: that is the kernel time here.
Measured 2026-12-07 on the seed's command (2 cores): ~1,900 faults and ~6.8 kernel CPU-ms a task beside 37-44 user
CPU-ms while the heap was given back after every task; ~125 and ~2 since a client keeps it for the next task
(launcher/flower/memory_growth.py::keep_task_heap); docs/performance.md has the rest.
A task is a sampled client's round: the round start lines' ``sampled`` counts, rounds 2 to R-1. A client process
restarted between the marks is left out of the sums (its tasks are not: the figures then read low).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from launcher.stats.follow import LogFollower

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessCounters:
    """What /proc/<pid>/stat says of one process so far."""

    minor_faults: int
    user_s: float
    kernel_s: float


@dataclass(frozen=True)
class PerTask:
    """The client processes' counters between two round starts, divided by the tasks run between them."""

    clients: int
    tasks: int
    faults: float
    user_ms: float
    kernel_ms: float


def counters(pid: int) -> ProcessCounters | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return ProcessCounters(int(fields[7]), int(fields[11]) / TICK, int(fields[12]) / TICK)


def client_pids(run_dir: Path) -> list[int]:
    """The client processes run.json records now (a restarted client: its latest process)."""
    try:
        rows = json.loads((run_dir / "run.json").read_text()).get("processes", [])
    except (OSError, ValueError):
        return []
    return [r["pid"] for r in rows if r.get("role") == "client" and r.get("host", "localhost") == "localhost"
            and r.get("ended") is None]


def snapshot(run_dir: Path) -> dict[int, ProcessCounters]:
    return {pid: c for pid in client_pids(run_dir) if (c := counters(pid)) is not None}


def per_task(first: dict[int, ProcessCounters], last: dict[int, ProcessCounters], tasks: int) -> PerTask:
    """Only the processes alive at both marks count (a client restarted between them would count twice)."""
    both = sorted(set(first) & set(last))
    faults = sum(last[p].minor_faults - first[p].minor_faults for p in both)
    user = sum(last[p].user_s - first[p].user_s for p in both)
    kernel = sum(last[p].kernel_s - first[p].kernel_s for p in both)
    return PerTask(len(both), tasks, round(faults / tasks, 1), round(1000 * user / tasks, 2),
                   round(1000 * kernel / tasks, 2))


def measure(clients: int, rounds: int, log_dir: Path, extra: list[str]) -> PerTask:
    """One run of the seed's command; the counters at round 2's start and round ``rounds``' start."""
    command = ["fl-launch", "--client-num", str(clients), "--task", "train", "--rounds", str(rounds),
               "--log-dir", str(log_dir), *extra]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marks: dict[int, dict[int, ProcessCounters]] = {}
    sampled: dict[int, int] = {}  # clients sampled per round (--clients-per-round), from the round start lines
    follower = None
    while run.poll() is None and len(marks) < 2:
        runs = [p for p in log_dir.glob("2*") if p.is_dir() and not p.is_symlink()]
        if follower is None and runs:
            run_dir = runs[0]
            follower = LogFollower(run_dir / "server" / "server.log")
        for event in follower.events() if follower else []:
            if event.kind == "server_round_start":
                sampled[event.values["round"]] = int(event.values.get("sampled", clients))
                if event.values["round"] in (2, rounds):
                    marks[event.values["round"]] = snapshot(run_dir)
        time.sleep(0.05)
    if run.wait() != 0 or len(marks) < 2:
        raise SystemExit(f"client_faults: the run failed or ended early: {' '.join(command)} (its logs: {log_dir})")
    return per_task(marks[2], marks[rounds], sum(sampled.get(r, clients) for r in range(2, rounds)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=8, help="at least 3: rounds 2 to R-1 are counted")
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    parser.add_argument("launch_options", nargs="*", help="more fl-launch options, after --")
    args = parser.parse_args(argv)
    if args.rounds < 3 or args.clients < 1:
        parser.error("--rounds must be 3 or more and --clients 1 or more")
    logs = Path(tempfile.mkdtemp(prefix="client-faults-"))
    figures = measure(args.clients, args.rounds, logs, args.launch_options)  # a failed run's logs are kept
    shutil.rmtree(logs, ignore_errors=True)
    text = json.dumps(asdict(figures))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
