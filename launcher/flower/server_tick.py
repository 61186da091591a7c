"""Flower's HTTP servers (uvicorn) wake once a second instead of ten times, and at once when told to stop.

    from launcher.flower.server_tick import install
    install()                      # before Flower builds its uvicorn.Server in this process

uvicorn's ``Server.main_loop`` sleeps 0.1 s between ticks; a tick refreshes the Date header (once a
second) and looks at ``should_exit``. A SuperNode's Runtime API server does nothing else while it waits, and
fifty of them idle on one host cost more CPU than their requests (issue 25's profile: 35% of a SuperNode's
samples). Here a tick comes every TICK_SECONDS, refreshing the header each time, and setting
``should_exit`` (uvicorn's signal handler does, and Flower's SuperNode does from its main thread) wakes
the loop at once, so a stop is as quick as before. tests/test_flower_internals.py pins the shape of uvicorn's
loop this relies on.
"""

from __future__ import annotations

import asyncio

import uvicorn

TICK_SECONDS = 1.0


class _StopFlag:
    """``Server.should_exit`` as a property whose setting wakes the server's loop (from any thread)."""

    def __get__(self, server, owner=None):
        if server is None:
            return self
        return server.__dict__.get("_fl_should_exit", False)

    def __set__(self, server, value) -> None:
        server.__dict__["_fl_should_exit"] = value
        wake = server.__dict__.get("_fl_wake")
        if value and wake is not None:
            wake()


async def _main_loop(server: uvicorn.Server) -> None:
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(woken.set)
        except RuntimeError:  # the loop has closed: nothing left to wake
            pass

    server.__dict__["_fl_wake"] = wake
    while not await server.on_tick(0):  # counter 0: the Date header is refreshed on every tick
        timer = loop.call_later(TICK_SECONDS, woken.set)
        await woken.wait()
        timer.cancel()
        woken.clear()


def install() -> None:
    """Every uvicorn.Server of this process ticks every TICK_SECONDS and wakes when its stop flag is set."""
    if uvicorn.Server.main_loop is _main_loop:
        return
    uvicorn.Server.should_exit = _StopFlag()
    uvicorn.Server.main_loop = _main_loop
