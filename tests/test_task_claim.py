"""launcher.flower.task_claim: a task the host acquired keeps its claim while it waits for a compute slot.

The oracle is Flower's own SuperNode state and app: a task acquired through them, Flower's clock (the state's
``now``) moved on by more than Flower gives a task to start, then the task's own PullTaskInput."""

from __future__ import annotations

import datetime
import time

import pytest
from flwr.proto.runtime_pb2 import AcquireTaskRequest, PullTaskInputRequest  # pylint: disable=E0611
from flwr.supercore.constant import TaskType
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor

from launcher.flower.in_node_runtime import InNodeRuntimeClient, InNodeTransport
from launcher.flower.task_claim import kept_claimed
from launcher.flower.warm_clientapp import runtime_client
from tests.test_flower_internals import _node_state_with_a_task


@pytest.fixture
def node(monkeypatch):
    """A SuperNode's state holding one task, its app reached in this process, and Flower's clock in the test's hand."""
    import flwr.supercore.corestate.in_memory_corestate as corestate
    from flwr.supernode.main import create_app

    from launcher.flower.quick_http import quick

    factory, _ = _node_state_with_a_task()
    monkeypatch.setattr(InNodeRuntimeClient, "transport", InNodeTransport(quick(create_app(state_factory=factory))))
    clock = [corestate.now()]
    monkeypatch.setattr(corestate, "now", lambda: clock[0])
    return clock


def _task_pulls_its_input(token: str) -> bool:
    client = InNodeRuntimeClient.from_server_address(server_address="127.0.0.1:1", insecure=True,
                                                     root_certificates=None,
                                                     interceptors=[RuntimeTokenHttpInterceptor(token)])
    try:
        return client.PullTaskInput(PullTaskInputRequest()).task_id != 0
    except Exception:  # noqa: BLE001 - Flower's 401 for a token that no longer names a task
        return False


def _acquire(client) -> str:
    token = client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value])).token
    assert token
    return token


def _wait(clock, seconds: int) -> None:
    """Flower's clock moves ``seconds`` on, 10 s a step, with real time between steps for heartbeats to go."""
    for _ in range(seconds // 10):
        clock[0] += datetime.timedelta(seconds=10)
        time.sleep(0.1)


def test_a_task_that_waits_90_s_kept_claimed_still_starts(node):
    client = runtime_client("127.0.0.1:1", InNodeRuntimeClient)
    token = _acquire(client)
    with kept_claimed(client, token, every=0.02):
        _wait(node, 90)
    assert _task_pulls_its_input(token)


def test_without_it_flower_takes_the_claim_back_after_30_s(node):
    """The same wait with no heartbeat: Flower returns the task to pending and the token no longer works (the
    failure the keep-alive prevents: a node's task 401s and the round loses that client)."""
    client = runtime_client("127.0.0.1:1", InNodeRuntimeClient)
    token = _acquire(client)
    _wait(node, 40)
    assert not _task_pulls_its_input(token)
