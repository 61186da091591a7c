"""Flower's HTTP middleware, each layer run only on the requests it acts on.

    install("flwr.superlink.main")   # in the SuperLink's own process, before Flower builds its app
    install("flwr.supernode.main")   # the same in a SuperNode's (launcher.flower.quick_supernode)
    gated(app)                       # one FastAPI app that has not served a request yet

Flower 1.41's SuperLink wraps every request in nine ``BaseHTTPMiddleware`` layers and its SuperNode in
three (1.42: eight and two, its Runtime tracing layer gone, so that gate meets nothing); each layer costs
a task group and a pair of memory streams per request, whether it acts or not.
Most act on a few paths only: the Control API's four on ``/v1/control/``, node authentication and the
Fleet event log on ``/v1/fleet/`` (the log only with a plugin configured), tracing only with
``FLWR_TRACING_ENABLED=1``. Each of those now sees exactly the requests whose ``dispatch`` would do more
than ``call_next``; the others skip it. The error translator, the protobuf translation and any middleware
not named in GATES run on every request, as before. tests/test_flower_internals.py pins each gate
against the condition in Flower's own ``dispatch``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from starlette.middleware import Middleware
from starlette.requests import Request

CONTROL = "/v1/control/"
FLEET = "/v1/fleet/"


def _path(scope: dict) -> str:
    return Request(scope).url.path  # what each dispatch tests (request.url.path)


def on_control(scope: dict) -> bool:
    return _path(scope).startswith(CONTROL)


def on_fleet(scope: dict) -> bool:
    return _path(scope).startswith(FLEET)


def on_fleet_with_event_log(scope: dict) -> bool:
    app = scope.get("app")
    plugin = getattr(getattr(app, "state", None), "fleet_event_log_plugin", None) if app is not None else None
    return plugin is not None and on_fleet(scope)


def tracing_enabled(_scope: dict) -> bool:
    return os.getenv("FLWR_TRACING_ENABLED") == "1"


# Flower's middleware class (module.name) -> when it must see a request
GATES: dict[str, Callable[[dict], bool]] = {
    "flwr.superlink.routers.control.middlewares.ControlSensitiveResponseMiddleware": on_control,
    "flwr.superlink.routers.control.middlewares.ControlAuthenticationMiddleware": on_control,
    "flwr.superlink.routers.control.middlewares.ControlLicenseMiddleware": on_control,
    "flwr.superlink.routers.control.middlewares.ControlEventLogMiddleware": on_control,
    "flwr.superlink.routers.fleet.node_auth.NodeAuthMiddleware": on_fleet,
    "flwr.superlink.routers.fleet.middlewares.FleetEventLogMiddleware": on_fleet_with_event_log,
    "flwr.supercore.routers.runtime.tracing.RuntimeTracingMiddleware": tracing_enabled,  # Flower 1.41 only
}


def qualified_name(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Gated:
    """ASGI: ``layer`` (a middleware over ``app``) for the requests ``when(scope)`` admits, ``app`` for the rest."""

    def __init__(self, app, layer: type, when: Callable[[dict], bool], *args, **kwargs) -> None:
        self.app = app
        self.layer = layer(app, *args, **kwargs)
        self.when = when

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and not self.when(scope):
            await self.app(scope, receive, send)
        else:
            await self.layer(scope, receive, send)


def gate(middleware: Middleware) -> Middleware:
    """One of Flower's middleware entries, gated when GATES names its class (else as it was)."""
    cls, args, kwargs = middleware
    when = GATES.get(qualified_name(cls)) if isinstance(cls, type) else None
    return middleware if when is None else Middleware(Gated, cls, when, *args, **kwargs)


def gated(app):
    """``app`` (a FastAPI app not yet started) with its middleware gated; the same object."""
    app.user_middleware = [gate(m) for m in app.user_middleware]
    return app


def wrap_app_factory(main_modules, transform) -> None:
    """Every FastAPI app the named Flower main modules create in this process from now on is passed through
    ``transform`` (once: a module whose ``create_app`` already applies it is left alone)."""
    for name in main_modules:
        module = importlib.import_module(name)
        create = module.create_app
        if transform in getattr(create, "transforms", ()):
            continue

        def create_transformed(*args, _create=create, **kwargs):
            return transform(_create(*args, **kwargs))

        create_transformed.transforms = (*getattr(create, "transforms", ()), transform)
        module.create_app = create_transformed


def install(*main_modules: str) -> None:
    """Every app the named Flower main modules (``flwr.superlink.main``, ``flwr.supernode.main``) create in this
    process from now on gets gated middleware."""
    wrap_app_factory(main_modules, gated)
