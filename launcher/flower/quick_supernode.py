"""Flower's own SuperNode, with its idle sleeps answered by bells instead of the clock.

    python -m launcher.flower.quick_supernode --insecure --superlink 127.0.0.1:9092 \
        --isolation process --port 9094 \
        --node-config "partition-id=0 num-partitions=2 client-dir='/abs/RUN/client_0' ..."

The arguments are flower-supernode's. Flower 1.41's SuperNode loop sleeps 3 s
whenever a pull from the SuperLink brings nothing, and 0.5 s between checks for
a task's reply; on one host those sleeps are most of a round's overhead. This
runs Flower's unchanged flower-supernode entry point after two substitutions in
its loop module's namespace (Flower's files are not touched); every sleep
of the loop becomes a wait on the node's ``supernode`` bell, of the same length:
- the 3 s idle sleep ends when the ServerApp rings it after pushing messages; once this node's
  ServerApp has rung (the built-in app's does, after every push), the idle sleep is RUNG_IDLE_SECONDS;
- after a message is pulled, the node's ``worker`` bell is rung, so the task
  runner (launcher.flower.warm_clientapp) asks for the task at once; while it is
  being pulled, the node's pull lock is held (launcher.flower.pull_lock);
- the 0.5 s sleeps while a task's reply is awaited wait on the same bell, which
  the task runner rings when the task ends.
Its Runtime API answers unary calls without the per-layer machinery (launcher.flower.quick_http), and its
server ticks once a second while idle (launcher.flower.server_tick); a message's objects move to and from
the SuperLink in one exchange each way (launcher.flower.object_batch); the timestamp its Fleet calls carry is
signed every few seconds, not per call (launcher.flower.node_signatures).
With ``--tasks-in-node PRELOAD`` (the built-in app) the node runs its own tasks on a thread of this process
(launcher.flower.node_tasks): PRELOAD is called with the node's config first, and no task host is started beside it.
tests/test_flower_internals.py checks that the loop still has this shape.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import threading
import time as _time
import traceback
from pathlib import Path

import flwr.supernode.start_client_internal as loop
import httpx
from flwr.supercore.logger import FLOWER_LOGGER
from flwr.supernode.cli import flower_supernode

from contract.lost_nodes import end_renewal, start_renewal
from contract.run_settings import node_paths
from contract.wakeups import SERVER_PUSHED, WakeupSocket, wake
from launcher.flower.compute_slots import host_slots
from launcher.flower.config_args import load_node_config
from launcher.flower.fleet_chain import install as chain_fleet_calls
from launcher.flower.fleet_chain import pull_after_push_when
from launcher.flower.http_gates import wrap_app_factory
from launcher.flower.in_node_runtime import InNodeRuntimeClient
from launcher.flower.memory_growth import keep_task_heap
from launcher.flower.node_signatures import sign_once_in_supernode
from launcher.flower.node_tasks import NodeTasks
from launcher.flower.object_batch import install_in_supernode as batch_objects
from launcher.flower.plain_logs import colour_only_on_a_terminal, records_only_at_written_levels
from launcher.flower.pull_lock import PullLock
from launcher.flower.quick_http import install as quick_http
from launcher.flower.server_tick import install as slow_tick
from launcher.flower.warm_clientapp import load_preload, quiet_telemetry, runtime_client, serve_tasks

IDLE_SECONDS = 3.0  # Flower's own idle sleep: a node nobody rings (e.g. on a device) behaves as stock
# once its ServerApp has rung (the built-in app rings every node after each push), an idle node's pull is
# only a safety net: nobody's message waits for it
RUNG_IDLE_SECONDS = 30.0


class WakeupClock:
    """Stands in for the ``time`` module inside Flower's SuperNode loop."""

    def __init__(self, bell: WakeupSocket) -> None:
        self._bell = bell

    def sleep(self, seconds: float) -> None:
        """Flower's idle sleep (3 s after a pull that brought nothing) becomes RUNG_IDLE_SECONDS once this node's
        ServerApp has rung; its shorter sleeps (0.5 s while a reply is awaited) stay as they are."""
        if seconds >= IDLE_SECONDS and SERVER_PUSHED in self._bell.heard:
            seconds = RUNG_IDLE_SECONDS
        self._bell.wait(min(seconds, RUNG_IDLE_SECONDS))

    def __getattr__(self, name):
        return getattr(_time, name)


def install(client_dir, tasks: NodeTasks | None = None, client: int | None = None) -> None:
    """Put the bells into Flower's SuperNode loop (this process only), and hold the node's pull lock
    (launcher.flower.pull_lock) while it pulls a message, for its task host to wait on. ``tasks``: the node runs
    its own, and leaves before a pull (its last reply sent) when a task grew its memory too much; at its first
    pull (connected), the node of ``client`` that left so before it is replaced (contract.lost_nodes)."""
    pull = loop._pull_and_store_message  # noqa: SLF001
    pulling = PullLock(client_dir)
    connected = threading.Event()

    def pull_then_ring(*args, **kwargs):
        if not connected.is_set() and client is not None:
            end_renewal(Path(client_dir).parent, client)
            connected.set()
        if tasks is not None:
            tasks.leave_if_grown()
        with pulling.held():
            run_id = pull(*args, **kwargs)
        if run_id is not None:
            wake(client_dir, "worker")
        return run_id

    loop._pull_and_store_message = pull_then_ring  # noqa: SLF001
    if tasks is not None:  # a node about to leave pulls nothing more with its last push
        pull_after_push_when(lambda: not tasks.leave_note)
    loop.time = WakeupClock(WakeupSocket(client_dir, "supernode"))


def own_options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """This module's options (the node runs its own tasks), and the rest: flower-supernode's, of which the node's
    config (required) and Runtime API port are read too."""
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    own.add_argument("--tasks-in-node", default="", metavar="PRELOAD")
    own.add_argument("--torch-threads", type=int, default=1)
    own.add_argument("--gpu", default=None)
    own.add_argument("--gpus-per-client", type=float, default=0.0)
    own.add_argument("--held", action="store_true")  # held to a share of a core: compute_slots.cpu_slot_count
    options, flower_argv = own.parse_known_args(argv)
    flower = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    flower.add_argument("--node-config", default=None)
    flower.add_argument("--port", default="")
    read, _ = flower.parse_known_args(flower_argv)
    if read.node_config is None:
        raise SystemExit("quick_supernode: --node-config is required")
    options.node_config, options.port = read.node_config, read.port
    return options, flower_argv


def serve_in_node(own: argparse.Namespace, node_config: dict, client_dir, client: int) -> NodeTasks:
    """The node's tasks on a thread of this process, from the moment Flower's Runtime API app exists."""
    quiet_telemetry()
    keep_task_heap()  # a task's freed buffers stay for the next (NodeTasks.idle gives them back)
    load_preload(own.tasks_in_node)(node_config, torch_threads=own.torch_threads)
    gc.freeze()  # what the node loaded stays as it is: collections do not touch it
    runtime_api = f"127.0.0.1:{own.port}"  # a name here: the calls stay in this process
    tasks = NodeTasks(client_dir / "worker.log", runtime_api,
                      on_leaving=lambda node: start_renewal(client_dir.parent, client, node))
    app: list = []
    made = threading.Event()

    def keep(created):
        app.append(created)
        made.set()
        return created

    wrap_app_factory(["flwr.supernode.main"], keep)
    slots = host_slots(client_dir.parent / "slots", own.gpu, own.gpus_per_client, own.torch_threads, own.held)
    bell = WakeupSocket(client_dir, "worker")

    def serve() -> None:
        made.wait()
        tasks.install(app[0], threading.current_thread())
        try:
            with open(tasks.worker_log, "a", buffering=1) as out:
                serve_tasks(runtime_client(runtime_api, InNodeRuntimeClient), tasks, bell, slots, client_dir,
                            out=out, stopping=lambda: False, idle=tasks.idle)
        except BaseException:  # noqa: BLE001 - a node that no longer runs its tasks must not stay up: restart it
            traceback.print_exc()
            print("fl-launch: this client stopped serving its tasks; it exits to be restarted", file=sys.stderr,
                  flush=True)
            os._exit(1)

    threading.Thread(target=serve, name="fl-launch-tasks", daemon=True).start()
    return tasks


def tune_flower() -> None:
    """This module's changes to Flower's SuperNode in this process (each made once)."""
    quick_http("flwr.supernode.main")  # its Runtime API: tracing only when enabled, no per-layer machinery
    slow_tick()  # and its server wakes once a second while idle, not ten times
    batch_objects()  # a message's objects to and from the SuperLink in one exchange each way
    chain_fleet_calls()  # and with its message: a task in two Fleet exchanges, not six
    sign_once_in_supernode()  # its Fleet calls' signed timestamp made every few seconds, not per call


def prebuild_runtime_app() -> None:
    """Run once by the fork server, before it forks any SuperNode: Flower's Runtime API app for a SuperNode is
    built here, and its lazily built parts (the middleware stack, the router's table of routes) made by one
    request, so that the first ``create_app`` of every forked SuperNode gets it ready, given its own node's
    state, instead of each of fifty clients building it (~30 CPU-ms each). Later calls build as Flower does."""
    import flwr.supernode.main as supernode_main  # noqa: PLC0415

    tune_flower()
    create = supernode_main.create_app
    ready = [create(state_factory=None, superexec_auth_secret=None)]
    asyncio.run(_one_request(ready[0]))

    def create_app(state_factory=None, superexec_auth_secret=None):
        if not ready:
            return create(state_factory=state_factory, superexec_auth_secret=superexec_auth_secret)
        app = ready.pop()
        app.state.runtime_state_factory = state_factory  # what Flower's create_app sets from its arguments
        app.state.superexec_auth_secret = superexec_auth_secret
        return app

    create_app.transforms = getattr(create, "transforms", ())  # the transforms it has, installed again: no-ops
    supernode_main.create_app = create_app


async def _one_request(app) -> None:
    """A Runtime API call through ``app`` (answered 503: no node state yet), its log line held back."""
    level = FLOWER_LOGGER.level
    FLOWER_LOGGER.setLevel(logging.CRITICAL)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as client:
            await client.post("/v1/runtime/acquire-task", content=b"",
                              headers={"content-type": "application/protobuf"})
    finally:
        FLOWER_LOGGER.setLevel(level)


def main(argv: list[str] | None = None) -> None:
    own, argv = own_options(list(sys.argv[1:] if argv is None else argv))
    node_config = load_node_config(own.node_config)
    _, client_dir, _ = node_paths(node_config, run_dir=".")
    colour_only_on_a_terminal()
    records_only_at_written_levels()
    tune_flower()
    client = int(node_config["partition-id"])
    install(client_dir, serve_in_node(own, node_config, client_dir, client) if own.tasks_in_node else None,
            client=client)
    sys.argv = ["flower-supernode", *argv]
    flower_supernode()


if __name__ == "__main__":
    main()
