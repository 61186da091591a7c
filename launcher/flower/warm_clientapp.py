"""A long-lived process that runs a SuperNode's ClientApp tasks without a fresh Python each.

    python -m launcher.flower.warm_clientapp --runtime-api 127.0.0.1:9094 \
        --node-config client_0/node_config.toml --preload simulator.client_app:preload

It stands where Flower's ``flower-superexec`` stands for a SuperNode started with
``--isolation process``: it asks the SuperNode's Runtime API for the next task and
runs it with Flower's own ``run_clientapp``. The difference is the process: torch,
the app and the node's data are imported once (``--preload``), and tasks run in a worker
child forked from this process (launcher.flower.task_worker), sharing that memory
copy-on-write: one worker serves all the built-in app's tasks, a user's ``--app`` gets a
fresh one per task. One task runs at a time; SIGTERM stops the current task and this process. Between tasks it waits
on the node's ``worker`` bell (contract.wakeups), which the SuperNode rings when it pulls
a message, and asks anyway every IDLE_POLL seconds (UNRUNG_POLL when it could not bind the
bell). A task runs only while it holds one of the host's compute slots (one per core:
launcher.flower.compute_slots; a client given a GPU, --gpu: one of that GPU's floor(1/F)), and only once its
SuperNode has pulled the task's message (launcher.flower.pull_lock: on a slow link a task is visible
before its bytes are in); when it ends, this process rings the SuperNode's bell, which is waiting to send
the reply.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import signal
import sys
import time
from typing import Protocol

from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.constant import TaskType
from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient

from contract.run_settings import node_paths
from contract.wakeups import WakeupSocket, wake
from launcher.flower.compute_slots import ComputeSlots, host_slots
from launcher.flower.config_args import load_node_config
from launcher.flower.plain_logs import colour_only_on_a_terminal
from launcher.flower.pull_lock import PullLock
from launcher.flower.task_claim import kept_claimed
from launcher.flower.task_worker import TaskEnd, TaskWorker

# The SuperNode rings the worker bell whenever it has pulled a message (the only way a task appears:
# launcher.flower.quick_supernode); the poll is a safety net, each one a request to the SuperNode. A poll that
# meets the connection closed by the SuperNode's keep-alive timeout is sent again on a fresh one (Flower's
# retries; SIGPIPE is not fatal here: issue 24).
IDLE_POLL = 30.0
UNRUNG_POLL = 0.1  # when the bell could not be bound

_stopping = False
_worker: TaskWorker | None = None
_bell_dir = None  # the client folder whose worker bell this process waits on


def _on_term(signum, _frame) -> None:
    global _stopping
    _stopping = True
    if _worker is not None:
        _worker.stop()
    if _bell_dir is not None:  # a wait on the bell resumes after a signal (PEP 475): ring it, so the loop sees the stop
        wake(_bell_dir, "worker")


def quiet_telemetry() -> None:
    """Flower builds a telemetry event as each task starts and ends (the end waited for), even with
    FLWR_TELEMETRY_ENABLED=0: ``platform.architecture()`` runs ``file`` twice each time. Where an event
    would be neither sent nor logged (FLWR_TELEMETRY_LOGGING), it is now "disabled" at once, as Flower
    returns it; with either set, nothing changes. Inherited by every task child."""
    from flwr.supercore import telemetry  # noqa: PLC0415 pylint: disable=import-outside-toplevel

    if telemetry.FLWR_TELEMETRY_ENABLED == "1" or telemetry.FLWR_TELEMETRY_LOGGING == "1":
        return
    telemetry.create_event = lambda event_type, event_details: "disabled"


def load_preload(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr or "preload")


def runtime_client(runtime_api: str, cls: type[RuntimeHttpClient] = RuntimeHttpClient) -> RuntimeHttpClient:
    """A client of the SuperNode's Runtime API that asks for tasks, as Flower's SuperExec does."""
    return cls.from_server_address(
        server_address=runtime_api,
        insecure=True,
        root_certificates=None,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec")],
        retry_invoker=make_simple_http_retry_invoker(),
    )


class TaskRunner(Protocol):
    def ready(self) -> None: ...  # called outside any lock, before the task's message and slot are waited for
    def run(self, token: str) -> TaskEnd: ...  # returns once the task's reply is with the SuperNode


def task_line(task_id: int, acquired: float, pulled: float, started: float, finished: float, end: TaskEnd) -> str:
    """A task's line in worker.log: ``finished`` is when its run returned, its compute slot still held (the line is
    written later, after the slot is freed and the node rung)."""
    stamp = f"{time.strftime('%H:%M:%S', time.localtime(acquired))}.{int(acquired % 1 * 1000):03d}"
    return (f"{stamp} task {task_id}: waited {pulled - acquired:.3f} s for its message, {started - pulled:.3f} s "
            f"for a compute slot, ran {finished - started:.3f} s using {end.cpu:.3f} CPU-s")


def serve_tasks(client: RuntimeHttpClient, runner: TaskRunner, bell: WakeupSocket, slots: ComputeSlots, client_dir,
                out=sys.stdout, stopping=lambda: _stopping, idle=lambda: None) -> None:
    """Ask the node for a task, wait for its message and a compute slot, run it with ``runner``, ring the node,
    write the task's line to ``out``; between tasks wait on ``bell`` (``idle()`` once no task came for IDLE_POLL s).
    Until ``stopping()``."""
    request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value])
    pulling = PullLock(client_dir)
    last_task = time.monotonic()
    while not stopping():
        res = client.AcquireTask(request)
        if res.HasField("task") and res.token:
            acquired = time.time()
            runner.ready()  # e.g. a live worker, forked here if need be: no compute slot or pull lock held to inherit
            with contextlib.ExitStack() as slot:
                with kept_claimed(client, res.token):  # the waits below may outlast Flower's 30 s claim
                    if not pulling.wait_free(stop=stopping):  # its message's objects are all with the SuperNode
                        break  # SIGTERM while the SuperNode was still pulling: no task is started
                    pulled = time.time()
                    slot.enter_context(slots.held())
                started = time.time()
                end = runner.run(res.token)
                finished = time.time()  # before the slot is freed: "ran" is the time the task held it
            wake(client_dir, "supernode")  # the reply is with the SuperNode: no need to poll for it
            print(task_line(res.task.task_id, acquired, pulled, started, finished, end), file=out, flush=True)
            if end.code != 0 and not stopping():
                print(f"fl-launch: task {res.task.task_id} exited with code {end.code}", file=out, flush=True)
            if end.note:
                print(f"fl-launch: {end.note}", file=out, flush=True)
            last_task = time.monotonic()
            continue  # a reply often follows at once: ask again without sleeping
        bell.wait(IDLE_POLL if bell.bound else UNRUNG_POLL)
        if time.monotonic() - last_task >= IDLE_POLL:
            idle()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api", required=True, help="the SuperNode's Runtime API, HOST:PORT")
    parser.add_argument("--node-config", required=True,
                        help="the node's config, as given to the SuperNode ('k=v ...' or a TOML file)")
    parser.add_argument("--preload", default="", help="MODULE:FUNCTION called once with the node config")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--gpu", default=None, help="the GPU this client computes on (its CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--gpus-per-client", type=float, default=0.0,
                        help="with --gpu: its share of the GPU; floor(1/F) clients compute on it at once")
    parser.add_argument("--held", action="store_true",
                        help="held to a share of a core (an emulated fleet): one more task computes at once")
    parser.add_argument("--app-log", action="store_true",
                        help="a user's app: its output and round lines go to the client's client.log")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    quiet_telemetry()
    colour_only_on_a_terminal()
    node_config = load_node_config(args.node_config)
    if args.preload:
        load_preload(args.preload)(node_config, torch_threads=args.torch_threads)
    gc.freeze()  # what is loaded stays shared with the task worker: its collections do not write to it
    _, client_dir, _ = node_paths(node_config, run_dir=".")
    bell = WakeupSocket(client_dir, "worker")
    # a user's app (--app) gets a fresh process per task, as under Flower's own SuperExec; the built-in app's
    # tasks share one worker (launcher.flower.task_worker)
    global _worker, _bell_dir
    _bell_dir = client_dir
    _worker = TaskWorker(args.runtime_api, client_dir if args.app_log else None,
                         tasks_per_worker=1 if args.app_log else 0, keep_out=[bell.sock] if bell.bound else [])
    try:
        slots = host_slots(client_dir.parent / "slots", args.gpu, args.gpus_per_client, args.torch_threads, args.held)
        serve_tasks(runtime_client(args.runtime_api), _worker, bell, slots, client_dir)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
