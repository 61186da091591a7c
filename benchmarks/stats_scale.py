"""How fast fl-stats summarises a large run: writes N client logs of R rounds, then times fl-stats.

    python -m benchmarks.stats_scale --clients 3500 --rounds 100 --epochs 1

The logs are written through contract.loglines in fl-launch's own format (a
round start, an evaluate line, the epoch lines, a round end, per round). Prints
JSON: the time to write, and the wall time of `fl-stats DIR --csv` (a fresh
process, imports included) and of `fl-stats DIR` (the table).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contract.loglines import format_message


def write_logs(root: Path, clients: int, rounds: int, epochs: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    total = 0
    for c in range(clients):
        lines = []
        for r in range(1, rounds + 1):
            stamp = f"2026-11-24 05:{r % 60:02d}:{c % 60:02d}.000 INFO: <FLClient> "
            lines.append(stamp + format_message("round_start", round=r, rounds=rounds))
            lines.append(stamp + format_message("evaluate", acc=rng.random()))
            lines += [stamp + format_message("epoch", epoch=e, loss=rng.random() * 3) for e in range(epochs)]
            lines.append(stamp + format_message("round_end", round=r, seconds=1.234, peak_mib=321.5,
                                                recv_bytes=249752, sent_bytes=249752, num_train=180, num_test=20))
        folder = root / f"client_{c}"
        folder.mkdir(parents=True)
        (folder / "client.log").write_text("\n".join(lines) + "\n")
        total += len(lines)
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=3500)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fl-stats-scale-"))
    try:
        t0 = time.perf_counter()
        lines = write_logs(root, args.clients, args.rounds, args.epochs)
        written = time.perf_counter() - t0
        fl_stats = str(Path(sys.executable).parent / "fl-stats")
        timings = {}
        for label, extra in (("csv", ["--csv", "-o", str(root / "out.csv")]), ("table", [])):
            t0 = time.perf_counter()
            done = subprocess.run([fl_stats, str(root), *extra], capture_output=True, text=True)
            timings[label] = round(time.perf_counter() - t0, 2)
            assert done.returncode == 0, done.stderr
        rows = (root / "out.csv").read_text().count("\n") - 1
        print(json.dumps({"clients": args.clients, "rounds": args.rounds, "epochs": args.epochs,
                          "lines": lines,
                          "megabytes": round(sum(p.stat().st_size for p in root.rglob("client.log")) / 2**20, 1),
                          "write_seconds": round(written, 2), "fl_stats_csv_seconds": timings["csv"],
                          "fl_stats_table_seconds": timings["table"], "rounds_in_csv": rows}))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
