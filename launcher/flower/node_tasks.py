"""A SuperNode that runs its own ClientApp tasks: one process per client of the built-in app.

    python -m launcher.flower.quick_supernode --insecure --superlink 127.0.0.1:9092 --isolation process \
        --port 9094 --node-config "..." --tasks-in-node simulator.client_app:preload --torch-threads 1

Flower's SuperNode with ``--isolation process`` waits for another process (flower-superexec, or fl-launch's
launcher.flower.warm_clientapp with its task worker) to ask its Runtime API for tasks, and every call of a task
then crosses a socket and both HTTP stacks. Here a thread of the SuperNode's own process asks, and runs each task
with Flower's own ``run_clientapp``, whose Runtime API client reaches Flower's handlers in this same process
(launcher.flower.in_node_runtime: a round's calls go to the handlers Flower's routes call, the rest through Flower's
app; no socket, no HTTP, no second and third process with their own copies of the model and data). Only for the
built-in app, preloaded once: a user's ``--app`` keeps a fresh process per task, as under Flower's own SuperExec.

What a task can do to the client: an exception is the task's failed reply (run_clientapp catches it); Flower's
``flwr_exit`` at a task's end, or the app's ``sys.exit``, ends the task and not the node (only the task's own exit
handlers run, never the SuperNode's); a crash of the interpreter ends the client's one process, which the supervisor
restarts and logs as it does any client's; a process whose memory grew by more than GROWTH_LIMIT_MIB since its first
task exits once that task's reply is sent, saying so, and is restarted; it tells the server before its reply leaves
the app (contract.lost_nodes.start_renewal), so the next round waits for its new node: the client loses no round.
Each task's line (as the task host writes it) and Flower's log records made by the task go to client_<i>/worker.log;
the SuperNode's own stay in supernode.log.
tests/test_flower_internals.py pins the names of run_clientapp's module this relies on.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import flwr.supernode.runtime.run_clientapp as run_clientapp_module
from flwr.supercore.logger import FLOWER_LOGGER, console_handler

from launcher.flower import task_output
from launcher.flower.clientapp_calls import around_every_call
from launcher.flower.in_node_runtime import InNodeRuntimeClient, InNodeTransport
from launcher.flower.inline_moves import inline_object_moves
from launcher.flower.memory_growth import EXIT_GREW, MemoryGrowth, give_back_task_heap
from launcher.flower.task_worker import TaskEnd, TaskEnded, install_once


def _exit_is_an_error(call, message, context):
    """A ClientApp call in which the app's ``sys.exit`` is an exception: Flower's run_clientapp catches only
    those, and then replies with the error and ends the task through flwr_exit (its exit handlers: the heartbeat
    stopped, the output pushed). A SystemExit passing run_clientapp would leave the task's heartbeat running and
    no reply, and the SuperNode waiting for one for good."""
    try:
        return call(message=message, context=context)
    except SystemExit as exit_:
        raise RuntimeError(f"the ClientApp called sys.exit({exit_.code!r})") from exit_


class TaskRecords(logging.Filter):
    """Flower's log records made by one thread (``keep``: only those; else all but those)."""

    def __init__(self, thread: threading.Thread, keep: bool) -> None:
        super().__init__()
        self.thread, self.keep = thread, keep

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.thread == self.thread.ident) == self.keep


class NodeTasks:
    """Runs this node's tasks in this process, one at a time, on the thread that calls ``run``."""

    def __init__(self, worker_log: Path, runtime_api: str, on_leaving: Callable[[int], None] = lambda node: None,
                 ) -> None:
        self.worker_log, self.runtime_api = worker_log, runtime_api  # the API's address: in this process, a name
        self.growth = MemoryGrowth(give_back=False)  # the next task reuses what this one freed (keep_task_heap)
        self._ran_since_idle = False
        self.leave_note = ""  # set once the process should leave after the reply in hand is sent
        self.on_leaving = on_leaving  # told this node's id before the reply leaves the app, when it will leave
        self._exit_handlers: list = []

    def install(self, app, thread: threading.Thread) -> None:
        """Flower's run_clientapp in this process: its client into ``app``, its exit and signal handling the
        task's own (a thread may not set signal handlers; the SuperNode keeps its own), its FAB unzipped once."""
        InNodeRuntimeClient.transport = InNodeTransport(app)
        run_clientapp_module.RuntimeHttpClient = InNodeRuntimeClient
        run_clientapp_module.register_signal_handlers = self._register
        run_clientapp_module.flwr_exit = self._end
        run_clientapp_module.install_from_fab = install_once(run_clientapp_module.install_from_fab)
        task_output.install()  # (its objects move one call each: a call here is a function call, no batch needed)
        inline_object_moves(thread)  # and on the task's thread, not a pool's threads made for each move
        around_every_call(_exit_is_an_error)
        around_every_call(self._judge_growth)
        self._route_logs(thread)

    def _judge_growth(self, call, message, context):
        """A ClientApp call, then this process's memory against after its first call, before the reply is handed
        to the SuperNode: a node that will leave says so (``on_leaving``) before the server can have its reply,
        so that the server's next round waits for its restart instead of going on without it."""
        try:
            return call(message=message, context=context)
        finally:
            if not self.leave_note and (grown := self.growth.after_task()):
                self.leave_note = f"client process restarted once its reply is sent: {grown}"
                self.on_leaving(message.metadata.dst_node_id)

    def _route_logs(self, thread: threading.Thread) -> None:
        for handler in FLOWER_LOGGER.handlers:
            handler.addFilter(TaskRecords(thread, keep=False))
        to_file = logging.FileHandler(self.worker_log)
        to_file.setLevel(console_handler.level)  # what the task host's log showed: INFO and up, Flower's default
        to_file.setFormatter(logging.Formatter("%(levelname)-8s: %(message)s"))
        to_file.addFilter(TaskRecords(thread, keep=True))
        FLOWER_LOGGER.addHandler(to_file)

    def _register(self, event_type=None, exit_message=None, grpc_servers=None, bckg_threads=None,
                  exit_handlers=None) -> None:
        self._exit_handlers = list(exit_handlers or [])

    def _end(self, code: int, message: str | None = None, event_type=None, event_details=None, *,
             emit_telemetry: bool = True) -> None:
        """Flower's flwr_exit for a task on this thread: the task's exit handlers (last registered first), then
        TaskEnded; never the process's exit."""
        if message and not 0 <= code < 100:
            FLOWER_LOGGER.error("Exit Code: %s\n%s", code, message)
        self._run_exit_handlers()
        raise TaskEnded(code)

    def _run_exit_handlers(self) -> None:
        """The task's exit handlers, last registered first, each once."""
        handlers, self._exit_handlers = self._exit_handlers, []
        for handler in reversed(handlers):
            try:
                handler()
            except Exception:  # noqa: BLE001 (as Flower's: an exit handler's failure does not stop the others)
                pass

    def ready(self) -> None:
        """Nothing to start: the task runs on this thread."""

    def idle(self) -> None:
        """Called on the tasks' thread when no task came for a while: the heap the last tasks freed goes back to
        the kernel."""
        if self._ran_since_idle:
            give_back_task_heap()
            self._ran_since_idle = False

    def run(self, token: str) -> TaskEnd:
        before, leaving = time.thread_time(), self.leave_note
        self._ran_since_idle = True
        try:
            run_clientapp_module.run_clientapp(runtime_api_address=self.runtime_api, token=token, insecure=True,
                                               runtime_dependency_install=False)
            code = 0
        except TaskEnded as ended:
            code = ended.code
        except SystemExit as exit_:  # outside the app's call (its own is an error reply): the task ends, the node stays
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception:  # noqa: BLE001 (Flower's run_clientapp catches the app's; anything else fails the task)
            FLOWER_LOGGER.exception("fl-launch: the task failed outside its ClientApp")
            code = 1
        finally:
            self._run_exit_handlers()  # a task that did not end through flwr_exit: its heartbeat stopped all the same
        cpu = time.thread_time() - before
        return TaskEnd(code, cpu, self.leave_note if self.leave_note != leaving else "")

    def leave_if_grown(self) -> None:
        """Called by the SuperNode's loop before each pull, i.e. once the last task's reply is sent."""
        if self.leave_note:
            print(f"fl-launch: {self.leave_note}", file=sys.stderr, flush=True)
            os._exit(EXIT_GREW)
