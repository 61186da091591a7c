"""Run the benchmark workloads side by side and write report.json and docs/performance.md's report.

    pip install -c constraints.txt -e ".[bench]"                  # for the simulation column
    python -m benchmarks.report                                   # everything, ~30 min on 2 cores
    python -m benchmarks.report --workloads W0,W1 --variants floor,fl-launch
    python -m benchmarks.report --workloads W1 --variants floor,fl-launch --repeat 3   # alternated, medians
    python -m benchmarks.report --workloads SEED --clients 5 --rounds 2 --out /tmp/quick   # a quick look

Each workload runs as: floor (the clients' compute alone, one single-thread process
per core), fl-launch, fl-launch --mode virtual, plain Flower started by hand, and Flower's
simulation runtime; W3 runs fl-launch beside its two references (central training,
in-process FedAvg). SEED is the seed's own command, `fl-launch --client-num 50 --task train`.
Runs go to ``<out>/logs`` and are kept for fl-stats; nothing else is left running.
docs/performance.md's report is written from ``benchmarks/results/report.json`` only.
A run of some workloads or variants replaces those in ``<out>/report.json`` and keeps the
others, each marked with when it was measured. ``--clients``/``--rounds`` resize every chosen
workload for a quick look: its figures go to ``<out>/quick.json`` and stdout, not the report or the page.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import subprocess
import uuid
from pathlib import Path

import psutil

from benchmarks import references
from benchmarks.performance_page import PAGE, write_section
from benchmarks.variants import Measured, fl_launch, fl_launch_virtual, floor, plain_flower, simulation
from benchmarks.workloads import W, Workload

VARIANTS = {"floor": floor, "fl-launch": fl_launch, "fl-launch-virtual": fl_launch_virtual,
            "plain-flower": plain_flower, "flower-simulation": simulation}
RESULTS = Path(__file__).resolve().parent / "results"
VARIANT_TIMEOUT = 1800.0  # seconds; a variant still running then is stopped and reported as such
SPEED = ("W0", "W1", "W2", "SEED")
NO_PLAIN_FLOWER = ("SEED",)  # 50 flower-supernodes started by hand reached the memory limit on W2
ACCURACY = ("W3-iid", "W3-dirichlet")


def run_speed(workload: Workload, variants: list[str], log_dir: Path, repeat: int = 1) -> dict[str, dict]:
    """Each variant's figures; with ``repeat`` > 1 the variants run that many times alternated (floor, fl-launch,
    floor, fl-launch, ...: a host that slows for a minute slows both) and each keeps its median run by rounds 2 on,
    with every run's figures under "repeats"."""
    runs: dict[str, list[Measured]] = {}
    for attempt in range(1, repeat + 1):
        for name in [v for v in variants if v != "plain-flower" or workload.name not in NO_PLAIN_FLOWER]:
            tag = f"bench-{workload.name.lower()}-{name}-{uuid.uuid4().hex[:6]}"
            label = f"{name} ({attempt}/{repeat})" if repeat > 1 else name
            print(f"[{workload.name}] {label} ...", flush=True)
            limits = {} if name == "floor" else {"timeout": VARIANT_TIMEOUT}
            m = VARIANTS[name](workload, log_dir / workload.name, tag, **limits)
            runs.setdefault(name, []).append(m)
            print(f"[{workload.name}] {label}: {m.status}, {m.per_round_s} s/round ({m.later_round_s} from round 2), "
                  f"wall {m.wall_s} s, peak {m.peak_pss_mib / 1024:.2f} GiB", flush=True)
    return {name: median_run(measured) for name, measured in runs.items()}


def median_run(measured: list[Measured]) -> dict:
    """The run whose time a round from round 2 on (else a round) is the median of the runs that finished (the lower
    middle one of an even count), with every run's main figures beside it; a single run as it is."""
    if len(measured) == 1:
        return measured[0].as_dict()
    ok = [m for m in measured if m.status == "ok" and (m.later_round_s or m.per_round_s)]
    pool = sorted(ok, key=lambda m: m.later_round_s or m.per_round_s) or measured
    chosen = pool[(len(pool) - 1) // 2]
    return dict(chosen.as_dict(), repeats=[
        {"status": m.status, "later_round_s": m.later_round_s, "per_round_s": m.per_round_s,
         "cpu_ms_per_task": m.cpu_ms_per_task, "to_round1_s": m.to_round1_s, "run_dir": m.run_dir}
        for m in measured])


def run_accuracy(workload: Workload, log_dir: Path, central_epochs: int) -> dict:
    tag = f"bench-{workload.name.lower()}-{uuid.uuid4().hex[:6]}"
    print(f"[{workload.name}] fl-launch ...", flush=True)
    run = fl_launch(workload, log_dir / workload.name, tag)
    settings, parts = references.load_run(run.run_dir)
    print(f"[{workload.name}] references ...", flush=True)
    central = references.central(settings, parts, central_epochs)
    fedavg = references.fedavg(settings, parts)
    return {"run": run.as_dict(), "central": central[-1], "central_epochs": central_epochs,
            "fedavg_in_process": fedavg[-1], "fedavg_in_process_per_round": fedavg}


def _fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def speed_table(workload: Workload, results: dict) -> str:
    base = results.get("floor", {}).get("per_round_s")
    lines = [f"#### {workload.name}: {workload.title}", "",
             "| variant | status | s/round | x floor | to round 1 (s) | wall (s) | peak PSS (GiB) | processes "
             "| final acc |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, m in results.items():
        ratio = m["per_round_s"] / base if base and m["per_round_s"] else None
        lines.append(f"| {name} | {m['status']} | {_fmt(m['per_round_s'])} | {_fmt(ratio)} | "
                     f"{_fmt(m['to_round1_s'], 1)} | {_fmt(m['wall_s'], 1)} | {_fmt(m['peak_pss_mib'] / 1024)} | "
                     f"{m['processes']} | {_fmt(m['final_acc'], 3)} |")
    timed = {name: m["latency"] for name, m in results.items() if m.get("latency")}
    if timed:
        lines += ["", "Where a round goes (means over rounds and clients, from the log lines): delivery = the "
                  "ServerApp's round start to a client's round start (with more clients than cores this includes "
                  "the wait for a compute slot in fl-launch, for a Ray actor in the simulation); task = a client's "
                  "round start to its end; return = the last client's end to the ServerApp's round end.", "",
                  "| variant | delivery (s) | slowest delivery (s) | task (s) | return (s) |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {t['delivery_s']:.2f} | {t['delivery_max_s']:.2f} | {t['task_s']:.2f} | "
                  f"{t['return_s']:.2f} |" for name, t in timed.items()]
    lines += cpu_table(results)
    if any(m["note"] for m in results.values()):
        lines += [""] + [f"- {name}: {m['note']}" for name, m in results.items() if m["note"]]
    lines += repeated(results)
    lines += measured_earlier(results)
    return "\n".join(lines) + "\n"


def cpu_table(results: dict) -> list[str]:
    """Rounds 2 on: wall per round and CPU per task, by role; [] where no variant has them (older reports)."""
    rows = {name: m for name, m in results.items() if m.get("cpu_ms_per_task") is not None}
    if not rows:
        return []
    lines = ["", "Rounds 2 on (round 1 pays the start): wall per round, and the CPU-seconds every process of the "
             "variant spent per client task, read from /proc at the ServerApp's round start lines (fl-launch: its "
             "cgroup; by hand: the tagged processes and their children; floor: its workers).", "",
             "| variant | s/round (2 on) | CPU-ms per task | by role (ms per task) |", "|---|---|---|---|"]
    lines += [f"| {name} | {_fmt(m.get('later_round_s'))} | {m['cpu_ms_per_task']:.1f} | "
              f"{', '.join(f'{k} {v:.0f}' for k, v in m.get('cpu_by_role', {}).items())} |"
              for name, m in rows.items()]
    return lines


def repeated(results: dict) -> list[str]:
    """A line for each variant run more than once (``--repeat``): which run its rows show, and every run's times."""
    lines = []
    for name, m in results.items():
        if len(m.get("repeats") or []) > 1:
            times = ", ".join(_fmt(r["later_round_s"] or r["per_round_s"]) for r in m["repeats"])
            lines.append(f"- {name}: the median of {len(m['repeats'])} runs alternated with the other variants "
                         f"(s/round from round 2 on, in order: {times})")
    return ["", *lines] if lines else []


def measured_earlier(entries: dict) -> list[str]:
    """A line for each entry a later partial run kept (report.json's "measured": when and at which commit)."""
    kept = [f"- {name}: measured {m['measured']}" for name, m in entries.items() if m.get("measured")]
    return ["", *kept] if kept else []


def accuracy_table(results: dict) -> str:
    lines = ["| workload | fl-launch | in-process FedAvg | central | run - FedAvg (points) | central - run (points) |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        acc = r["run"]["final_acc"]
        if acc is None:
            lines.append(f"| {name} | {r['run']['status']} | {r['fedavg_in_process']:.4f} | {r['central']:.4f} "
                         f"| - | - |")
            continue
        lines.append(f"| {name} | {acc:.4f} | {r['fedavg_in_process']:.4f} | {r['central']:.4f} | "
                     f"{100 * (acc - r['fedavg_in_process']):+.2f} | {100 * (r['central'] - acc):+.2f} |")
    return "\n".join(lines) + "\n"


def check_targets(report: dict) -> list[dict]:
    """Each target: the measured value, the goal, met or missed and by how much."""
    speed, acc = report["speed"], report["accuracy"]
    found = []

    def add(name, value, goal, lower_is_better=True, unit="", missing="not measured"):
        if value is None:
            found.append({"target": name, "value": None, "goal": goal, "met": None, "by": missing})
            return
        met = value <= goal if lower_is_better else value >= goal
        found.append({"target": name, "value": round(value, 3), "goal": goal, "met": met,
                      "by": f"{abs(value - goal):.2f}{unit} {'under' if value <= goal else 'over'}"})

    def ratio(w, a, b, key="per_round_s"):
        x, y = speed.get(w, {}).get(a, {}), speed.get(w, {}).get(b, {})
        both_ok = x.get("status") == "ok" and y.get("status") == "ok"
        return x[key] / y[key] if x.get(key) and y.get(key) and both_ok else None

    # rounds 2 on: a virtual run's round 1 holds Ray's start (the floor's pool starts before its first round)
    add("W1 fl-launch per round / floor (rounds 2 on)", ratio("W1", "fl-launch", "floor", "later_round_s"), 1.10,
        unit="x")  # issue 25
    add("W2 fl-launch per round / floor (rounds 2 on)", ratio("W2", "fl-launch", "floor", "later_round_s"), 1.25,
        unit="x")  # issue 25
    add("W2 fl-launch-virtual per round / floor (rounds 2 on)",
        ratio("W2", "fl-launch-virtual", "floor", "later_round_s"), 1.05, unit="x")  # issue 26
    for w in [w for w in SPEED if w not in NO_PLAIN_FLOWER]:
        plain = speed.get(w, {}).get("plain-flower", {})
        add(f"{w} fl-launch wall / plain Flower wall", ratio(w, "fl-launch", "plain-flower", "wall_s"), 0.3, unit="x",
            missing=f"plain Flower: {plain['status']}" if plain.get("status", "ok") != "ok" else "not measured")
    w2 = speed.get("W2", {}).get("fl-launch")
    add("W2 fl-launch total PSS (GiB)", w2["peak_pss_mib"] / 1024 if w2 else None, 10.0, unit=" GiB")
    add("W2 fl-launch round 1 start (s)", w2["to_round1_s"] if w2 else None, 45.0, unit=" s")
    seed = speed.get("SEED", {}).get("fl-launch")
    seed = seed if seed and seed["status"] == "ok" else None
    add("SEED fl-launch per round / fl-launch-virtual's (rounds 2 on)",
        ratio("SEED", "fl-launch", "fl-launch-virtual", "later_round_s"), 1.5, unit="x")
    add("SEED fl-launch CPU-s per task (rounds 2 on)",
        seed["cpu_ms_per_task"] / 1000 if seed and seed.get("cpu_ms_per_task") else None, 0.10, unit=" CPU-s")
    add("SEED fl-launch total PSS (GiB)", seed["peak_pss_mib"] / 1024 if seed else None, 3.0, unit=" GiB")
    add("SEED fl-launch to round 1 (s)", seed["to_round1_s"] if seed else None, 8.0, unit=" s")
    for name, r in acc.items():
        run_acc = r["run"]["final_acc"]
        add(f"{name} |run - in-process FedAvg| (points)",
            abs(run_acc - r["fedavg_in_process"]) * 100 if run_acc is not None else None, 0.5, unit=" points")
        add(f"{name} central - run (points)", (r["central"] - run_acc) * 100 if run_acc is not None else None,
            1.0 if "iid" in name else 3.0, unit=" points")
    return found


def stock_latency(report: dict) -> str:
    """What stock Flower 1.41 puts into every round, from W0 (the clients' compute is ~0 there)."""
    w0 = report["speed"].get("W0", {})
    plain, ours = w0.get("plain-flower"), w0.get("fl-launch")
    if not plain or not ours or not plain.get("latency") or not ours.get("latency"):
        return ""
    p, o = plain["latency"], ours["latency"]
    return (
        "#### What stock Flower 1.41 puts into every round\n\n"
        f"W0 moves the model and computes almost nothing, so its round time is the runtime's own latency. "
        f"By hand (flower-superlink, flower-supernode in subprocess isolation): {plain['per_round_s']:.2f} s per "
        f"round; a message takes {p['delivery_s']:.2f} s on average from the ServerApp to the client's code "
        f"(the SuperNode pulls every 3 s when idle, and every message starts a fresh `flwr-clientapp` process "
        f"that imports torch), the task {p['task_s']:.2f} s (a fresh process's first torch steps, with ten "
        f"such processes starting at once), the way back {p['return_s']:.2f} s. fl-launch: {ours['per_round_s']:.2f} s "
        f"per round, delivery {o['delivery_s']:.2f} s, task {o['task_s']:.2f} s, return {o['return_s']:.2f} s. "
        "Both columns run this repository's ServerApp, which polls for replies every 0.1 s; Flower's own grid "
        "polls every 3 s (on average another 1.5 s per round and per message wave, not in the by-hand figure).\n"
    )


def report_markdown(report: dict) -> str:
    """The report as docs/performance.md's section "report" holds it (its headings under the page's own)."""
    m = report["machine"]
    parts = [f"{report['date']}, commit {report['commit']}, "
             f"{m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, {m['platform']}.\n",
             "Per round: from the ServerApp's round 1 start line to its last round's end line, over the rounds "
             "(floor: the mean time of one round of every client's work on the pool). To round 1: from the "
             "command to the ServerApp's round 1 start line. Peak PSS: the highest 0.5 s sample of the summed "
             "PSS of every process of the variant.\n",
             "### Speed and memory\n"]
    for name in SPEED:
        if name in report["speed"]:
            parts.append(speed_table(W[name], report["speed"][name]))
    parts.append(stock_latency(report))
    if report["accuracy"]:
        parts += ["### Accuracy (W3)\n", accuracy_table(report["accuracy"])]
        if kept := measured_earlier(report["accuracy"]):
            parts.append("\n".join(kept[1:]) + "\n")
    parts += ["### Targets\n", "| target | value | goal | met | by |", "|---|---|---|---|---|"]
    parts += [f"| {t['target']} | {t['value']} | {t['goal']} | "
              f"{'-' if t['met'] is None else ('yes' if t['met'] else 'NO')} | {t['by']} |" for t in report["targets"]]
    return "\n".join(parts) + "\n"


def write_markdown(report: dict, path: Path) -> None:
    path.write_text(report_markdown(report))


def rewrite(out: Path) -> None:
    report = json.loads((out / "report.json").read_text())
    report["targets"] = check_targets(report)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    write_page(report, out)


def write_page(report: dict, out: Path) -> None:
    """The page's report section, from the committed report only (benchmarks/results)."""
    if out != RESULTS:
        print(f"wrote {out / 'report.json'} ({PAGE} shows {RESULTS / 'report.json'}: left as it was)")
        return
    write_section("report", report_markdown(report))
    print(f"wrote {out / 'report.json'} and {PAGE}'s report")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def merged(previous: dict | None, report: dict) -> dict:
    """The new report with what the previous one measured and this run did not (a workload's other variants,
    the other workloads), each of those marked with when it was measured."""
    if not previous:
        return report
    when = f"{previous.get('date', '?')[:10]}, commit {previous.get('commit', '?')}"
    out = dict(report, speed={}, accuracy={})
    for name in [*previous.get("speed", {}), *(w for w in report["speed"] if w not in previous.get("speed", {}))]:
        kept = {v: {"measured": when, **m} for v, m in previous.get("speed", {}).get(name, {}).items()}
        out["speed"][name] = {**kept, **report["speed"].get(name, {})}
    kept = {w: {"measured": when, **r} for w, r in previous.get("accuracy", {}).items()}
    out["accuracy"] = {**kept, **report["accuracy"]}
    return out


def resized(workload: Workload, clients: int | None, rounds: int | None) -> Workload:
    """The workload with fewer clients or rounds, for a quick look (W3's accuracy would not compare)."""
    return dataclasses.replace(workload, clients=clients or workload.clients, rounds=rounds or workload.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="where report.json and the runs go (the page is written from benchmarks/results only)")
    parser.add_argument("--workloads", default=",".join((*SPEED, "W3")))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--central-epochs", type=int, default=20)
    parser.add_argument("--clients", type=int, help="a quick look: every chosen workload with this many clients "
                        "(written to <out>/quick.json, not to the report or the page)")
    parser.add_argument("--rounds", type=int, help="a quick look: every chosen workload with this many rounds")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each workload's variants this many times, alternated, and keep each one's median "
                        "run (the host's speed moves by 10-20%% from minute to minute here)")
    parser.add_argument("--rewrite", action="store_true",
                        help="only redo the targets and the page from report.json")
    args = parser.parse_args()
    if args.rewrite:
        rewrite(args.out.resolve())
        return
    out = args.out.resolve()
    chosen = args.workloads.split(",")
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS] + [w for w in chosen if w not in (*SPEED, "W3")]
    if unknown:
        parser.exit(2, f"unknown workload or variant: {', '.join(unknown)}\n")
    if any(n is not None and n < 1 for n in (args.clients, args.rounds, args.repeat)):
        parser.exit(2, "--clients, --rounds and --repeat take a whole number of at least 1\n")
    quick = args.clients is not None or args.rounds is not None
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "date": dt.datetime.now().isoformat(timespec="seconds"), "commit": _commit(),
        "machine": {"cores": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version(), "platform": platform.platform()},
        "speed": {}, "accuracy": {},
    }
    for name in SPEED:
        if name in chosen:
            report["speed"][name] = run_speed(resized(W[name], args.clients, args.rounds), variants, out / "logs",
                                              args.repeat)
    if "W3" in chosen:
        for name in ACCURACY:
            workload = resized(W[name], args.clients, args.rounds)
            report["accuracy"][name] = run_accuracy(workload, out / "logs", args.central_epochs)
    if quick:
        report["targets"] = check_targets(report)
        (out / "quick.json").write_text(json.dumps(report, indent=2) + "\n")
        print(report_markdown(report))
        print(f"wrote {out / 'quick.json'} (a quick look: the report and the page are left as they were)")
        return
    previous = out / "report.json"
    if previous.is_file():
        report = merged(json.loads(previous.read_text()), report)
    report["targets"] = check_targets(report)
    previous.write_text(json.dumps(report, indent=2) + "\n")
    write_page(report, out)


if __name__ == "__main__":
    main()
