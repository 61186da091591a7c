"""The flat model on the wire and the bells between a run's processes."""

import threading
import time

import pytest
import torch
from flwr.app import ArrayRecord

from contract.wakeups import WakeupSocket, wake, wake_all
from simulator.model import LeNet5
from simulator.wire import pack, unpack


def test_a_state_dict_travels_as_one_array_and_comes_back_equal():
    model = LeNet5(3, 62)
    model(torch.randn(4, 3, 32, 32))  # BatchNorm buffers move off their initial values
    state = model.state_dict()
    record = pack(state)
    assert isinstance(record, ArrayRecord) and len(record) == 1
    back = unpack(record, LeNet5(3, 62).state_dict())
    assert list(back) == list(state)
    for name in state:
        assert back[name].dtype == state[name].dtype and torch.equal(back[name], state[name]), name


def test_averaging_the_flat_array_is_averaging_each_tensor():
    a, b = LeNet5(1, 10).state_dict(), LeNet5(1, 10).state_dict()
    flat = 0.25 * pack(a)["model"].numpy() + 0.75 * pack(b)["model"].numpy()
    from flwr.app import Array

    averaged = unpack(ArrayRecord({"model": Array(flat)}), a)
    for name in a:
        if a[name].is_floating_point():
            assert torch.allclose(averaged[name], 0.25 * a[name] + 0.75 * b[name], atol=1e-6), name


def test_a_model_of_another_size_is_refused():
    with pytest.raises(ValueError, match="values"):
        unpack(pack(LeNet5(1, 10).state_dict()), LeNet5(3, 62).state_dict())


def test_a_bell_wakes_its_sleeper_early_and_only_its_own(tmp_path):
    (tmp_path / "client_0").mkdir()
    (tmp_path / "client_1").mkdir()
    bell, other = WakeupSocket(tmp_path / "client_0", "supernode"), WakeupSocket(tmp_path / "client_1", "worker")
    assert bell.bound and other.bound
    threading.Timer(0.2, wake_all, args=(tmp_path, "supernode")).start()
    start = time.monotonic()
    assert bell.wait(5.0) is True
    assert 0.1 < time.monotonic() - start < 2.0
    assert other.wait(0.3) is False  # another role's bell did not ring
    start = time.monotonic()
    assert bell.wait(0.3) is False  # nothing pending: the full timeout
    assert time.monotonic() - start >= 0.29


def test_a_ring_nobody_hears_is_dropped_and_a_taken_bell_falls_back_to_sleeping(tmp_path):
    wake(tmp_path / "nobody", "worker")  # no error
    first = WakeupSocket(tmp_path, "worker")
    second = WakeupSocket(tmp_path, "worker")  # the name is held: plain timed sleeps
    assert first.bound and not second.bound
    start = time.monotonic()
    assert second.wait(0.2) is False and time.monotonic() - start >= 0.19


def test_a_supernode_whose_serverapp_rings_pulls_every_30_s_when_idle(tmp_path, monkeypatch):
    """quick_supernode.WakeupClock: Flower's 3 s idle sleep becomes 30 s once the bell has heard SERVER_PUSHED (the
    built-in ServerApp's ring after each push); other rings (a task ended) leave it at 3 s; the 0.5 s reply
    waits stay 0.5 s either way."""
    from contract.wakeups import SERVER_PUSHED, WakeupSocket, wake
    from launcher.flower.quick_supernode import IDLE_SECONDS, RUNG_IDLE_SECONDS, WakeupClock

    bell = WakeupSocket(tmp_path, "supernode")
    waited = []
    real_wait = bell.wait
    monkeypatch.setattr(bell, "wait", lambda timeout: waited.append(timeout))
    clock = WakeupClock(bell)
    wake(tmp_path, "supernode")  # the task host's ring: not the ServerApp's
    real_wait(0.5)
    clock.sleep(3)
    clock.sleep(0.5)
    wake(tmp_path, "supernode", SERVER_PUSHED)
    assert real_wait(0.5) is True and SERVER_PUSHED in bell.heard
    clock.sleep(3)
    clock.sleep(0.5)
    assert waited == [IDLE_SECONDS, 0.5, RUNG_IDLE_SECONDS, 0.5] and RUNG_IDLE_SECONDS == 30.0


def test_a_ring_to_a_bell_nobody_reads_does_not_block(tmp_path):
    """A datagram queue fills after a few rings (its owner stopped or wedged): wake() returns at once."""
    import time as _time

    from contract.wakeups import WakeupSocket, wake

    bell = WakeupSocket(tmp_path, "supernode")
    started = _time.monotonic()
    for _ in range(200):
        wake(tmp_path, "supernode")
    assert _time.monotonic() - started < 2
    assert bell.wait(0) is True


def test_the_serverapp_rings_only_after_a_push_of_messages():
    """Flower's strategy sends each round's evaluate messages even when it has none (fraction_evaluate 0): the grid
    rings nobody for an empty push, and rings once for one with messages."""
    from types import SimpleNamespace

    from simulator.deadline_grid import DeadlineGrid

    class Grid:
        def push_messages(self, messages):
            return [f"m{i}" for i, _ in enumerate(messages)]

        def pull_messages(self, ids):
            return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=mid, src_node_id=7),
                                    has_error=lambda: False) for mid in ids]

    rings = []
    grid = DeadlineGrid(Grid(), poll=0.01, after_push=lambda: rings.append(1))
    assert list(grid.send_and_receive([])) == [] and rings == []
    replies = grid.send_and_receive([SimpleNamespace(metadata=SimpleNamespace(dst_node_id=7))], timeout=0.5)
    assert len(replies) == 1 and rings == [1]


def test_a_process_mode_node_pulls_twice_a_task_not_once_more_each_round(tmp_path, monkeypatch):
    """A real run, 2 clients, 6 rounds: each node's Fleet pulls from the ServerApp's first push on, counted by the
    SuperLink's own DEBUG lines. A node pulls for each task's message (8: the partition query, 6 rounds, the final
    evaluation) and once after each reply it pushes (Flower's loop): at most 16 a node (14 here). Before, the
    ServerApp rang every node after each round's empty evaluate push as well: one more empty pull per node and
    round (20 a node)."""
    import re

    from tests.helpers import run, runs

    monkeypatch.setenv("FLWR_LOG_LEVEL", "DEBUG")
    done = run("fl-launch", "--client-num", "2", "--task", "train", "--rounds", "6", "--log-dir", str(tmp_path),
               timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    superlink_log = (runs(tmp_path)[-1] / "server" / "superlink.log").read_text()
    first_push = superlink_log.index('"POST /v1/runtime/push-messages')  # the ServerApp's, through ServerAppIo
    pulls: dict[str, int] = {}
    for node in re.findall(r"\[Fleet\.PullMessages\] node_id=(\d+)", superlink_log[first_push:]):
        pulls[node] = pulls.get(node, 0) + 1
    assert len(pulls) == 2 and all(8 <= n <= 2 * 8 for n in pulls.values()), pulls
