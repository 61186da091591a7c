"""Issue 29's closed loop: a fleet --check --bench measured on devices predicts what the job does on them.

Two namespace devices (tests/devices.py), each held to a CPU share (a cgroup v1 cpu quota on all its sshd
starts) and a link (tc tbf each way, a relay's one-way delay): the job really run on them over SSH is the
oracle, read from its own logs; the same job here with the benched fleet.toml, in process and virtual mode,
must come within 15% on the mean round and 20% on each client's mean task (benchmarks.closed_loop), a task
at the real run's host speed.
"""

import pytest

from benchmarks.closed_loop import ROUND_BOUND, ROUNDS, TASK_BOUND, closed_loop
from tests import devices as lab_devices
from tests.devices import CPU_ROOT

pytestmark = [pytest.mark.skipif(lab_devices.available() is not None, reason=str(lab_devices.available())),
              pytest.mark.skipif(not (CPU_ROOT / "cpu.cfs_quota_us").exists(), reason="no cgroup v1 cpu controller"),
              pytest.mark.slow]


# The devices are this machine: a task's time on them moves with the host's speed, which drifts on a shared host
# (CI's, 2026-12-07: device 0's mean task 1.27-1.73 s from loop to loop, its runs minutes apart; six loops in a
# row missed on a task that way, both ways). Each prediction's tasks are compared at the real run's host speed
# (benchmarks.host_probe: the CPU time of one fixed LeNet5 step, sampled through the loop), rounds as they are.
# Another loop when one still misses; a loop costs ~4-5 min.
ATTEMPTS = 3


@pytest.mark.timeout(ATTEMPTS * 420)
def test_a_fleet_benched_on_devices_predicts_their_rounds_and_tasks_in_both_modes(tmp_path):
    for attempt in range(1, ATTEMPTS + 1):
        loop = closed_loop(tmp_path / f"loop{attempt}", rounds=ROUNDS)
        assert not loop.problems, loop.problems
        print(f"attempt {attempt}:", loop.fleet_toml, loop.table(), f"load: {loop.load}", sep="\n")
        if loop.ok:
            break
    real = loop.real
    assert {"devices", "process", "virtual"} <= set(loop.host_ms), loop.host_ms  # each run probed
    assert sorted(real.rounds) == list(range(1, ROUNDS + 1))
    assert all(len(real.tasks[c]) == ROUNDS for c in range(loop.clients))
    for mode, predicted in (("process", loop.process), ("virtual", loop.virtual)):
        assert predicted is not None, mode
        assert abs(loop.round_ratio(predicted) - 1) <= ROUND_BOUND, (mode, loop.table())
        for client, ratio in enumerate(loop.task_ratios(predicted)):
            assert abs(ratio - 1) <= TASK_BOUND, (mode, client, loop.table())
