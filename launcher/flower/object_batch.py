"""A message's objects pulled, or pushed, in one HTTP exchange instead of one each.

    # a server: QuickRoutes (launcher.flower.quick_http) answers BATCH_PATHS
    install_in_task_process()  # in a task process (launcher.flower.task_worker): Flower's run_clientapp batches
    install_in_supernode()     # in a SuperNode (launcher.flower.quick_supernode): its loop batches
    install_in_serverapp()     # in a ServerApp (launcher.flower.plain_logs): Flower's HTTP grid batches

Flower moves a message as its object tree: a PullObject (or PushObject) request per object, six for the
built-in app's model message, each paying the HTTP stack on both sides. A batch is one POST to
``/v1/<api>/fl-launch-batch`` carrying those same protobuf requests; the server answers each through the same
quick route (the same middleware, authentication included, and handler) a single call would take, and returns
each answer in order. Only object pulls and pushes (and a ServerApp's confirmations: launcher.flower.reply_batch)
are batched (BATCHABLE). The client falls back to Flower's
own per-object calls, with its retries and back-off, for every object the batch did not settle (not yet
available, not stored, an error) and for a server that does not know the batch path (a stock Flower one).

Frames: a call is ``>H`` path length, path, ``>I`` body length, body; an answer is ``>H`` status, ``>I`` length,
body.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

BATCH_PATHS = frozenset({"/v1/runtime/fl-launch-batch", "/v1/fleet/fl-launch-batch"})
# A batch holds at most this many calls (a model message is about 6 objects; a large model's chunks go in several
# batches): a server runs a batch's calls one after another, so one request cannot hold it for long.
MAX_BATCH_CALLS = 64
BATCHABLE = frozenset(f"/v1/{api}/{call}" for api in ("runtime", "fleet") for call in ("pull-object", "push-object")
                      ) | {"/v1/runtime/confirm-message-received"}  # a ServerApp's confirmations (reply_batch)
_CALL = struct.Struct(">H")
_LEN = struct.Struct(">I")


def join_calls(calls: Iterable[tuple[str, bytes]]) -> bytes:
    out = bytearray()
    for path, body in calls:
        encoded = path.encode()
        out += _CALL.pack(len(encoded)) + encoded + _LEN.pack(len(body)) + body
    return bytes(out)


def split_calls(data: bytes) -> list[tuple[str, bytes]]:
    """The calls of a batch; ValueError for a malformed one (a frame cut short, a path not UTF-8) or one of more
    than MAX_BATCH_CALLS calls."""
    calls, at = [], 0
    try:
        while at < len(data):
            (size,) = _CALL.unpack_from(data, at)
            path = data[at + 2:at + 2 + size].decode()
            at += 2 + size
            (length,) = _LEN.unpack_from(data, at)
            if at + 4 + length > len(data) or len(calls) == MAX_BATCH_CALLS:
                raise ValueError("a frame cut short, or too many calls")
            calls.append((path, data[at + 4:at + 4 + length]))
            at += 4 + length
    except (struct.error, UnicodeDecodeError) as err:
        raise ValueError(str(err)) from None
    return calls


def join_answers(answers: Iterable[tuple[int, bytes]]) -> bytes:
    return b"".join(_CALL.pack(status) + _LEN.pack(len(body)) + body for status, body in answers)


def split_answers(data: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    while at < len(data):
        (status,) = _CALL.unpack_from(data, at)
        (length,) = _LEN.unpack_from(data, at + 2)
        out.append((status, data[at + 6:at + 6 + length]))
        at += 6 + length
    return out


def batch_path(single_path: str) -> str:
    return single_path.rsplit("/", 1)[0] + "/fl-launch-batch"


def exchange(client, single_path: str, requests: list) -> list[tuple[int, bytes]]:
    """Send ``requests`` (protobuf messages for ``single_path``) in batches of at most MAX_BATCH_CALLS through
    ``client``'s interceptors (a Flower ProtobufClient: its token or node signature headers); an answer per request,
    ``(0, b"")`` for those whose batch got no answer (a server without the batch path, a lost connection)."""
    answers: list[tuple[int, bytes]] = []
    for start in range(0, len(requests), MAX_BATCH_CALLS):
        part = requests[start:start + MAX_BATCH_CALLS]
        answers += _exchange_one(client, single_path, part) or [(0, b"")] * len(part)
    return answers


def _exchange_one(client, single_path: str, requests: list) -> list[tuple[int, bytes]] | None:
    calls = [(single_path, r.SerializeToString(deterministic=True)) for r in requests]
    answers = post_calls(client, batch_path(single_path), calls, requests[0])
    return answers if answers is not None and len(answers) == len(requests) else None


def post_calls(client, path: str, calls: list[tuple[str, bytes]], first, refused: Callable[[int], None] = None,
               ) -> list[tuple[int, bytes]] | None:
    """``calls`` in one POST to ``path`` through ``client``'s interceptors (a Flower ProtobufClient: its token or
    node signature headers; ``first``, the first call's protobuf message, is what they are shown); the answers, or
    None when none came (a lost connection, a status other than 200: ``refused`` is told it, a malformed answer)."""
    from flwr.supercore.protobuf.client import ProtobufRequestContext
    from flwr.supercore.protobuf.translation import PROTOBUF_MEDIA_TYPE

    http_request = client._client.build_request(  # noqa: SLF001 (pinned by tests/test_flower_internals.py)
        method="POST", url=f"{client._base_url}{path}", content=join_calls(calls),  # noqa: SLF001
        headers={"content-type": PROTOBUF_MEDIA_TYPE, "accept": PROTOBUF_MEDIA_TYPE})
    try:
        response = client._send(ProtobufRequestContext(  # noqa: SLF001
            rpc_method="fl-launch-batch", message=first, request=http_request))
    except Exception:  # noqa: BLE001 (the caller falls back to Flower's own calls, which retry and report)
        return None
    if response.status_code != 200:
        if refused is not None:
            refused(response.status_code)
        return None
    try:
        return split_answers(response.content)
    except (struct.error, ValueError):
        return None


def pull_many(client, single_path: str, node, run_id: int, object_ids: list[str]) -> dict[str, bytes]:
    """The objects one batch settled (found and available); the caller leaves the rest to Flower's pull."""
    from flwr.proto.message_pb2 import PullObjectRequest, PullObjectResponse

    requests = [PullObjectRequest(node=node, run_id=run_id, object_id=i) for i in object_ids]
    pulled = {}
    for object_id, (status, body) in zip(object_ids, exchange(client, single_path, requests)):
        if status == 200:
            reply = PullObjectResponse.FromString(body)
            if reply.object_found and reply.object_available:
                pulled[object_id] = reply.object_content
    return pulled


def push_many(client, single_path: str, node, run_id: int, session_id: str, contents: dict[str, bytes]) -> set[str]:
    """The object ids one batch stored; the caller leaves the rest to Flower's push."""
    from flwr.proto.message_pb2 import PushObjectRequest, PushObjectResponse

    ids = list(contents)
    requests = [PushObjectRequest(node=node, run_id=run_id, object_id=i, object_content=contents[i],
                                  session_id=session_id) for i in ids]
    return {i for i, (status, body) in zip(ids, exchange(client, single_path, requests))
            if status == 200 and PushObjectResponse.FromString(body).stored}


def held_first(pull_objects: Callable, held: Callable[[], dict | None], keep: bool = False) -> Callable:
    """Flower's ``pull_objects(object_ids, pull_object_fn, **kwargs)`` that takes the objects ``held()`` has
    first (taken out of it, or left there with ``keep``) and pulls only the rest with ``pull_objects``
    (launcher.flower.fleet_chain: a chained pull's objects; launcher.flower.reply_batch: a pull's replies')."""

    def pull(object_ids, pull_object_fn, **kwargs):
        store = held() or {}
        got = {i: store[i] if keep else store.pop(i) for i in object_ids if i in store}
        rest = [i for i in object_ids if i not in got]
        if rest:
            got.update(pull_objects(rest, pull_object_fn=pull_object_fn, **kwargs))
        return got

    return pull


class BatchablePull:
    """Flower's pull_object_fn (called per object, as ever) that can also pull many in one exchange."""

    def __init__(self, single: Callable[[str], bytes], client, node, run_id: int) -> None:
        self.single, self.client, self.node, self.run_id = single, client, node, run_id

    def __call__(self, object_id: str) -> bytes:
        return self.single(object_id)

    def pull_many(self, object_ids: list[str]) -> dict[str, bytes]:
        return pull_many(self.client, "/v1/runtime/pull-object", self.node, self.run_id, object_ids)


class BatchablePush:
    """Flower's push_object_fn that can also push many objects in one exchange."""

    def __init__(self, single: Callable[[str, bytes], None], client, node, run_id: int, session_id: str) -> None:
        self.single, self.client = single, client
        self.node, self.run_id, self.session_id = node, run_id, session_id

    def __call__(self, object_id: str, content: bytes) -> None:
        self.single(object_id, content)

    def push_many(self, contents: dict[str, bytes]) -> set[str]:
        return push_many(self.client, "/v1/runtime/push-object", self.node, self.run_id, self.session_id, contents)


def install_in_task_process() -> None:
    """Flower's run_clientapp in this process pulls a message's objects, and pushes its reply's, in one exchange
    each (falling back per object as above)."""
    import flwr.supercore.inflatable.inflatable_utils as objects
    import flwr.supernode.runtime.run_clientapp as task

    _batch_runtime_calls(task, pulls_in=objects)


def install_in_serverapp() -> None:
    """Flower's HTTP grid in this process (a ServerApp's) pulls each reply's objects, and pushes its messages',
    in one exchange each."""
    import flwr.superlink.grid.http_grid as grid

    _batch_runtime_calls(grid, pulls_in=grid)


def _batch_runtime_calls(module, pulls_in) -> None:
    """``module`` makes its object functions from a Runtime API client's bound methods (Flower's two makers) and
    pushes with ``push_objects``; ``pulls_in`` is the module whose ``pull_objects`` its pulls go through."""
    from flwr.supercore.protobuf.client import ProtobufClient

    if getattr(module.make_pull_object_fn_protobuf, "batchable", False):
        return
    make_pull, make_push = module.make_pull_object_fn_protobuf, module.make_push_object_fn_protobuf
    pull_objects, push_objects = pulls_in.pull_objects, module.push_objects

    def make_pull_fn(pull_object_protobuf, node, run_id):
        single = make_pull(pull_object_protobuf, node, run_id)
        client = getattr(pull_object_protobuf, "__self__", None)
        return BatchablePull(single, client, node, run_id) if isinstance(client, ProtobufClient) else single

    def make_push_fn(push_object_protobuf, node, run_id, session_id):
        single = make_push(push_object_protobuf, node, run_id, session_id)
        client = getattr(push_object_protobuf, "__self__", None)
        return (BatchablePush(single, client, node, run_id, session_id) if isinstance(client, ProtobufClient)
                else single)

    def pull_in_one(object_ids, pull_object_fn, **kwargs):
        if not isinstance(pull_object_fn, BatchablePull) or not object_ids:
            return pull_objects(object_ids, pull_object_fn=pull_object_fn, **kwargs)
        pulled = pull_object_fn.pull_many(list(object_ids))
        rest = [i for i in object_ids if i not in pulled]
        if rest:
            pulled.update(pull_objects(rest, pull_object_fn=pull_object_fn.single, **kwargs))
        return pulled

    def push_in_one(objects_by_id, push_object_fn, *, object_ids_to_push=None, keep_objects=False, **kwargs):
        if not isinstance(push_object_fn, BatchablePush):
            return push_objects(objects_by_id, push_object_fn=push_object_fn, object_ids_to_push=object_ids_to_push,
                                keep_objects=keep_objects, **kwargs)
        wanted = [i for i in objects_by_id if object_ids_to_push is None or i in object_ids_to_push]
        contents = {i: objects_by_id[i].deflate() for i in wanted}
        stored = push_object_fn.push_many(contents) if contents else set()
        rest = [i for i in wanted if i not in stored]
        if rest:
            push_objects(objects_by_id, push_object_fn=push_object_fn.single, object_ids_to_push=set(rest),
                         keep_objects=True, **kwargs)
        if not keep_objects:
            for i in wanted:
                objects_by_id.pop(i, None)

    make_pull_fn.batchable = True
    module.make_pull_object_fn_protobuf = make_pull_fn
    module.make_push_object_fn_protobuf = make_push_fn
    module.push_objects = push_in_one
    pulls_in.pull_objects = pull_in_one


def _free_variables(function) -> dict:
    """A closure's free variables by name (empty for anything else)."""
    code, cells = getattr(function, "__code__", None), getattr(function, "__closure__", None) or ()
    if code is None:
        return {}
    out = {}
    for name, cell in zip(code.co_freevars, cells):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    return out


def fleet_call(connection_call) -> tuple:
    """(client, node) of Flower's fleet connection function (pull_object / push_object of its
    http_request_response), or (None, None) when it is not one."""
    from flwr.supercore.protobuf.client import ProtobufClient

    names = _free_variables(connection_call)
    client, node = names.get("client"), names.get("node")
    return (client, node) if isinstance(client, ProtobufClient) and node is not None else (None, None)


def install_in_supernode() -> None:
    """Flower's SuperNode loop in this process pulls a message's objects from the SuperLink, and pushes its
    reply's, in one exchange each (falling back per object as above)."""
    import flwr.supernode.start_client_internal as loop

    if getattr(loop.push_object_contents_from_iterable, "batchable", False):  # (loop.pull_objects may be wrapped
        return  # again since: launcher.flower.fleet_chain)
    pull_objects, push_contents = loop.pull_objects, loop.push_object_contents_from_iterable

    def pull_in_one(object_ids, pull_object_fn, **kwargs):
        names = _free_variables(pull_object_fn)  # Flower's ``lambda obj_id: pull_object(run_id, obj_id)``
        client, node = fleet_call(names.get("pull_object"))
        if client is None or not isinstance(names.get("run_id"), int) or not object_ids:
            return pull_objects(object_ids, pull_object_fn=pull_object_fn, **kwargs)
        pulled = pull_many(client, "/v1/fleet/pull-object", node, names["run_id"], list(object_ids))
        rest = [i for i in object_ids if i not in pulled]
        if rest:
            pulled.update(pull_objects(rest, pull_object_fn=pull_object_fn, **kwargs))
        return pulled

    def push_in_one(object_contents, push_object_fn, **kwargs):
        # Flower's ``partial(push_object, run_id, session_id)``
        client, node = fleet_call(getattr(push_object_fn, "func", None))
        args = getattr(push_object_fn, "args", ())
        if client is None or len(args) != 2:
            return push_contents(object_contents, push_object_fn=push_object_fn, **kwargs)
        contents = dict(object_contents)
        stored = push_many(client, "/v1/fleet/push-object", node, args[0], args[1], contents) if contents else set()
        rest = [(i, c) for i, c in contents.items() if i not in stored]
        if rest:
            push_contents(rest, push_object_fn=push_object_fn, **kwargs)

    push_in_one.batchable = True
    loop.pull_objects = pull_in_one
    loop.push_object_contents_from_iterable = push_in_one
