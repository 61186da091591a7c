"""Flower's unary protobuf routes answered without the per-layer machinery of its HTTP stack.

    install("flwr.superlink.main")   # in the SuperLink's own process, before Flower builds its app
    install("flwr.supernode.main")   # the same in a SuperNode's (launcher.flower.quick_supernode)

Every Fleet and Runtime API call (a POST of one protobuf message, answered by one) passes Flower's
middleware, most of them Starlette ``BaseHTTPMiddleware`` layers: each layer spawns a task group and a
pair of memory streams per request, and the router then scans about a hundred routes. On this machine
that machinery, not Flower's handlers, is most of the SuperLink's and the SuperNodes' CPU.

``QuickRoutes`` sits outermost among the app's middleware. A POST to one of Flower's unary protobuf
routes runs the same ``dispatch`` functions Flower's app would run, in the same order, each as a plain
await; the layers that would not act on the request (launcher.flower.http_gates) are left out as they
are in the full stack; then the same router behind the same exception middleware. Anything else
(another path or method, a middleware that is not a ``BaseHTTPMiddleware``) goes through Flower's app
as before. tests/test_flower_internals.py sends the same requests both ways and compares the answers.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from flwr.supercore.protobuf.translation import PROTOBUF_MEDIA_TYPE, PROTOBUF_REQUEST_TYPES
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response

from launcher.flower.direct_routes import direct_route
from launcher.flower.fleet_chain import CHAIN_PATH, run_chain
from launcher.flower.http_gates import Gated, gated, wrap_app_factory
from launcher.flower.object_batch import BATCH_PATHS, BATCHABLE, join_answers, split_calls

# Where Flower's stack hands a synchronous call to a worker thread (Starlette's run_in_threadpool, bound by name
# in each module); in a quick call it runs inline instead: Flower's in-memory handlers take microseconds, and the
# hand-off to a worker and back cost more than the call itself.
THREAD_HANDOFFS = ("fastapi.dependencies.utils", "fastapi.routing", "flwr.supercore.protobuf.routing",
                   "flwr.superlink.routers.fleet.node_auth")
# The calls that run inline: a round's messages, objects, heartbeats and tasks, each a lookup or a store in
# Flower's in-memory state. The rest (e.g. get-connector, which may refresh credentials over the network) keep
# the worker thread, so a slow one cannot stall the server's event loop.
INLINE_PATHS = frozenset(
    f"/v1/{api}/{call}" for api, calls in (
        ("fleet", ("pull-messages", "push-messages", "pull-object", "push-object", "confirm-message-received",
                   "send-node-heartbeat")),
        ("runtime", ("acquire-task", "send-task-heartbeat", "pull-task-input", "push-task-output", "pull-object",
                     "push-object", "confirm-message-received", "pull-messages", "push-messages")),
    ) for call in calls)
_quick_call = contextvars.ContextVar("quick_call", default=False)

Dispatch = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


def _replay(body: bytes):
    """A ``receive`` that hands every reader the whole request body (each layer's Request reads it afresh)."""

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away: the route sees what came
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def quick_paths() -> frozenset[str]:
    """The Fleet and Runtime API paths Flower's protobuf translation parses: one message in, one out."""
    return frozenset(path for method, path in PROTOBUF_REQUEST_TYPES
                     if method == "POST" and path.startswith(("/v1/fleet/", "/v1/runtime/")))


def _dispatch_of(middleware: Middleware, scope: dict) -> Dispatch | None | bool:
    """The dispatch function a layer runs on this request; None when it would not act; False when unknown."""
    cls, args, kwargs = middleware
    if cls is Gated:
        layer, when, *rest = args
        if not when(scope):
            return None
        cls, args = layer, tuple(rest)
    if not (isinstance(cls, type) and issubclass(cls, BaseHTTPMiddleware)):
        return False
    return cls(None, *args, **kwargs).dispatch_func


@dataclass(frozen=True)
class QuickRoute:
    dispatches: tuple[Dispatch, ...]  # Flower's middleware that acts on this path, outermost first
    inner: Any  # what Starlette puts between the middleware and the router, over the router

    async def answer(self, scope: dict, receive) -> Response:
        async def layer(index: int) -> Response:
            if index == len(self.dispatches):
                return await self._routed(scope, receive)
            return await self.dispatches[index](Request(scope, receive), lambda _request: layer(index + 1))

        return await layer(0)

    async def _routed(self, scope: dict, receive) -> Response:
        start: dict = {}
        chunks: list[bytes] = []

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.inner(scope, receive, capture)
        response = Response(content=b"".join(chunks), status_code=start["status"])
        response.raw_headers = list(start.get("headers", []))
        return response


class QuickRoutes:
    """ASGI middleware: Flower's unary protobuf routes answered as plain awaits (see the module's docstring)."""

    def __init__(self, app) -> None:
        self.app = app
        self._routes: dict[str, QuickRoute | bool | None] = dict.fromkeys(quick_paths())

    async def __call__(self, scope, receive, send) -> None:
        post = scope["type"] == "http" and scope.get("method") == "POST"
        if post and scope["path"] in BATCH_PATHS:
            await self._batch(scope, receive, send)
            return
        if post and scope["path"] == CHAIN_PATH:
            await self._chain(scope, receive, send)
            return
        quick = self._quick(scope) if post else None
        if quick is None:
            await self.app(scope, receive, send)
            return
        inline = _quick_call.set(scope["path"] in INLINE_PATHS)
        try:
            response = await quick.answer(scope, _replay(await _read_body(receive)))
        finally:
            _quick_call.reset(inline)
        await response(scope, receive, send)

    async def _batch(self, scope, receive, send) -> None:
        """Object pulls or pushes in one exchange (launcher.flower.object_batch): each call through its own quick
        route, in order, the event loop free between them; a call that is not batchable, or not quick here, is
        answered 404; once one is refused (401, 403: the batch's headers are every call's) the rest are too,
        unrun; a malformed batch, or one of more than MAX_BATCH_CALLS calls, is 400."""
        try:
            calls = split_calls(await _read_body(receive))
        except ValueError:
            await Response(status_code=400)(scope, receive, send)
            return
        api = scope["path"].rsplit("/", 1)[0] + "/"
        answers: list[tuple[int, bytes]] = []
        refused = 0
        for path, body in calls:
            if refused or path not in BATCHABLE or not path.startswith(api):
                answers.append((refused or 404, b""))
                continue
            answer = await self._call(scope, path, body)
            refused = answer[0] if answer[0] in (401, 403) else 0
            answers.append(answer)
            await asyncio.sleep(0)  # the other requests' turn between calls
        await Response(join_answers(answers), media_type=PROTOBUF_MEDIA_TYPE)(scope, receive, send)

    async def _chain(self, scope, receive, send) -> None:
        """A SuperNode's chained Fleet calls (launcher.flower.fleet_chain), each through its own quick route."""
        try:
            calls = split_calls(await _read_body(receive))
        except ValueError:
            await Response(status_code=400)(scope, receive, send)
            return
        answers = await run_chain(calls, lambda path, body: self._call(scope, path, body))
        await Response(join_answers(answers), media_type=PROTOBUF_MEDIA_TYPE)(scope, receive, send)

    async def _call(self, scope, path: str, body: bytes) -> tuple[int, bytes]:
        """One call of a batch or chain through its quick route (404 where there is none), run inline."""
        call = dict(scope, path=path, raw_path=path.encode())
        quick = self._quick(call)
        if quick is None:
            return 404, b""
        inline = _quick_call.set(True)
        try:
            response = await quick.answer(call, _replay(body))
            return response.status_code, getattr(response, "body", b"")
        except Exception:  # noqa: BLE001 (this call fails alone: the client falls back or fails as Flower's would)
            return 500, b""
        finally:
            _quick_call.reset(inline)

    def _quick(self, scope) -> QuickRoute | None:
        path = scope["path"]
        if path not in self._routes:
            return None
        if self._routes[path] is None:
            self._routes[path] = self._plan(scope)
        return self._routes[path] or None

    @staticmethod
    def _plan(scope) -> QuickRoute | bool:
        """This path's route and the dispatch functions that act on it; False: the full stack serves it."""
        app = scope["app"]
        dispatches = []
        for middleware in app.user_middleware:
            if middleware.cls is QuickRoutes:
                continue
            dispatch = _dispatch_of(middleware, scope)
            if dispatch is False:
                return False
            if dispatch is not None:
                dispatches.append(dispatch)
        handlers = {k: v for k, v in app.exception_handlers.items() if k not in (500, Exception)}
        # a call of a round (in-memory, inline): Flower's endpoint without the router; the rest through the router
        route = (direct_route(app, scope["path"]) if scope["path"] in INLINE_PATHS else None) or app.router
        inner = ExceptionMiddleware(AsyncExitStackMiddleware(route), handlers=handlers, debug=app.debug)
        return QuickRoute(tuple(dispatches), inner)


def quick(app):
    """``app`` (a FastAPI app not yet started) with gated middleware and QuickRoutes outermost; the same object."""
    gated(app)
    app.user_middleware.insert(0, Middleware(QuickRoutes))
    return app


def _inline_in_quick_calls(pooled):
    async def run_in_threadpool(func, *args, **kwargs):
        if _quick_call.get():
            return func(*args, **kwargs)
        return await pooled(func, *args, **kwargs)

    run_in_threadpool.pooled = pooled
    return run_in_threadpool


def install(*main_modules: str) -> None:
    """Every app the named Flower main modules (``flwr.superlink.main``, ``flwr.supernode.main``) create in this
    process from now on is made ``quick``; in a quick call, the thread hand-offs of THREAD_HANDOFFS run inline."""
    for name in THREAD_HANDOFFS:
        module = importlib.import_module(name)
        if not hasattr(module.run_in_threadpool, "pooled"):
            module.run_in_threadpool = _inline_in_quick_calls(module.run_in_threadpool)
    wrap_app_factory(main_modules, quick)
