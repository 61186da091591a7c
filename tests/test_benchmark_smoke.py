"""A tiny run of the benchmark's own pieces: the floor, fl-launch in both modes measured, the report written."""

import json
import shlex

from benchmarks.report import check_targets, merged, report_markdown, write_markdown
from benchmarks.variants import CORES, fl_launch, fl_launch_virtual, floor
from benchmarks.workloads import W, Workload
from launcher.run.options import LaunchOptions

# rounds long enough (~0.5 s) for round_cpu to read the CPU between two round-start lines (it polls every 0.2 s)
TINY = Workload("W0", "tiny", clients=2, rounds=2, local_epochs=2, train_samples=1024)


def cpu_fits_the_machine(m, clients: int) -> bool:
    """A round's CPU-seconds (rounds 2 on, a task's CPU times the tasks) can be no more than the cores give in
    its wall time (0.5 s for the /proc reads' lag behind the log lines)."""
    return 0 < m.cpu_ms_per_task * clients / 1000 <= (m.later_round_s + 0.5) * CORES


def test_floor_and_fl_launch_are_measured_and_reported(tmp_path):
    base = floor(TINY, tmp_path / "floor", "smoke-floor")
    assert base.status == "ok" and len(base.round_s) == 2 and base.per_round_s > 0
    assert base.peak_pss_mib > 100 and base.processes == 3  # this process and its two workers
    assert base.later_round_s == round(base.round_s[1], 2) and cpu_fits_the_machine(base, TINY.clients)
    assert list(base.cpu_by_role) == ["compute"]

    run = fl_launch(TINY, tmp_path / "run", "smoke-run", timeout=600)
    assert run.status == "ok", run.note
    assert len(run.round_s) == 2 and run.per_round_s > 0 and 0 < run.to_round1_s < run.wall_s
    assert 0.0 <= run.final_acc <= 1.0 and run.peak_pss_mib > base.peak_pss_mib / 2
    latency = run.latency
    assert latency and all(v >= 0 for v in latency.values())
    assert 0 < run.later_round_s <= run.wall_s and cpu_fits_the_machine(run, TINY.clients)
    assert {"client", "superlink", "serverapp"} <= set(run.cpu_by_role), run.cpu_by_role  # run.json's roles

    report = {"date": "now", "commit": "abc", "machine": {"cores": 2, "memory_gib": 24, "python": "3", "platform": "x"},
              "speed": {"W0": {"floor": base.as_dict(), "fl-launch": run.as_dict()}},
              "accuracy": {}}
    report["targets"] = check_targets(report)
    write_markdown(report, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert f"| fl-launch | ok | {run.per_round_s:.2f} | {run.per_round_s / base.per_round_s:.2f} |" in text
    assert "| fl-launch | " in text.split("Where a round goes")[1]
    json.dumps(report)  # the JSON report holds plain values only
    assert "| fl-launch | " in text.split("Rounds 2 on")[1]


def test_fl_launch_virtual_is_measured_with_ray_in_its_cpu(tmp_path):
    run = fl_launch_virtual(TINY, tmp_path / "run", "smoke-virtual", timeout=600)
    assert run.status == "ok" and run.variant == "fl-launch-virtual", run.note
    record = json.loads((tmp_path / "run" / "latest" / "run.json").read_text())
    assert record["plan"]["virtual"] and "client" not in {p["role"] for p in record["processes"]}
    assert len(run.round_s) == 2 and 0.0 <= run.final_acc <= 1.0
    assert cpu_fits_the_machine(run, TINY.clients)
    assert "ray" in run.cpu_by_role, run.cpu_by_role  # Ray's workers: the run's cgroup, not its tag, finds them


def test_the_seed_workload_is_the_seed_command_with_its_defaults():
    args = W["SEED"].launch_args("logs", "t")
    assert shlex.join(args) == "--client-num 50 --task train --rounds 5 --log-dir logs --kill-tag t"
    assert W["SEED"].options("logs", "t") == LaunchOptions(client_num=50, rounds=5, log_dir="logs", kill_tag="t")


def test_a_partial_run_replaces_what_it_measured_and_keeps_the_rest_marked():
    def entry(s):
        return {"variant": "v", "status": "ok", "per_round_s": s, "to_round1_s": 1.0, "wall_s": 9.0,
                "peak_pss_mib": 900.0, "processes": 3, "final_acc": None, "note": ""}

    machine = {"cores": 2, "memory_gib": 24, "python": "3", "platform": "x"}
    before = {"date": "2026-11-24T09:02:56", "commit": "old", "machine": machine, "accuracy": {},
              "speed": {"W0": {"floor": entry(0.25)}, "W2": {"floor": entry(18.0), "fl-launch": entry(36.0)}}}
    now = {"date": "2026-12-06T22:00:00", "commit": "new", "machine": machine, "accuracy": {},
           "speed": {"W2": {"floor": entry(20.0), "fl-launch-virtual": entry(22.0)}}}
    report = merged(before, now)
    w2 = report["speed"]["W2"]
    assert [w2[v]["per_round_s"] for v in ("floor", "fl-launch", "fl-launch-virtual")] == [20.0, 36.0, 22.0]
    assert w2["fl-launch"]["measured"] == "2026-11-24, commit old" and "measured" not in w2["floor"]
    assert report["speed"]["W0"]["floor"]["measured"] == "2026-11-24, commit old" and report["commit"] == "new"
    report["targets"] = check_targets(report)
    text = report_markdown(report)
    assert "- fl-launch: measured 2026-11-24, commit old" in text.split("#### W2")[1]


def test_repeated_variants_run_alternated_and_keep_their_median_run(tmp_path, monkeypatch):
    """--repeat 3: floor, fl-launch, floor, fl-launch, floor, fl-launch (each variant run beside the other, not all of
    one then all of the other); each keeps the run with the median time a round from round 2 on, a failed run never
    chosen; the page names every run's time."""
    from benchmarks import report as report_module
    from benchmarks.variants import Measured

    calls = []
    times = {"floor": iter([7.0, 6.0, 8.0]), "fl-launch": iter([9.0, None, 6.5])}

    def fake(name):
        def variant(workload, log_dir, tag, **limits):
            calls.append(name)
            later = next(times[name])
            return Measured(name, status="ok" if later else "failed (exit 1)", later_round_s=later,
                            per_round_s=later, run_dir=f"{name}-{len(calls)}")
        return variant

    monkeypatch.setattr(report_module, "VARIANTS", {"floor": fake("floor"), "fl-launch": fake("fl-launch")})
    results = report_module.run_speed(TINY, ["floor", "fl-launch"], tmp_path, repeat=3)
    assert calls == ["floor", "fl-launch"] * 3
    assert results["floor"]["later_round_s"] == 7.0 and results["floor"]["run_dir"] == "floor-1"
    assert results["fl-launch"]["later_round_s"] == 6.5  # the lower middle of the two that finished
    assert [r["later_round_s"] for r in results["fl-launch"]["repeats"]] == [9.0, None, 6.5]
    report = {"date": "now", "commit": "abc", "machine": {"cores": 2, "memory_gib": 24, "python": "3", "platform": "x"},
              "speed": {"W1": results}, "accuracy": {}}
    report["targets"] = check_targets(report)
    assert next(t for t in report["targets"] if t["target"].startswith("W1 fl-launch per round"))["value"] == 0.929
    text = report_markdown(report)
    assert "- floor: the median of 3 runs alternated with the other variants (s/round from round 2 on, in order: " \
           "7.00, 6.00, 8.00)" in text
