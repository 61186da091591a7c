"""Time and memory of FEMNIST runs as the client count grows and the round size stays put.

    python -m benchmarks.femnist_scale                          # N = 50, 500, 3500, 10000; 50 per round
    python -m benchmarks.femnist_scale --clients 50 500 --rounds 2 --local-epochs 1

Writes a LEAF JSON data set of as many writers as the largest N (synthetic
images, 20 to 60 per writer), then runs ``fl-launch --dataset femnist
--clients-per-round K`` for each N and mode, and writes its table into docs/performance.md (its
femnist_scale section) and the raw figures to benchmarks/results/femnist_scale.json. Memory is the
peak of the summed PSS of every process of the run (benchmarks.memory).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import time
from pathlib import Path

from benchmarks.femnist_files import write_leaf
from benchmarks.performance_page import write_section
from benchmarks.variants import Measured, launch
from contract.run_settings import RunSettings
from launcher.processes.tagged import tagged_processes
from launcher.stats.follow import LogFollower
from simulator.femnist import open_femnist

RESULTS = Path(__file__).parent / "results"


def ensure_data(root: Path, writers: int, per_writer: tuple[int, int]) -> float:
    """The LEAF data set in ``root`` (written once, kept for later runs); seconds it took to write."""
    stamp = root.with_name(root.name + ".written.json")
    wanted = {"writers": writers, "per_writer": list(per_writer)}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return 0.0
    t0 = time.monotonic()
    write_leaf(root, writers=writers, per_writer=per_writer, users_per_file=100)
    stamp.write_text(json.dumps(wanted))
    return time.monotonic() - t0


def convert_once(root: Path, clients: int, work: Path) -> float:
    """LEAF's JSON converted for ``clients`` clients into the conversion cache, as a run of the default seed
    would (simulator.convert_cache); seconds it took (about 0 when already there). Every run then measures
    its start on a data set converted before, as the cache gives it from the second run on."""
    scratch = work / "convert-once"
    t0 = time.monotonic()
    try:
        open_femnist(root).write_clients(clients, scratch, seed=RunSettings().seed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return time.monotonic() - t0


def final_eval_seconds(run_dir: Path) -> float | None:
    """From the last round's end line to the final accuracy line: every client evaluating the model."""
    events = LogFollower(run_dir / "server" / "server.log").events()
    ends = [e.time for e in events if e.kind == "server_round_end"]
    final = [e.time for e in events if e.kind == "server_final"]
    return round((final[0] - max(ends)).total_seconds(), 1) if ends and final else None


def run_one(n: int, mode: str, args: argparse.Namespace, data: Path, logs: Path) -> dict:
    tag = f"bench-femnist-{n}-{mode}"
    argv = ["--client-num", str(n), "--clients-per-round", str(args.per_round), "--rounds", str(args.rounds),
            "--local-epochs", str(args.local_epochs), "--batch-size", "32", "--dataset", "femnist",
            "--data-dir", str(data), "--mode", mode, "--log-dir", str(logs / tag), "--kill-tag", tag]
    load_before = os.getloadavg()[0]
    measured: Measured = launch(argv, logs / tag, tag, timeout=args.timeout)
    left = tagged_processes(tag)
    row = measured.as_dict()
    row.update(clients=n, mode=mode, final_eval_s=final_eval_seconds(Path(measured.run_dir)),
               logs_written=len(list(Path(measured.run_dir).glob("client_*/client.log"))),
               left_running=len(left), load=f"{load_before:.1f} / {os.getloadavg()[0]:.1f}")
    return row


def markdown(rows: list[dict], args: argparse.Namespace, data_s: float) -> str:
    head = (f"Last run: {dt.datetime.now().isoformat(timespec='seconds')}, "
            f"{platform.python_version()}, {args.per_round} clients per round, {args.rounds} rounds of "
            f"{args.local_epochs} local epochs (batch 32), synthetic LEAF data of {max(args.clients)} writers x "
            f"{args.per_writer[0]}-{args.per_writer[1]} images"
            + (f" (written in {data_s:.0f} s)" if data_s else "") + ".\n\n"
            "s/round: first round start to last round end over the rounds. To round 1: the command to round 1's "
            "start (start-up, on a data set converted before: the conversion cache is filled first). Final eval: "
            "every client evaluating the final model, at most K awaiting a reply at once. Peak PSS: summed over "
            "the run's processes. Load: this machine's 1-minute load average before and after the run "
            "(2 cores; other work on the machine slows every figure).\n\n")
    lines = ["| clients | mode | status | s/round | to round 1 (s) | final eval (s) | wall (s) | peak PSS (GiB) "
             "| processes | final acc | logs | load |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fmt = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
        lines.append(f"| {r['clients']} | {r['mode']} | {r['status']} | {fmt(r['per_round_s'])} | "
                     f"{fmt(r['to_round1_s'], 1)} | {fmt(r['final_eval_s'], 1)} | {r['wall_s']:.0f} | "
                     f"{r['peak_pss_mib'] / 1024:.2f} | {r['processes']} | {fmt(r['final_acc'], 3)} | "
                     f"{r.get('logs_written', '-')} | {r.get('load', '-')} |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 500, 3500, 10000])
    parser.add_argument("--process-up-to", type=int, default=50,
                        help="also run one process per client for N up to this (the auto mode's other side)")
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=20)
    parser.add_argument("--per-writer", type=int, nargs=2, default=[20, 60])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fl-bench-femnist"))
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out", type=Path, default=RESULTS / "femnist_scale")
    args = parser.parse_args()
    data = args.work / "leaf"
    data_s = ensure_data(data, max(args.clients), tuple(args.per_writer))
    converted = convert_once(data, max(args.clients), args.work)
    print(f"LEAF JSON converted for {max(args.clients)} clients in {converted:.0f} s (0 when cached)", flush=True)
    rows = []
    for n in sorted(args.clients):
        for mode in (["process"] if n <= args.process_up_to else []) + ["virtual"]:
            rows.append(run_one(n, mode, args, data, args.work / "logs"))
            r = rows[-1]
            print(f"N={n} {mode}: {r['status']}, {r['per_round_s']} s/round, {r['peak_pss_mib'] / 1024:.2f} GiB, "
                  f"to round 1 {r['to_round1_s']} s, final eval {r['final_eval_s']} s {r['note']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=str))
    write_section("femnist_scale", markdown(rows, args, data_s))
    print(markdown(rows, args, data_s))


if __name__ == "__main__":
    main()
