"""Flower's Fleet and Runtime routes called without FastAPI's per-request routing and dependency solving.

    inner = direct_route(app, "/v1/fleet/pull-messages") or app.router   # launcher.flower.quick_http's plan

A Fleet or Runtime call (a message, an object, a confirmation, a heartbeat) passes, after Flower's middleware,
FastAPI's router (its included routers matched anew on every request, API versions compared with ``packaging``),
the dependency solver (the protobuf request, the state, the task its token names, the router's version check) and
a thread hand-off, to reach a function of two to four arguments; on this machine that machinery is about a third of
the SuperLink's CPU. ``direct_route`` finds the function Flower's route runs at a path (its endpoint, unwrapped
from its ProtobufRoute) and checks that every parameter is one of the dependencies RESOLVED knows (the protobuf
request the translation middleware parsed, the LinkState, the Runtime state and handlers, the task authenticated
by its token header through Flower's own ``authenticate_task``) and that the route's other dependencies are version
checks. The ASGI app it returns runs the version checks that can refuse, resolves those parameters once each by
Flower's own functions, calls the endpoint, and leaves its answer where Flower's ProtobufRoute does
(``request.state.protobuf_response``, serialized by Flower's translation middleware on the way out); an exception
leaves it as Flower's route would, to the same exception middleware. A route of any other shape (a SuperExec's
signed AcquireTask, a tracing dependency, dependency overrides): None, and the router serves it as before.
tests/test_flower_internals.py compares the answers both ways.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable

from flwr.supercore.constant import TASK_TOKEN_HEADER
from flwr.supercore.dependencies.runtime import get_runtime_handlers, get_runtime_state, get_task
from flwr.supercore.dependencies.task import authenticate_task
from flwr.supercore.dependencies.version import VersionDependency
from flwr.supercore.protobuf.translation import get_protobuf_request
from flwr.superlink.dependencies.linkstate import get_linkstate
from starlette.requests import Request
from starlette.responses import Response


def _task(request: Request, resolved: dict):
    """Flower's get_task: the task the request's one token header names (its own check refuses anything else)."""
    return authenticate_task(request, request.headers.get(TASK_TOKEN_HEADER), _value(get_runtime_state, request,
                                                                                     resolved))


# Flower's dependency function -> how its value is had from the request (each once a request, as FastAPI caches)
RESOLVED: dict[Callable, Callable[[Request, dict], object]] = {
    get_protobuf_request: lambda request, resolved: get_protobuf_request(request),
    get_linkstate: lambda request, resolved: get_linkstate(request),
    get_runtime_state: lambda request, resolved: get_runtime_state(request),
    get_runtime_handlers: lambda request, resolved: get_runtime_handlers(request),
    get_task: _task,
}


def _value(dependency: Callable, request: Request, resolved: dict):
    if dependency not in resolved:
        resolved[dependency] = RESOLVED[dependency](request, resolved)
    return resolved[dependency]


def _flat(routes):
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)  # FastAPI's included routers
        yield from _flat(inner) if inner is not None else [route]


def _include_dependencies(routes, target) -> list | None:
    """The dependencies given where ``target``'s router was included (FastAPI's include contexts), or None when
    ``target`` is not under ``routes``."""
    for route in routes:
        if route is target:
            return []
        router = getattr(route, "original_router", None)
        if router is not None and (below := _include_dependencies(router.routes, target)) is not None:
            return list(getattr(getattr(route, "include_context", None), "dependencies", None) or []) + below
    return None


def _parameters(endpoint: Callable) -> dict[str, Callable] | None:
    """The endpoint's parameters by name -> the dependency function each is, when RESOLVED knows them all."""
    hints = typing.get_type_hints(endpoint, include_extras=True)
    out = {}
    for name in inspect.signature(endpoint).parameters:
        dependencies = [getattr(m, "dependency", None) for m in getattr(hints.get(name), "__metadata__", ())]
        if len(dependencies) != 1 or dependencies[0] not in RESOLVED:
            return None
        out[name] = dependencies[0]
    return out


def direct_route(app, path: str):
    """An ASGI app answering POSTs to ``path`` as Flower's route there would, or None (see the module's docstring;
    None too where the app is not of the shape this knows, whatever in it is not)."""
    try:
        return _direct_route(app, path)
    except Exception:  # noqa: BLE001 (a shape this does not know: the router serves the path, as Flower's app does)
        return None


def _direct_route(app, path: str):
    from flwr.supercore.protobuf.routing import ProtobufRoute

    found = [route for route in _flat(app.router.routes)
             if isinstance(route, ProtobufRoute) and route.path == path and "POST" in route.methods]
    if len(found) != 1 or app.dependency_overrides:
        return None
    route = found[0]
    endpoint = getattr(route.endpoint, "__wrapped__", None)
    included = _include_dependencies(app.router.routes, route)
    if endpoint is None or inspect.iscoroutinefunction(endpoint):
        return None
    parameters = _parameters(endpoint)
    if included is None or parameters is None:
        return None
    checks = included + list(route.dependencies)  # FastAPI's order (a route's own hold its router's)
    if not all(isinstance(d.dependency, VersionDependency) for d in checks):
        return None
    refusing = [d.dependency for d in checks if d.dependency._reject_incompatible]  # noqa: SLF001 (pinned)
    return DirectRoute(endpoint, parameters, refusing)


class DirectRoute:
    """ASGI: Flower's endpoint called with its parameters resolved by Flower's own dependency functions."""

    def __init__(self, endpoint: Callable, parameters: dict[str, Callable], checks: list[Callable]) -> None:
        self.endpoint, self.parameters, self.checks = endpoint, parameters, checks

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        for check in self.checks:
            check(request)
        resolved: dict = {}
        arguments = {name: _value(dependency, request, resolved) for name, dependency in self.parameters.items()}
        request.state.protobuf_response = self.endpoint(**arguments)
        await Response()(scope, receive, send)
