"""Time one fl-launch run and sample the total memory of its processes.

    python -m benchmarks.measure_run --kill-tag bench1 -- --client-num 10 --rounds 5

Wall time is the command's; memory is the peak, over 0.5 s samples, of the sum of
PSS (proportional set size: shared pages split between their users) over every
process carrying the run's kill tag. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

from launcher.tagged import tagged_processes


def total_pss_mib(tag: str) -> tuple[float, int]:
    total, count = 0, 0
    for proc in tagged_processes(tag):
        try:
            total += proc.memory_full_info().pss
            count += 1
        except psutil.Error:
            continue
    return total / 2**20, count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill-tag", required=True)
    parser.add_argument("--log-dir", default="logs/bench")
    parser.add_argument("launch_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    extra = [a for a in args.launch_args if a != "--"]
    cmd = [str(Path(sys.executable).parent / "fl-launch"), *extra, "--kill-tag", args.kill_tag,
           "--log-dir", args.log_dir]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, peak_procs = 0.0, 0
    while proc.poll() is None:
        pss, count = total_pss_mib(args.kill_tag)
        if pss > peak:
            peak, peak_procs = pss, count
        time.sleep(0.5)
    wall = time.monotonic() - start
    out = proc.stdout.read()
    run_json = json.loads((Path(args.log_dir) / "latest" / "run.json").read_text())
    print(json.dumps({
        "command": " ".join(extra), "exit_code": proc.returncode, "wall_seconds": round(wall, 1),
        "peak_total_pss_mib": round(peak, 1), "processes_at_peak": peak_procs,
        "final_accuracy": run_json.get("final_accuracy"), "rounds_done": run_json.get("rounds_done"),
        "status": run_json.get("status"),
    }))
    if proc.returncode != 0:
        print(out, file=sys.stderr)


if __name__ == "__main__":
    main()
