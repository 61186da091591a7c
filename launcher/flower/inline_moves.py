"""A task's object pulls and pushes run on the task's own thread when its Runtime API calls are function calls.

    inline_object_moves(thread)   # in a client that runs its tasks itself, on ``thread`` (launcher.flower.node_tasks)

Flower's run_clientapp pulls a message's objects, and pushes its reply's, through a thread pool made for each
move (flwr.supercore.inflatable.inflatable_utils: as many threads as cores, at most its limit, shut down after):
about ten threads started and ended a task, each a clone, a stack and GIL hand-overs. In a client whose Runtime
API calls stay in its process (launcher.flower.in_node_runtime) a call is a function call, and the pool buys no
overlap. Here a pool that module makes on ``thread`` runs each submitted call at once, in order, on that thread:
Flower's own functions run unchanged (their retries, back-off, early stop and errors, a failed call's exception
raised from its future as a worker's would be); a pool made on any other thread is Flower's.
tests/test_flower_internals.py checks that the module still makes its pools this way.
"""

from __future__ import annotations

import concurrent.futures
import threading
import types


class InlineExecutor(concurrent.futures.Executor):
    """A pool whose submit runs the call before it returns; its future is done."""

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - a pool's worker hands every exception to the future
            future.set_exception(err)
        return future


class _Futures:
    """concurrent.futures with ``ThreadPoolExecutor`` inline on one thread; every other name is the module's."""

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread

    def ThreadPoolExecutor(self, *args, **kwargs) -> concurrent.futures.Executor:  # noqa: N802 - the name it stands in for
        if threading.current_thread() is self.thread:
            return InlineExecutor()
        return concurrent.futures.ThreadPoolExecutor(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(concurrent.futures, name)


def inline_object_moves(thread: threading.Thread) -> None:
    """Object moves made on ``thread`` (the thread that runs this process's tasks) run on it, one by one."""
    import flwr.supercore.inflatable.inflatable_utils as objects

    objects.concurrent = types.SimpleNamespace(futures=_Futures(thread))  # the module's ``concurrent`` name
