"""A client of Flower's SuperNode Runtime API whose calls stay in the SuperNode's own process.

    InNodeRuntimeClient.transport = InNodeTransport(app)    # Flower's SuperNode app, made in this process
    client = InNodeRuntimeClient.from_server_address(server_address="127.0.0.1:9094", insecure=True,
                                                     root_certificates=None, interceptors=[...])
    client.AcquireTask(AcquireTaskRequest(...))   # Flower's handler, called as its route calls it

A task of the built-in app runs on a thread of its SuperNode (launcher.flower.node_tasks); Flower's run_clientapp
makes about ten Runtime API calls a task, each a protobuf message to serialize, an HTTP request to build, Flower's
middleware and router (FastAPI's dependency solving) to pass, and the same back. Here a call of a task's round
(DIRECT: acquire, heartbeat, input, messages, objects, confirm, output) goes to the handler Flower's route would
call, with the same arguments: the request, the node's state from the app's state factory, the app's handlers,
and the task that the call's token names (``state.get_task_by_token``, as Flower's token check does). Everything
else takes Flower's app through InNodeTransport (no socket: the same ASGI app, middleware, token check and
handlers, the request's bytes as sent): another call, a call whose token names no task, a handler that raises
(its refusal made and translated by Flower's own stack; a handler that refuses has at most recorded a
processing time or opened a session, which the call through the app does again), a route whose dependencies
are not the ones DIRECT gives (launcher.flower.direct_routes checks each route's shape once), a SuperExec secret
set (its signed AcquireTask), tracing enabled (its spans). tests/test_flower_internals.py runs a task's calls
both ways against Flower's own app and compares the answers and the state they leave.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import httpx
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supercore.servicer.runtime import runtime_handlers as core_handlers

from launcher.flower.direct_routes import direct_route
from launcher.flower.http_gates import tracing_enabled

# path -> how Flower's route calls its handler: (handlers of the app, state, task) -> handler(request, ...)
Handler = Callable[[object, object, object, object], object]
DIRECT: dict[str, Handler] = {
    "/v1/runtime/acquire-task": lambda h, request, state, task: h.acquire_task(request, state),
    "/v1/runtime/send-task-heartbeat": lambda h, request, state, task: core_handlers.send_task_heartbeat(
        request, state, task),
    "/v1/runtime/pull-task-input": lambda h, request, state, task: h.pull_task_input(request, state, task),
    "/v1/runtime/push-task-output": lambda h, request, state, task: h.push_task_output(request, state, task),
    "/v1/runtime/pull-messages": lambda h, request, state, task: h.pull_messages(request, state, task),
    "/v1/runtime/push-messages": lambda h, request, state, task: h.push_messages(request, state, task),
    "/v1/runtime/pull-object": lambda h, request, state, task: h.pull_object(request, state, task),
    "/v1/runtime/push-object": lambda h, request, state, task: h.push_object(request, state, task),
    "/v1/runtime/confirm-message-received": lambda h, request, state, task: h.confirm_message_received(
        request, state, task),
}
NO_TASK_NEEDED = frozenset({"/v1/runtime/acquire-task"})  # a SuperExec's call: no task token (its own auth instead)
# routes with a dependency direct_routes does not resolve, each checked here: the SuperExec's signed AcquireTask
# (no secret set), push-task-output's tracing (tracing off)
CHECKED_HERE = frozenset({"/v1/runtime/acquire-task", "/v1/runtime/push-task-output"})
_shape_known: dict[tuple[int, str], bool] = {}  # (app, path) -> its route takes what DIRECT gives (direct_routes)


def _route_shape_known(app, path: str) -> bool:
    key = (id(app), path)
    if key not in _shape_known:
        _shape_known[key] = path in CHECKED_HERE or direct_route(app, path) is not None
    return _shape_known[key]


class InNodeTransport(httpx.BaseTransport):
    """httpx's transport into an ASGI app of this process: each calling thread runs the app on its own event loop
    (a task's calls, and its heartbeat thread's), as the server's loop would, with the request's bytes as sent."""

    def __init__(self, app) -> None:
        self.app = app
        self._local = threading.local()

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
        return loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        url = request.url
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
                 "scheme": url.scheme, "path": url.path, "raw_path": url.raw_path.split(b"?", 1)[0],
                 "query_string": url.query, "root_path": "", "headers": [(k.lower(), v) for k, v in
                                                                         request.headers.raw],
                 "client": ("127.0.0.1", 0), "server": (url.host, url.port or 80)}
        start: dict = {}
        chunks: list[bytes] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        self._loop().run_until_complete(self.app(scope, receive, send))
        return httpx.Response(start.get("status", 500), headers=start.get("headers", []), content=b"".join(chunks),
                              request=request)


def direct_answer(app, path: str, request, token: str | None):
    """What Flower's route at ``path`` answers, from its handler called in this thread; None where the call must
    take the app instead (see the module's docstring)."""
    call = DIRECT.get(path)
    state_factory = getattr(app.state, "runtime_state_factory", None)
    if call is None or state_factory is None or tracing_enabled({}) or not _route_shape_known(app, path):
        return None
    if path in NO_TASK_NEEDED:
        if getattr(app.state, "superexec_auth_secret", None) is not None:
            return None
        state, task = state_factory.state(), None
    else:
        if not token:
            return None
        state = state_factory.state()
        task = state.get_task_by_token(token)
        if task is None:
            return None
    try:
        return call(app.state.runtime_handlers, request, state, task)
    except Exception:  # noqa: BLE001 (Flower's stack makes and translates the refusal: the call goes through it)
        return None


class InNodeRuntimeClient(RuntimeHttpClient):
    """Flower's Runtime API client, its calls answered in this process: DIRECT ones by Flower's handlers, the rest
    by Flower's app through the class's ``transport`` (one for the process: its event loops are per thread)."""

    transport: InNodeTransport | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        timeout = self._client.timeout
        self._client.close()
        self._client = httpx.Client(transport=self.transport, timeout=timeout, follow_redirects=True)
        self._token = next((i._token for i in self._interceptors  # noqa: SLF001 (pinned by test_flower_internals)
                            if isinstance(i, RuntimeTokenHttpInterceptor)), None)

    def _unary_unary(self, *, path: str, rpc_method: str, request, response_type, timeout: float | None = None):
        answer = direct_answer(self.transport.app, path, request, self._token)
        if answer is not None:
            return answer
        return super()._unary_unary(path=path, rpc_method=rpc_method, request=request, response_type=response_type,
                                    timeout=timeout)
