"""Flower's Fleet routes of a round called without FastAPI's per-request routing and dependency solving.

    inner = direct_route(app, "/v1/fleet/pull-messages") or app.router   # launcher.flower.quick_http's plan

A Fleet call at the SuperLink (pull or push a message, an object, a confirmation, a heartbeat) passes, after
Flower's middleware, FastAPI's router (its included routers matched anew on every request, API versions compared
with ``packaging``), the dependency solver (the protobuf request, the LinkState, the router's version check) and a
thread hand-off, to reach a function of two arguments; on this machine that machinery is about a third of the
SuperLink's CPU. For the paths in DIRECT, ``direct_route`` finds the function Flower's route runs (its Fleet
router's endpoint, unwrapped from its ProtobufRoute) and checks that the route takes exactly what it takes today:
``request`` (the protobuf request the translation middleware parsed) and ``state`` (``get_linkstate``), under
router dependencies that only look at versions and never refuse (``VersionDependency(reject_incompatible=False)``).
The ASGI app it returns calls that function with those two and leaves its answer where Flower's ProtobufRoute does
(``request.state.protobuf_response``, serialized by Flower's translation middleware on the way out); an exception
leaves it as Flower's route would leave it, to the same exception middleware. Any other shape: None, and the
router serves the path as before. tests/test_flower_internals.py compares the answers both ways.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

DIRECT = frozenset(f"/v1/fleet/{call}" for call in (
    "pull-messages", "push-messages", "pull-object", "push-object", "confirm-message-received",
    "send-node-heartbeat"))


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


def _takes_request_and_linkstate(endpoint: Callable) -> bool:
    from flwr.supercore.protobuf.translation import get_protobuf_request
    from flwr.superlink.dependencies.linkstate import get_linkstate

    parameters = inspect.signature(endpoint).parameters
    if list(parameters) != ["request", "state"]:
        return False
    hints = typing.get_type_hints(endpoint, include_extras=True)
    wanted = {"request": get_protobuf_request, "state": get_linkstate}
    for name, dependency in wanted.items():
        metadata = getattr(hints.get(name), "__metadata__", ())
        if [getattr(m, "dependency", None) for m in metadata] != [dependency]:
            return False
    return True


def _only_version_checks(dependencies) -> bool:
    from flwr.supercore.dependencies.version import VersionDependency

    return all(isinstance(d.dependency, VersionDependency) and not d.dependency._reject_incompatible  # noqa: SLF001
               for d in dependencies)


def direct_route(app, path: str):
    """An ASGI app answering POSTs to ``path`` as Flower's route there would, or None (see the module's docstring)."""
    from fastapi.routing import APIRoute

    if path not in DIRECT:
        return None
    found = [route for route in _flat(app.router.routes)
             if isinstance(route, APIRoute) and route.path == path and "POST" in route.methods]
    if len(found) != 1:
        return None
    route = found[0]
    endpoint = getattr(route.endpoint, "__wrapped__", None)
    included = _include_dependencies(app.router.routes, route)
    if endpoint is None or included is None or app.dependency_overrides or not _takes_request_and_linkstate(endpoint):
        return None
    if not _only_version_checks(list(route.dependencies) + included):  # (the route's own include its router's)
        return None
    return DirectRoute(endpoint)


class DirectRoute:
    """ASGI: Flower's Fleet endpoint called with the parsed protobuf request and the LinkState."""

    def __init__(self, endpoint: Callable) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope, receive, send) -> None:
        from flwr.supercore.protobuf.translation import get_protobuf_request
        from flwr.superlink.dependencies.linkstate import get_linkstate

        request = Request(scope, receive)
        request.state.protobuf_response = self.endpoint(request=get_protobuf_request(request),
                                                        state=get_linkstate(request))
        await Response()(scope, receive, send)
