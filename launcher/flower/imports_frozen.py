"""A process's start-up imports made with Python's cyclic collector off, then kept out of its reach.

    with imports_frozen():
        from flwr.superlink.cli import flower_superlink     # no collection while its ~300k objects are made

Importing torch, Flower, FastAPI and SQLAlchemy makes hundreds of thousands of objects that live as long as the
process, and the allocations trigger collections that walk them all, again and again: ~20% of a start's CPU
(measured here: the fork server's imports and warm-up 5.0 -> 4.1 CPU-s, the SuperLink's 1.7 -> 1.4, the
SuperExec's 1.5 -> 1.1, ``flwr run``'s 1.3 -> 0.95). After the block they are frozen (gc.freeze: moved where no
collection walks them; a forked process then also keeps sharing their pages) and the collector is on again, as
it was, for what the process makes from then on. Only in our own entry points' main, before Flower runs.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def imports_frozen() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
