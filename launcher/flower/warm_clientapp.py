"""A long-lived process that runs a SuperNode's ClientApp tasks without a fresh Python each.

    python -m launcher.flower.warm_clientapp --runtime-api 127.0.0.1:9094 \
        --node-config client_0/node_config.toml --preload simulator.client_app:preload

It stands where Flower's ``flower-superexec`` stands for a SuperNode started with
``--isolation process``: it asks the SuperNode's Runtime API for the next task and
runs it with Flower's own ``run_clientapp``. The difference is the process: torch,
the app and the node's data are imported once (``--preload``), and each task runs
in a child forked from this process, sharing that memory copy-on-write. One task
runs at a time; SIGTERM stops the current task and this process. Between tasks it waits
on the node's ``worker`` bell (contract.bells), which the SuperNode rings when it pulls
a message, and asks anyway every IDLE_POLL seconds. When the task ends, this process rings
the SuperNode's bell, which is waiting to send the reply.

Two substitutions in the child's run_clientapp module (Flower's files are not touched):
- A task can be acquired while the SuperNode is still pulling its message's objects from the SuperLink
  (slowly, over an emulated link or a device's): Flower's task would retry its local pulls after 1 s,
  2 s, 4 s... and start up to a backoff step late. Here it retries every LOCAL_PULL_RETRY seconds.
- The task computes only while it holds one of the host's compute slots (cores + 1 of them:
  launcher.processes.compute_slots), taken once its inputs are pulled: a task still waiting for its
  message's bytes keeps no slot from one that could compute. The kernel frees the slot when it exits.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import signal
import sys
import time

from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.constant import TaskType
from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime import run_clientapp as clientapp_runtime
from flwr.supernode.runtime.run_clientapp import run_clientapp

from contract.bells import Bell, ring
from contract.run_settings import node_paths
from launcher.apps.task_log import log_app_tasks
from launcher.flower.config_args import load_node_config
from launcher.processes.compute_slots import ComputeSlots

IDLE_POLL = 1.0  # the SuperNode rings the worker bell when it pulls a message
UNRUNG_POLL = 0.1  # when the bell could not be bound
LOCAL_PULL_RETRY = 0.05  # a task's retries of its message's objects from its own SuperNode (local calls)

_stopping = False
_child = 0


def _on_term(signum, _frame) -> None:
    global _stopping
    _stopping = True
    if _child:
        try:
            os.kill(_child, signal.SIGTERM)
        except ProcessLookupError:
            pass


def load_preload(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr or "preload")


def prepare_task_process(slots: ComputeSlots) -> None:
    """In a task's child: its run_clientapp retries local object pulls every LOCAL_PULL_RETRY seconds (until
    Flower's own time limit), and takes a compute slot once the task's inputs are in (see the docstring)."""
    pull = clientapp_runtime.pull_and_inflate_object_from_tree
    clientapp_runtime.pull_and_inflate_object_from_tree = functools.partial(
        pull, initial_backoff=LOCAL_PULL_RETRY, backoff_cap=LOCAL_PULL_RETRY, max_tries_per_object=None)
    pull_inputs = clientapp_runtime.pull_task_input

    def pull_inputs_then_take_a_slot(client):
        started = time.time()
        inputs = pull_inputs(client)
        pulled = time.time()
        slots.take()  # held until this process exits
        print(f"{_clock(started)} task inputs pulled in {pulled - started:.3f} s, waited "
              f"{time.time() - pulled:.3f} s for a compute slot", flush=True)
        return inputs

    clientapp_runtime.pull_task_input = pull_inputs_then_take_a_slot


def _clock(t: float) -> str:
    return f"{time.strftime('%H:%M:%S', time.localtime(t))}.{int(t % 1 * 1000):03d}"


def run_task_in_child(runtime_api: str, token: str, slots: ComputeSlots, app_log_dir=None) -> int:
    """Fork; the child serves the task with Flower's run_clientapp and exits.

    ``app_log_dir``: a user's app (``fl-launch --app``): its output and the
    launcher's round lines go to that client folder's client.log.
    """
    global _child
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = 1
        try:
            prepare_task_process(slots)
            if app_log_dir is not None:
                log_app_tasks(app_log_dir)
            run_clientapp(runtime_api_address=runtime_api, token=token, insecure=True,
                          runtime_dependency_install=False)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _child = pid
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    _child = 0
    return os.waitstatus_to_exitcode(status)


def serve(runtime_api: str, bell: Bell, slots: ComputeSlots, client_dir, app_log: bool = False) -> None:
    client = RuntimeHttpClient.from_server_address(
        server_address=runtime_api,
        insecure=True,
        root_certificates=None,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec")],
        retry_invoker=make_simple_http_retry_invoker(),
    )
    request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value])
    while not _stopping:
        res = client.AcquireTask(request)
        if res.HasField("task") and res.token:
            acquired = time.time()
            code = run_task_in_child(runtime_api, res.token, slots, client_dir if app_log else None)
            ring(client_dir, "supernode")  # the reply is with the SuperNode: no need to poll for it
            print(f"{_clock(acquired)} task {res.task.task_id}: ran {time.time() - acquired:.3f} s", flush=True)
            if code != 0 and not _stopping:
                print(f"fl-launch: task {res.task.task_id} exited with code {code}", file=sys.stderr, flush=True)
            continue  # a reply often follows at once: ask again without sleeping
        bell.wait(IDLE_POLL if bell.bound else UNRUNG_POLL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api", required=True, help="the SuperNode's Runtime API, HOST:PORT")
    parser.add_argument("--node-config", required=True,
                        help="the node's config, as given to the SuperNode ('k=v ...' or a TOML file)")
    parser.add_argument("--preload", default="", help="MODULE:FUNCTION called once with the node config")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--app-log", action="store_true",
                        help="a user's app: its output and round lines go to the client's client.log")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    node_config = load_node_config(args.node_config)
    if args.preload:
        load_preload(args.preload)(node_config, torch_threads=args.torch_threads)
    _, client_dir, _ = node_paths(node_config, run_dir=".")
    try:
        slots = ComputeSlots(client_dir.parent / "slots", count=(os.cpu_count() or 1) // max(1, args.torch_threads) + 1)
        serve(args.runtime_api, Bell(client_dir, "worker"), slots, client_dir, app_log=args.app_log)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
