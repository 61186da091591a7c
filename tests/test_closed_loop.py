"""Issue 29's closed loop: a fleet --check --bench measured on devices predicts what the job does on them.

Two namespace devices (tests/devices.py), each held to a CPU share (a cgroup v1 cpu quota on all its sshd
starts) and a link (tc tbf each way, a relay's one-way delay): the job really run on them over SSH is the
oracle, read from its own logs; the same job here with the benched fleet.toml, in process and virtual mode,
must come within 15% on the mean round and 20% on each client's mean task (benchmarks.closed_loop) at the real
run's host speed, and within 25% and 35% as measured.
"""

import time

import pytest

from benchmarks.closed_loop import (
    HOST_FACTOR_RANGE,
    RAW_ROUND_BOUND,
    RAW_TASK_BOUND,
    ROUND_BOUND,
    ROUNDS,
    TASK_BOUND,
    DeviceLimits,
    Figures,
    Loop,
    closed_loop,
)
from tests import devices as lab_devices
from tests.devices import CPU_ROOT

needs_devices = pytest.mark.skipif(lab_devices.available() is not None, reason=str(lab_devices.available()))
needs_cpu_quota = pytest.mark.skipif(not (CPU_ROOT / "cpu.cfs_quota_us").exists(), reason="no cgroup v1 cpu controller")


# The devices are this machine: a task's time on them moves with the host's speed, which drifts on a shared host
# (CI's, 2026-12-07: device 0's mean task 1.27-1.73 s from loop to loop, its runs minutes apart; six loops in a
# row missed on a task that way, both ways). Each prediction's tasks are compared at the real run's host speed
# (benchmarks.host_probe: the CPU time of one fixed LeNet5 step, sampled through the loop), a round with its
# slowest client's task so, and, more loosely, as measured. Another loop when one misses, while one more fits.
ATTEMPTS = 3
TIMEOUT_S = 1500


@needs_devices
@needs_cpu_quota
@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S)
def test_a_fleet_benched_on_devices_predicts_their_rounds_and_tasks_in_both_modes(tmp_path):
    began, longest = time.monotonic(), 0.0
    for attempt in range(1, ATTEMPTS + 1):
        started = time.monotonic()
        loop = closed_loop(tmp_path / f"loop{attempt}", rounds=ROUNDS)
        longest = max(longest, time.monotonic() - started)
        assert not loop.problems, loop.problems
        print(f"attempt {attempt}:", loop.fleet_toml, loop.table(), f"load: {loop.load}", sep="\n")
        if loop.ok or time.monotonic() - began + longest * 1.2 > TIMEOUT_S - 60:
            break
    real = loop.real
    assert {"bench", "devices", "process", "virtual"} <= set(loop.host_ms), loop.host_ms  # each run probed
    assert sorted(real.rounds) == list(range(1, ROUNDS + 1))
    assert all(len(real.tasks[c]) == ROUNDS for c in range(loop.clients))
    for mode in ("process", "virtual"):
        predicted = loop.predicted(mode)
        assert predicted is not None, mode
        assert abs(loop.round_ratio(mode) - 1) <= ROUND_BOUND, (mode, loop.table())
        assert abs(loop.raw_round_ratio(mode) - 1) <= RAW_ROUND_BOUND, (mode, loop.table())
        assert HOST_FACTOR_RANGE[0] <= loop.host_factor(mode) <= HOST_FACTOR_RANGE[1], (mode, loop.host_ms)
        for client, (ratio, raw) in enumerate(zip(loop.task_ratios(mode), loop.raw_task_ratios(mode))):
            assert abs(ratio - 1) <= TASK_BOUND and abs(raw - 1) <= RAW_TASK_BOUND, (mode, client, loop.table())


def _figures(round_s: float, task_s: float) -> Figures:
    return Figures(rounds={r: round_s for r in range(1, 9)}, tasks={0: {r: task_s for r in range(1, 9)}})


def test_the_host_probe_s_factor_is_bounded():
    """The bounds on made-up figures (the oracle: the arithmetic): host drift alone passes (raw 0.73x with the host
    1.3x slower during the real run); a prediction 30% off at an unchanged host fails; a factor that would bring a
    task into TASK_BOUND fails when the host changed more than HOST_FACTOR_RANGE allows, or when the task as
    measured is further off than RAW_TASK_BOUND."""
    def loop(task_s: float, devices_ms: float, mode_ms: float) -> Loop:
        made = Loop((DeviceLimits(cpu=0.3, down="4mbit", up="2mbit", latency=0.04),), slots=1,
                    real=_figures(6.0, 1.0), process=_figures(6.0, task_s), virtual=_figures(6.0, task_s))
        made.host_ms = {"bench": 6.0, "devices": devices_ms, "process": mode_ms, "virtual": mode_ms}
        return made

    assert loop(1.0, 6.0, 6.0).ok
    assert "1.00x at the real run's host speed" in loop(1.0, 6.0, 6.0).table()
    assert loop(0.73, 7.8, 6.0).ok and loop(0.73, 7.8, 6.0).task_ratios("virtual")[0] == pytest.approx(0.949)
    assert not loop(0.73, 6.0, 6.0).ok  # the same 0.73x at an unchanged host
    assert not loop(1.3, 6.0, 6.0).ok  # 30% off at an unchanged host
    assert not loop(1.3, 4.0, 6.0).ok  # the factor (0.67) would bring it to 0.87x: outside HOST_FACTOR_RANGE
    assert not loop(1.45, 4.5, 6.0).ok  # the factor (0.75) brings it to 1.09x: 45% off as measured, RAW_TASK_BOUND
    assert HOST_FACTOR_RANGE == (0.75, 1.33) and RAW_TASK_BOUND == 0.35 and RAW_ROUND_BOUND == 0.25
    # a round: its slowest client's task at the real run's host speed, the rest (links, polls) as it is
    drift = loop(1.2, 6.0, 7.2)  # tasks 1.2x, the host 1.2x slower during the predictions: 1.0x at equal speed
    drift.process = drift.virtual = _figures(6.9, 1.2)
    # by hand: the factor 6.0 / 7.2 takes a sixth off the 1.2 s task, 0.2 s off the 6.9 s round: 6.7 s against 6.0
    assert drift.raw_round_ratio("virtual") == pytest.approx(1.15) and drift.round_ratio("virtual") == pytest.approx(
        6.7 / 6.0) and drift.ok
    drift.process = drift.virtual = _figures(7.6, 1.2)
    assert not drift.ok  # 7.4 s at equal speed: 1.23x, a round too long for what the host explains
