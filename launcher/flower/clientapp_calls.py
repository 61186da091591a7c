"""Every ClientApp call of this process through one wrapper: how a user's app gets its round lines.

    around_every_call(lambda call, message, context: logged_task(log, call, message, context))
    # then Flower's run_clientapp runs the app as ever; each call(message=..., context=...) is wrapped

Flower 1.41 runs a task by calling the app object (``ClientApp.__call__(self, message, context)``);
wrapping that method in the task process is the one way in that needs no change to the user's app.
Pinned by tests/test_flower_internals.py.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.clientapp import ClientApp


def around_every_call(wrap: Callable) -> None:
    """``wrap(call, message, context)`` runs instead of each ClientApp call; ``call(message=, context=)`` is it."""
    call = ClientApp.__call__

    def wrapped(self, message, context):
        return wrap(lambda **kw: call(self, **kw), message, context)

    ClientApp.__call__ = wrapped
