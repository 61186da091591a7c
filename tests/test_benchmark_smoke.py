"""A tiny run of the benchmark's own pieces: the floor, fl-launch measured, the report written."""

import json

from benchmarks.report import check_targets, write_markdown
from benchmarks.variants import fl_launch, floor
from benchmarks.workloads import Workload

TINY = Workload("W0", "tiny", clients=2, rounds=2, local_epochs=1, train_samples=16)


def test_floor_and_fl_launch_are_measured_and_reported(tmp_path):
    base = floor(TINY, tmp_path / "floor", "smoke-floor")
    assert base.status == "ok" and len(base.round_s) == 2 and base.per_round_s > 0
    assert base.peak_pss_mib > 100 and base.processes == 3  # this process and its two workers

    run = fl_launch(TINY, tmp_path / "run", "smoke-run", timeout=600)
    assert run.status == "ok", run.note
    assert len(run.round_s) == 2 and run.per_round_s > 0 and 0 < run.to_round1_s < run.wall_s
    assert 0.0 <= run.final_acc <= 1.0 and run.peak_pss_mib > base.peak_pss_mib / 2
    latency = run.latency
    assert latency and all(v >= 0 for v in latency.values())

    report = {"date": "now", "commit": "abc", "machine": {"cores": 2, "memory_gib": 24, "python": "3", "platform": "x"},
              "speed": {"W0": {"floor": base.as_dict(), "fl-launch": run.as_dict()}},
              "accuracy": {}}
    report["targets"] = check_targets(report)
    write_markdown(report, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert f"| fl-launch | ok | {run.per_round_s:.2f} | {run.per_round_s / base.per_round_s:.2f} |" in text
    assert "| fl-launch | " in text.split("Where a round goes")[1]
    json.dumps(report)  # the JSON report holds plain values only
