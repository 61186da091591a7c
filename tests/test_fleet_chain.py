"""launcher.flower.fleet_chain: a SuperNode's Fleet calls for a task in two exchanges, and Flower's own calls
where the SuperLink has no chain path."""

from __future__ import annotations

import asyncio
import re

from flwr.proto.fleet_pb2 import PullMessagesRequest, PullMessagesResponse, PushMessagesResponse
from flwr.proto.message_pb2 import ObjectTree, PullObjectRequest, PushObjectRequest
from flwr.proto.node_pb2 import Node

from launcher.flower import fleet_chain
from launcher.flower.fleet_chain import (
    CONFIRM,
    NOT_ASKED,
    PULL_MESSAGES,
    PULL_OBJECT,
    PUSH_MESSAGES,
    PUSH_OBJECT,
    Chain,
    run_chain,
    tree_ids,
)


def _tree() -> ObjectTree:
    return ObjectTree(object_id="m", children=[ObjectTree(object_id="a", children=[ObjectTree(object_id="a1")]),
                                               ObjectTree(object_id="b")])


def test_tree_ids_are_root_first_depth_first():
    assert tree_ids(_tree()) == ["m", "a", "a1", "b"]


def test_the_superlink_runs_the_pushes_asked_for_with_the_session_and_pulls_a_pulled_message_s_objects():
    """The oracle: the calls the chain hands its quick routes (a fake route that records them)."""
    ran: list[tuple[str, bytes]] = []

    async def call(path: str, body: bytes) -> tuple[int, bytes]:
        ran.append((path, body))
        if path == PUSH_MESSAGES:
            return 200, PushMessagesResponse(objects_to_push=["x", "z"], session_id="s1").SerializeToString()
        if path == PULL_MESSAGES:
            reply = PullMessagesResponse(message_object_trees=[_tree()])
            reply.messages_list.add().metadata.run_id = 7
            return 200, reply.SerializeToString()
        return 200, b"ok:" + path.encode()

    def push(object_id: str) -> tuple[str, bytes]:
        return PUSH_OBJECT, PushObjectRequest(object_id=object_id, object_content=b"c").SerializeToString()

    node = Node(node_id=5)
    calls = [(CONFIRM, b"c1"), (PUSH_MESSAGES, b"p"), push("x"), push("y"), push("z"),
             (PULL_MESSAGES, PullMessagesRequest(node=node).SerializeToString()), ("/v1/fleet/get-run", b"")]
    answers = asyncio.run(run_chain(calls, call))
    assert [status for status, _ in answers] == [200, 200, 200, NOT_ASKED, 200, 200, 200, 200, 200, 200, 404]
    pushed = [PushObjectRequest.FromString(body) for path, body in ran if path == PUSH_OBJECT]
    assert [(p.object_id, p.session_id) for p in pushed] == [("x", "s1"), ("z", "s1")]
    pulled = [PullObjectRequest.FromString(body) for path, body in ran if path == PULL_OBJECT]
    assert [(p.object_id, p.run_id, p.node.node_id) for p in pulled] == [("m", 7, 5), ("a", 7, 5), ("a1", 7, 5),
                                                                         ("b", 7, 5)]
    assert "/v1/fleet/get-run" not in [path for path, _ in ran]


def test_once_a_call_is_refused_the_rest_are_not_run():
    ran = []

    async def call(path: str, body: bytes) -> tuple[int, bytes]:
        ran.append(path)
        return 401, b""

    answers = asyncio.run(run_chain([(CONFIRM, b""), (PUSH_MESSAGES, b""), (PUSH_OBJECT, b"")], call))
    assert answers == [(401, b"")] * 3 and ran == [CONFIRM]


def test_a_superlink_without_the_chain_path_gets_flower_s_own_calls_from_then_on(monkeypatch):
    """A stock SuperLink answers the chain path 404: the deferred confirmation is made with Flower's own call, the
    pull with Flower's receive, and no chain is tried again; the oracle: which of Flower's functions were called."""
    posted, flower = [], []

    def post_calls(client, path, calls, first, refused=None):
        posted.append([p for p, _ in calls])
        refused(404)
        return None

    monkeypatch.setattr(fleet_chain, "post_calls", post_calls)
    chain = Chain()
    confirm = chain.defer_confirm(Node(node_id=1), lambda run_id, message_id: flower.append(("confirm", message_id)))
    confirm(3, "m1")
    assert flower == []  # deferred while the chain may carry it
    assert chain.receive(object(), Node(node_id=1), lambda: flower.append(("receive",))) is None
    assert posted == [[CONFIRM, PULL_MESSAGES]] and flower == [("confirm", "m1"), ("receive",)]
    confirm(3, "m2")
    assert flower[-1] == ("confirm", "m2") and not chain.supported  # at once, as Flower does


def test_a_task_takes_two_fleet_requests_not_six(tmp_path, monkeypatch):
    """A real run, 2 clients, 2 rounds: every HTTP request to the SuperLink's Fleet API from the ServerApp's first
    push on, counted from its own access lines; tasks counted by its PushMessages lines. A task is a pull that
    brings the message and its objects, and a push that carries confirm, push-messages, the reply's objects and
    the pull that follows each push: 2 (a node's get-run, get-fab, heartbeats and goodbye aside; before:
    pull-messages, the object batch, confirm-message-received, push-messages, the object batch, pull-messages: 6).
    Every message is still confirmed."""
    from tests.helpers import superlink_log_of_a_run

    log = superlink_log_of_a_run(tmp_path, monkeypatch, clients=2, rounds=2)
    log = log[log.index('"POST /v1/runtime/push-messages'):]  # the ServerApp's first push
    tasks = len(re.findall(r"\[Fleet\.PushMessages\] Push replies from node_id=\d+", log))
    confirmed = len(re.findall(r"\[Fleet\.ConfirmMessageReceived\] Message with ID", log))
    fleet = re.findall(r'"POST /v1/fleet/([a-z-]+) HTTP', log)
    once = ("get-run", "get-fab", "send-node-heartbeat", "deactivate-node", "unregister-node")  # a node's, not a task's
    per_task = [path for path in fleet if path not in once]
    assert tasks >= 6 and confirmed == tasks, (tasks, confirmed)
    assert len(per_task) <= 2 * tasks + 2, (tasks, sorted(per_task))


def test_the_pull_a_push_s_exchange_ends_with_is_the_loop_s_next_receive_unless_the_node_is_leaving(monkeypatch):
    """The oracle: the calls each exchange carried (a fake post that answers as a SuperLink with one message)."""
    from types import SimpleNamespace

    import flwr.common.serde as serde
    from flwr.proto.message_pb2 import Message as MessageProto

    posted = []
    pulled = PullMessagesResponse(message_object_trees=[ObjectTree(object_id="n")])
    pulled.messages_list.add().metadata.run_id = 7

    def post_calls(client, path, calls, first, refused=None):
        posted.append([p for p, _ in calls])
        answers = []
        for path_, _ in calls:
            if path_ == PUSH_MESSAGES:
                answers.append((200, PushMessagesResponse(session_id="s").SerializeToString()))
            elif path_ == PULL_MESSAGES:
                answers += [(200, pulled.SerializeToString()), (500, b"")]  # its object not settled: Flower's pull
            else:
                answers.append((200, b""))
        return answers

    monkeypatch.setattr(fleet_chain, "post_calls", post_calls)
    monkeypatch.setattr(serde, "message_from_proto", lambda proto: proto)  # no Flower task here to make a Message
    monkeypatch.setattr(serde, "message_to_proto", lambda message: MessageProto())
    chain, flower = Chain(), []
    reply = SimpleNamespace(has_content=lambda: False, metadata=SimpleNamespace(run_id=7))
    store = type("Store", (), {"get": lambda self, i: None})()

    def receive():
        flower.append("receive")

    assert chain.send(object(), Node(node_id=1), store, None, reply, ObjectTree(object_id="r"), 0.1) == (set(), "s")
    assert posted == [[PUSH_MESSAGES, PULL_MESSAGES]]
    got = chain.receive(object(), Node(node_id=1), receive)
    assert got[1] == pulled.message_object_trees[0] and posted == [[PUSH_MESSAGES, PULL_MESSAGES]] and flower == []
    chain.pull_after_push = lambda: False  # the node leaves before its next pull
    chain.send(object(), Node(node_id=1), store, None, reply, ObjectTree(object_id="r"), 0.1)
    assert posted[-1] == [PUSH_MESSAGES] and chain.next_pull is None
    chain.pull_after_push = lambda: True  # two replies pushed in a row: the first's pull brought a message
    chain.send(object(), Node(node_id=1), store, None, reply, ObjectTree(object_id="r"), 0.1)
    assert posted[-1] == [PUSH_MESSAGES, PULL_MESSAGES] and chain.next_pull is not None
    chain.send(object(), Node(node_id=1), store, None, reply, ObjectTree(object_id="r"), 0.1)
    assert posted[-1] == [PUSH_MESSAGES]  # no second pull: the message the first brought is kept for the loop
    assert chain.receive(object(), Node(node_id=1), receive)[1] == pulled.message_object_trees[0]


def test_a_push_messages_that_failed_after_the_superlink_ran_it_is_not_pushed_again(monkeypatch):
    """A 500 from the chained push-messages (the SuperLink may have stored the reply) raises the error Flower's own
    call raises (its retry invoker gives up on 500) and Flower's send is not called: no reply pushed twice; a status
    Flower retries (503) or a refusal (401) goes to Flower's send. The oracle: which of Flower's functions ran."""
    from types import SimpleNamespace

    import flwr.common.serde as serde
    import httpx
    import pytest
    from flwr.proto.message_pb2 import Message as MessageProto

    status = {"now": 500}

    def post_calls(client, path, calls, first, refused=None):
        return [(status["now"], b"")] + [(NOT_ASKED, b"")] * (len(calls) - 1)

    monkeypatch.setattr(fleet_chain, "post_calls", post_calls)
    monkeypatch.setattr(serde, "message_to_proto", lambda message: MessageProto())
    reply = SimpleNamespace(has_content=lambda: False, metadata=SimpleNamespace(run_id=7))
    store = type("Store", (), {"get": lambda self, i: None})()
    flower = []

    def send(message, tree, runtime):
        flower.append("send")
        return set(), "flower's"

    chain, client = Chain(), SimpleNamespace(_base_url="http://127.0.0.1:9095")
    with pytest.raises(httpx.HTTPStatusError) as raised:
        chain.send(client, Node(node_id=1), store, send, reply, ObjectTree(object_id="r"), 0.1)
    assert raised.value.response.status_code == 500 and flower == []
    for again in (503, 401):
        status["now"] = again
        assert chain.send(client, Node(node_id=1), store, send, reply, ObjectTree(object_id="r"), 0.1) == (
            set(), "flower's")
    assert flower == ["send", "send"]
