"""A SuperNode's Fleet calls for a task chained: two exchanges with the SuperLink a task, not six.

    # a server: QuickRoutes (launcher.flower.quick_http) answers CHAIN_PATH with run_chain
    install()                      # in a SuperNode (launcher.flower.quick_supernode), after object_batch's
    pull_after_push_when(ready)    # a push's exchange ends with the loop's next pull only while ready()

Flower's SuperNode loop makes, for each task, a pull-messages that brings the message, an object pull (one
exchange with launcher.flower.object_batch), confirm-message-received, push-messages, an object push, and the
pull-messages that follows each push: six HTTP requests, each paying the HTTP stack on both sides. Here:
- a pull is one exchange: the SuperLink runs pull-messages, then pulls each object of the message's object
  tree (root first, depth first, at most MAX_BATCH_CALLS) and answers them all; Flower's loop then takes the
  objects it asks for from those, and pulls any other as before;
- confirm-message-received is sent with the node's next exchange (the reply's push, or else its next pull),
  before that exchange's other calls: the SuperLink deletes the confirmed message's objects then, not at once
  (Flower's confirmation does nothing else; a failed one is no longer the task's failure); so a message's objects
  stay in the SuperLink's store for the task's length, and for good when the node dies before its next exchange;
- a push is one exchange: push-messages, then a push-object call for each object of the reply the node already
  has (the SuperLink runs those the push-messages answer asks for, with that answer's session, and answers the
  others NOT_ASKED unrun; Flower's loop pushes what is still missing as before), then the pull-messages (with its
  message's objects) that Flower's loop makes right after each push: the loop's next receive takes its answer.
  A node about to leave (its memory grew: launcher.flower.node_tasks) does not pull in its push's exchange: it
  leaves before its next pull, and a message pulled would be lost with it.
Each call goes through the same quick route (middleware, node authentication, handler) it would take alone; once
one is refused (401, 403) the rest are too, unrun. A SuperLink without the chain path (a stock Flower one: 404)
gets Flower's own calls from then on; any exchange that gets no answer, or whose pull-messages failed, is done
again with Flower's own calls (their retries and errors); so is a push-messages refused or answered a status
Flower retries (PUSH_AGAIN), while any other status raises Flower's error (httpx.HTTPStatusError) as its own call
would once its retries give up: a reply the SuperLink answered with a 500 is not pushed again (an exchange that got
no answer at all is, as Flower's own call retries a lost connection); a message a push's exchange pulled is kept
whatever became of the push.

Frames as launcher.flower.object_batch's; the answers: one per call, and after a pull-messages one per object
pulled (tree_ids of its first message's tree, in that order).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from launcher.flower.object_batch import MAX_BATCH_CALLS, fleet_call, held_first, post_calls

CHAIN_PATH = "/v1/fleet/fl-launch-chain"
PULL_MESSAGES, PUSH_MESSAGES = "/v1/fleet/pull-messages", "/v1/fleet/push-messages"
PULL_OBJECT, PUSH_OBJECT = "/v1/fleet/pull-object", "/v1/fleet/push-object"
CONFIRM = "/v1/fleet/confirm-message-received"
CHAINABLE = frozenset({PULL_MESSAGES, PUSH_MESSAGES, PUSH_OBJECT, CONFIRM})
NOT_ASKED = 204  # a push-object the push-messages before it did not ask for (or that failed): not run
# push-messages answered one of these in a chain: refused unrun (authentication, the run not running) or a status
# Flower's own call retries; Flower's call is made (its own outcome, no reply pushed twice). Any other status
# (a 500 after the SuperLink may have stored the reply) raises as Flower's call would, not retried.
PUSH_AGAIN = frozenset({401, 403, 502, 503, 504})

Call = Callable[[str, bytes], Awaitable[tuple[int, bytes]]]


def tree_ids(tree) -> list[str]:
    """An ObjectTree's object ids, root first, depth first."""
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        out.append(node.object_id)
        stack.extend(reversed(node.children))
    return out


async def run_chain(calls: list[tuple[str, bytes]], call: Call) -> list[tuple[int, bytes]]:
    """The server's side: ``calls`` run in order through ``call`` (one quick route each), as the module says."""
    from flwr.proto.fleet_pb2 import PushMessagesResponse
    from flwr.proto.message_pb2 import PushObjectRequest
    from google.protobuf.message import DecodeError

    answers: list[tuple[int, bytes]] = []
    asked: set[str] | None = None  # what the chain's push-messages asked for, once it ran
    session, refused = "", 0
    for path, body in calls:
        if refused or path not in CHAINABLE:
            answers.append((refused or 404, b""))
            continue
        if path == PUSH_OBJECT and asked is not None:
            try:
                request = PushObjectRequest.FromString(body)
            except DecodeError:
                answers.append((400, b""))
                continue
            if request.object_id not in asked:
                answers.append((NOT_ASKED, b""))
                continue
            request.session_id = session
            body = request.SerializeToString()
        answer = await call(path, body)
        refused = answer[0] if answer[0] in (401, 403) else 0
        answers.append(answer)
        if path == PUSH_MESSAGES:
            asked = set()
            if answer[0] == 200:
                reply = PushMessagesResponse.FromString(answer[1])
                asked, session = set(reply.objects_to_push), reply.session_id
        elif path == PULL_MESSAGES and answer[0] == 200:
            for pull in _object_pulls(body, answer[1]):
                answers.append(await call(PULL_OBJECT, pull))
                if answers[-1][0] in (401, 403):
                    break
        await asyncio.sleep(0)  # the other requests' turn between calls
    return answers


def _object_pulls(request: bytes, answer: bytes) -> list[bytes]:
    """The pull-object requests for the objects of a pull-messages answer's first message (its node's)."""
    from flwr.proto.fleet_pb2 import PullMessagesRequest, PullMessagesResponse
    from flwr.proto.message_pb2 import PullObjectRequest

    reply = PullMessagesResponse.FromString(answer)
    if not reply.messages_list or not reply.message_object_trees:
        return []
    node, run_id = PullMessagesRequest.FromString(request).node, reply.messages_list[0].metadata.run_id
    return [PullObjectRequest(node=node, run_id=run_id, object_id=i).SerializeToString()
            for i in tree_ids(reply.message_object_trees[0])[:MAX_BATCH_CALLS]]


def _log_failed_confirm(err: Exception) -> None:
    from logging import WARNING

    from flwr.supercore import log

    log(WARNING, "fl-launch: a deferred confirm-message-received failed: %s", err)


@dataclass
class Chain:
    """One SuperNode's chained exchanges (its loop's thread only)."""

    supported: bool = True  # False once the SuperLink answered the chain path 404
    confirms: list[tuple[bytes, Callable[[], None]]] = field(default_factory=list)  # (request, Flower's call)
    pulled: dict[str, bytes] = field(default_factory=dict)  # objects the last pull brought, by id
    next_pull: list[tuple[int, bytes]] | None = None  # the answers of the pull a push's exchange ended with
    pull_after_push: Callable[[], bool] = lambda: True  # whether the loop will pull after this push (not leave)

    def post(self, client, calls: list[tuple[str, bytes]], first) -> list[tuple[int, bytes]] | None:
        """The pending confirmations, then ``calls``, in one exchange; the answers to ``calls``, or None (the
        confirmations then sent with Flower's own calls)."""
        confirms, self.confirms = self.confirms, []
        answers = post_calls(client, CHAIN_PATH, [(CONFIRM, body) for body, _ in confirms] + calls, first,
                             refused=self._refused) if self.supported else None
        if answers is None or len(answers) < len(confirms) + len(calls):
            for _, confirm in confirms:
                try:
                    confirm()
                except Exception as err:  # noqa: BLE001 (a late confirmation's failure is not this exchange's)
                    _log_failed_confirm(err)
            return None
        return answers[len(confirms):]

    def _refused(self, status: int) -> None:
        if status == 404:
            self.supported = False

    def defer_confirm(self, node, confirm: Callable[[int, str], None]) -> Callable[[int, str], None]:
        from flwr.proto.message_pb2 import ConfirmMessageReceivedRequest

        def later(run_id: int, message_id: str) -> None:
            if not self.supported:
                confirm(run_id, message_id)
                return
            request = ConfirmMessageReceivedRequest(node=node, run_id=run_id, message_object_id=message_id)
            self.confirms.append((request.SerializeToString(), lambda: confirm(run_id, message_id)))

        return later

    def receive(self, client, node, receive: Callable[[], tuple | None]) -> tuple | None:
        """Flower's ``receive`` (pull-messages) with the message's objects pulled in the same exchange; or what
        the pull that ended the last push's exchange brought."""
        from flwr.proto.fleet_pb2 import PullMessagesRequest

        answers, self.next_pull = self.next_pull, None
        if answers is None:
            request = PullMessagesRequest(node=node)
            answers = self.post(client, [(PULL_MESSAGES, request.SerializeToString())], request)
        if answers is None or answers[0][0] != 200:
            return receive()
        return self._pulled(answers)

    def _holds_a_message(self) -> bool:
        """Whether the pull an earlier push's exchange ended with brought a message (the loop's next receive's)."""
        from flwr.proto.fleet_pb2 import PullMessagesResponse

        if not self.next_pull or self.next_pull[0][0] != 200:
            return False
        return bool(PullMessagesResponse.FromString(self.next_pull[0][1]).messages_list)

    def _pulled(self, answers: list[tuple[int, bytes]]) -> tuple | None:
        """The message a pull-messages answer (``answers[0]``) brings and its tree, the objects after it kept."""
        from flwr.common.serde import message_from_proto
        from flwr.proto.fleet_pb2 import PullMessagesResponse
        from flwr.proto.message_pb2 import PullObjectResponse

        reply = PullMessagesResponse.FromString(answers[0][1])
        if not reply.messages_list:
            return None
        tree = reply.message_object_trees[0]
        for object_id, (status, body) in zip(tree_ids(tree), answers[1:]):
            if status == 200:
                pulled = PullObjectResponse.FromString(body)
                if pulled.object_found and pulled.object_available:
                    self.pulled[object_id] = pulled.object_content
        return message_from_proto(reply.messages_list[0]), tree

    def send(self, client, node, store, send: Callable, message, tree, runtime: float) -> tuple[set[str], str]:
        """Flower's ``send`` (push-messages) with the reply's objects pushed in the same exchange, and the pull
        Flower's loop makes next, unless ``pull_after_push`` says no; what it returns: the objects the SuperLink
        asked for and did not store yet, and the session."""
        from flwr.app.message import remove_content_from_message
        from flwr.common.serde import message_to_proto
        from flwr.proto.fleet_pb2 import PullMessagesRequest, PushMessagesRequest, PushMessagesResponse
        from flwr.proto.message_pb2 import PushObjectRequest, PushObjectResponse

        plain = remove_content_from_message(message) if message.has_content() else message
        request = PushMessagesRequest(node=node, messages_list=[message_to_proto(plain)],
                                      message_object_trees=[tree], clientapp_runtime_list=[runtime])
        run_id = message.metadata.run_id
        contents = {i: c for i in tree_ids(tree) if (c := store.get(i))}
        ids = list(contents)[:MAX_BATCH_CALLS - 2 - len(self.confirms)]
        pushes = [(PUSH_OBJECT, PushObjectRequest(node=node, run_id=run_id, object_id=i,
                                                  object_content=contents[i]).SerializeToString()) for i in ids]
        pull = ([(PULL_MESSAGES, PullMessagesRequest(node=node).SerializeToString())]
                if self.pull_after_push() and not self._holds_a_message() else [])  # (several replies pushed in a row)
        answers = self.post(client, [(PUSH_MESSAGES, request.SerializeToString()), *pushes, *pull], request)
        if answers is not None and pull and answers[1 + len(ids)][0] == 200:
            self.next_pull = answers[1 + len(ids):]  # a message it brought is this node's now: kept, come what may
        if answers is None or answers[0][0] in PUSH_AGAIN:
            return send(message, tree, runtime)
        if answers[0][0] != 200:
            raise _status_error(client, PUSH_MESSAGES, answers[0][0])
        reply = PushMessagesResponse.FromString(answers[0][1])
        stored = {i for i, (status, body) in zip(ids, answers[1:])
                  if status == 200 and PushObjectResponse.FromString(body).stored}
        return set(reply.objects_to_push) - stored, reply.session_id


def _status_error(client, path: str, status: int):
    """The error Flower's ProtobufClient raises for ``status`` from ``path`` (its retry invoker gives up on it)."""
    import httpx

    request = httpx.Request("POST", f"{client._base_url}{path}")  # noqa: SLF001 (pinned, as post_calls)
    return httpx.HTTPStatusError(f"{status} from {path} (in fl-launch's chained exchange)", request=request,
                                 response=httpx.Response(status, request=request))


def install() -> None:
    """Flower's SuperNode loop in this process pulls, confirms and pushes through the chain (see the module)."""
    import flwr.supernode.start_client_internal as loop

    if getattr(loop._push_messages, "chained", False):  # noqa: SLF001
        return
    chain = Chain()
    pull_and_store, push, pull_objects = loop._pull_and_store_message, loop._push_messages, loop.pull_objects  # noqa: SLF001

    def pull_chained(*args, **kwargs):
        client, node = fleet_call(kwargs.get("pull_object"))
        if args or client is None or not chain.supported or not {"receive", "confirm_message_received"} <= set(kwargs):
            return pull_and_store(*args, **kwargs)
        receive = kwargs["receive"]
        kwargs["receive"] = lambda: chain.receive(client, node, receive)
        kwargs["confirm_message_received"] = chain.defer_confirm(node, kwargs["confirm_message_received"])
        try:
            return pull_and_store(**kwargs)
        finally:
            chain.pulled.clear()

    def push_chained(*args, **kwargs):
        client, node = fleet_call(kwargs.get("push_object"))
        if args or client is None or not chain.supported or not {"send", "object_store"} <= set(kwargs):
            return push(*args, **kwargs)
        send, store = kwargs["send"], kwargs["object_store"]
        kwargs["send"] = lambda message, tree, runtime: chain.send(client, node, store, send, message, tree, runtime)
        return push(**kwargs)

    push_chained.chained = True
    push_chained.chain = chain
    loop._pull_and_store_message = pull_chained  # noqa: SLF001
    loop._push_messages = push_chained  # noqa: SLF001
    loop.pull_objects = held_first(pull_objects, lambda: chain.pulled)


def pull_after_push_when(predicate: Callable[[], bool]) -> None:
    """The installed chain pulls in a push's exchange only while ``predicate()`` (a node about to leave does not:
    a message it pulled would be lost with it)."""
    import flwr.supernode.start_client_internal as loop

    loop._push_messages.chain.pull_after_push = predicate  # noqa: SLF001
