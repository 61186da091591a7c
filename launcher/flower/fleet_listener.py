"""The SuperLink's Fleet API on a second address, for nodes that connect directly (fl-launch --server-address).

    listen_also("192.168.1.20", 41234)   # in the SuperLink's own process, before Flower starts its server

Flower's SuperLink serves its Fleet, Control and Runtime APIs from one HTTP server on ``--host``/``--port``
(here 127.0.0.1). This makes that same server (one app, one state, the same TLS certificate) listen on a
second socket too, at the address devices reach, where only Fleet API paths (``/v1/fleet/``) are served:
anything else asked there (the Control API that registers nodes and submits runs, the Runtime API that
hands out tasks) is answered 404 without reaching Flower's app. The Control and Runtime APIs stay on
127.0.0.1 only. Flower starts its server with ``uvicorn.run`` in flwr.superlink.cli.flower_superlink;
that module's ``uvicorn`` is replaced by one whose ``run`` binds both sockets (tests/test_flower_internals.py
pins the call).
"""

from __future__ import annotations

import importlib
import logging
import socket
import sys

import uvicorn
from starlette.responses import PlainTextResponse

from launcher.flower.http_gates import FLEET

SUPERLINK_CLI = "flwr.superlink.cli.flower_superlink"
STARTUP_FAILURE = 3  # as uvicorn.run exits when its server did not start


class FleetOnlyOn:
    """ASGI: requests that came in on the socket bound to ``address`` reach ``app`` only for Fleet API paths."""

    def __init__(self, app, address: tuple[str, int]) -> None:
        self.app = app
        self.address = address

    def admits(self, scope: dict) -> bool:
        if scope["type"] not in ("http", "websocket"):
            return True  # lifespan: the app's own start and stop
        server = scope.get("server")
        return server is None or tuple(server[:2]) != self.address or scope["path"].startswith(FLEET)

    async def __call__(self, scope, receive, send) -> None:
        if self.admits(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008})


def bind(host: str, port: int) -> socket.socket:
    """A listening socket's bind, as uvicorn makes its own (address reuse, inheritable)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class _UvicornAlsoOn:
    """uvicorn, but ``run`` serves the app on its own host and port and on ``host``:``port`` (Fleet only)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __getattr__(self, name: str):
        return getattr(uvicorn, name)

    def run(self, app, **kwargs) -> None:
        public = bind(self.host, self.port)
        config = uvicorn.Config(FleetOnlyOn(app, tuple(public.getsockname()[:2])), **kwargs)
        server = uvicorn.Server(config)
        host, port = public.getsockname()[:2]
        logging.getLogger("uvicorn.error").info("Fleet API only, for nodes that connect directly: also on %s:%s",
                                                host, port)
        try:
            server.run(sockets=[config.bind_socket(), public])
        except KeyboardInterrupt:
            pass
        if not server.started:
            sys.exit(STARTUP_FAILURE)


def listen_also(host: str, port: int) -> None:
    """Flower's SuperLink, started in this process from now on, also listens on ``host``:``port`` for Fleet calls."""
    module = importlib.import_module(SUPERLINK_CLI)
    module.uvicorn = _UvicornAlsoOn(host, port)
