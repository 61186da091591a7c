"""GPU clients (issue 30, item 6): W1 and W2 with --device cuda against --device cpu and the CPU floor, and a
clients-per-GPU sweep. Run it once on a machine with a GPU; it measures nothing without one.

    python -m benchmarks.gpu_clients                        # W1, W2; cpu, cuda, --gpus-per-client 1, 0.5, 0.25
    python -m benchmarks.gpu_clients --workloads W1 --rounds 2 --shares 0.5,0.25

writes ``benchmarks/results/gpu_clients.md`` and ``.json``: per workload and variant the wall time per round
(rounds 2 on), time to round 1, peak PSS, and the clients' peak GPU memory (their round lines, fl-stats'
``peak_gpu_mib``), under the GPU's name as torch reports it. ``--rounds`` shortens both workloads (the
round figures are rounds 2 on, so give at least 2). Each variant is one real fl-launch run in process mode
(the floor: the clients' round work on one single-thread CPU process per core, no federation).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import replace
from pathlib import Path

from benchmarks.variants import floor, launch
from benchmarks.workloads import W, Workload
from launcher.processes.gpus import host_gpus
from launcher.stats.tables import GPU_COLUMN, client_tables, read_logs

RESULTS = Path(__file__).parent / "results"


def gpu_peak_mib(run_dir: str) -> float | None:
    """The largest peak GPU memory any client's round reported (its round_end_gpu line)."""
    logs = sorted(Path(run_dir).glob("client_*/client.log"))
    if not logs:
        return None
    rounds, _ = client_tables(read_logs(logs))
    return float(rounds[GPU_COLUMN].max()) if GPU_COLUMN in rounds.columns else None


def measure(workload: Workload, variant: str, extra: list[str], logs: Path) -> dict:
    tag = f"gpu-{workload.name.lower()}-{uuid.uuid4().hex[:6]}"
    print(f"[{workload.name}] {variant} ...", flush=True)
    if variant == "floor":
        measured = floor(workload, logs / workload.name, tag)
    else:
        args = workload.launch_args(str(logs / workload.name), tag) + ["--mode", "process", *extra]
        measured = launch(args, logs / workload.name, tag, variant=variant)
    row = {**measured.as_dict(), "workload": workload.name, "options": " ".join(extra),
           "peak_gpu_mib": gpu_peak_mib(measured.run_dir) if variant != "floor" else None}
    print(f"[{workload.name}] {variant}: {row['status']}, {row['per_round_s']} s/round, "
          f"peak GPU {row['peak_gpu_mib']} MiB", flush=True)
    return row


def variants(shares: list[float]) -> list[tuple[str, list[str]]]:
    return [("floor", []), ("cpu", ["--device", "cpu"]), ("cuda", ["--device", "cuda"]),
            *((f"cuda x{1 / s:g} per GPU", ["--device", "cuda", "--gpus-per-client", f"{s:g}"]) for s in shares)]


def markdown(rows: list[dict], gpus: str) -> str:
    def fmt(value, digits=2):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"GPU: {gpus}", "", "| workload | variant | status | s/round (2 on) | x floor | to round 1 (s) "
             "| peak PSS (GiB) | peak GPU per client (MiB) |", "|---|---|---|---|---|---|---|---|"]
    base = {r["workload"]: r["per_round_s"] for r in rows if r["variant"] == "floor"}
    for r in rows:
        ratio = r["per_round_s"] / base[r["workload"]] if base.get(r["workload"]) and r["per_round_s"] else None
        lines.append(f"| {r['workload']} | {r['variant']} | {r['status']} | {fmt(r['per_round_s'])} | {fmt(ratio)} "
                     f"| {fmt(r['to_round1_s'], 1)} | {fmt(r['peak_pss_mib'] / 1024)} | {fmt(r['peak_gpu_mib'], 1)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="W1,W2")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per run (0: the workload's own)")
    parser.add_argument("--shares", default="1,0.5,0.25", help="--gpus-per-client values of the sweep")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    found = host_gpus()
    if not found.cuda:
        print(f"gpu_clients: torch sees {found.describe()} here: nothing measured", file=sys.stderr)
        sys.exit(2)
    logs = args.out / "logs" / "gpu_clients"
    shares = [float(s) for s in args.shares.split(",") if s]
    rows = []
    for name in args.workloads.split(","):
        workload = W[name] if not args.rounds else replace(W[name], rounds=args.rounds)
        rows += [measure(workload, variant, extra, logs) for variant, extra in variants(shares)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_clients.json").write_text(json.dumps({"gpus": found.describe(), "rows": rows}, indent=1) + "\n")
    text = markdown(rows, found.describe())
    (args.out / "gpu_clients.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
