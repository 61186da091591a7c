"""How one client node is started, on this machine or on a device: the same processes.

    env = flower_env(run_dir, threads=1)
    write_node_config(run_dir, client=3, num_clients=10)
    spec = NodeStart(run_dir, superlink="127.0.0.1:9092", env=env, threads=1)   # the same for every node
    start_node(table, spec, client=3, runtime_port=41234)

A node of the built-in app is one process, ``flower-supernode --isolation process`` (run by
launcher.flower.quick_supernode) running its own tasks (launcher.flower.node_tasks); a user's app's node is that
SuperNode plus ``launcher.flower.warm_clientapp`` serving its tasks, a process per task; the run folder holds
``client_<i>/`` (logs, node_config.toml) and ``data/client_<i>.npz``. node_config.toml holds paths relative to
the run folder; each start passes the node its config with them made absolute from where the folder is now.
The supervisor calls this for local clients, the device agent for the clients placed on its device.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import tomllib

from contract.run_layout import DATA_DIR, client_dir, client_dir_name, partition_file
from contract.run_settings import node_paths
from launcher.processes.entry_modules import BUILT_IN_PRELOAD, QUICK_SUPERNODE, WARM_CLIENTAPP
from launcher.processes.gpus import gpu_of
from launcher.processes.node_config import toml_lines, toml_value
from launcher.processes.roles import Role
from launcher.processes.table import Managed, ProcessTable

NODE_KEYS = Path("tls") / "nodes"
SUPEREXEC_POLL_S = 0.2  # in a run folder: the nodes' key pairs, with fl-launch --server-address


def own_bin_first_path() -> str:
    """``PATH`` with this interpreter's bin folder first.

        own_bin_first_path()             # under cron: PATH=/usr/bin:/bin
        # '/opt/venv/bin:/usr/bin:/bin'

    Flower starts its helpers by name (the SuperLink runs ``flower-superexec``, which runs
    ``flwr-serverapp``): they must come from this environment even when the caller's PATH
    (cron, systemd, ssh) lacks it."""
    own = str(Path(sys.executable).parent)
    rest = [part for part in os.environ.get("PATH", os.defpath).split(os.pathsep) if part and part != own]
    return os.pathsep.join([own, *rest])


def flower_env(run_dir: Path, threads: int) -> dict[str, str]:
    """What every process of a run gets on top of the caller's environment (locally and on devices)."""
    return {
        "PATH": own_bin_first_path(),
        "FLWR_HOME": str(run_dir / "flwr_home"),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        # the SuperExec asks for a ServerApp to start every 0.2 s, not every 1 s: the run's ServerApp starts
        # ~0.4 s sooner after `flwr run` (its start is on round 1's path), for ~1% of a core idle
        "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": str(SUPEREXEC_POLL_S),
        "PYTHONSAFEPATH": "1",  # a run folder must never shadow a package
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }


def _toml_str(path: Path) -> str:
    text = str(path)
    if "'" in text or "\n" in text:
        raise ValueError(f"path {text!r} holds a quote or newline")
    return f"'{text}'"


def write_node_config(run_dir: Path, client: int, num_clients: int, data_dir: Path | None = None,
                      extra: dict | None = None) -> Path:
    """client_<i>/node_config.toml; its paths are relative to the run folder, so the folder can move.

    The partition is ``data/client_<i>.npz``, or ``<data_dir>/client_<i>.npz`` (a device's data folder
    outside its run folder, kept absolute). start_node gives them to the node absolute, from where the run
    folder is when it starts. ``extra``: the user's own keys (launcher.processes.node_config), as they are.
    """
    folder = client_dir(run_dir, client)
    folder.mkdir(parents=True, exist_ok=True)
    data_file = partition_file(data_dir or DATA_DIR, client)
    path = folder / "node_config.toml"
    path.write_text(
        f"partition-id = {client}\nnum-partitions = {num_clients}\n"
        f"client-dir = {_toml_str(Path(folder.name))}\ndata-file = {_toml_str(data_file)}\n"
        + toml_lines(extra or {})
    )
    return path


def node_config_arg(run_dir: Path, client: int) -> str:
    """The node's config as ``--node-config 'k=v ...'`` (Flower's form), its paths absolute under ``run_dir``."""
    with open(client_dir(run_dir, client) / "node_config.toml", "rb") as fh:
        config = tomllib.load(fh)
    _, folder, data_file = node_paths(config, run_dir.resolve())
    paths = {"client-dir": _toml_str(folder), "data-file": _toml_str(data_file)}
    return " ".join(f"{key}={paths[key] if key in paths else toml_value(value)}" for key, value in config.items())


@dataclass(frozen=True)
class NodeStart:
    """What every node of a run starts with; only the client and its Runtime API port differ.

    ``root_certificates``: verify the SuperLink's TLS certificate against this CA (else plain HTTP).
    ``node_keys``: the folder of the nodes' private keys (a SuperLink that authenticates its nodes,
    fl-launch --server-address): each start of a client gets its own (node_key), registered beforehand.
    ``user_app``: the run's app is the user's (``--app``): nothing of the built-in app is preloaded, and the
    app's output goes to client.log with the launcher's round lines (launcher.flower.task_log)."""

    run_dir: Path
    superlink: str  # HOST:PORT of the SuperLink as the node sees it
    env: dict[str, str]  # flower_env's
    threads: int  # torch threads of the ClientApp
    root_certificates: str | None = None
    user_app: bool = False
    node_keys: Path | None = None
    gpus: tuple[str, ...] = ()  # this host's GPUs the clients share (launcher.processes.gpus); () none
    gpus_per_client: float = 0.0  # each client's share of its GPU (--gpus-per-client)
    held: bool = False  # held to a share of a core (an emulated fleet): one more task computes at once

    def through(self, superlink: str) -> "NodeStart":
        """The same start, reaching the SuperLink at another address (an emulated link, launcher.fleet)."""
        return replace(self, superlink=superlink)


def node_key(folder: Path, client: int, incarnation: int) -> Path:
    """A node's private key for its ``incarnation``-th start (0: the first, then one per restart: the SuperLink
    keeps one node id per registered key, and a restarted client joins as a new node); ``.pub`` beside it."""
    return folder / f"client_{client}.{incarnation}.key"


def start_node(table: ProcessTable, spec: NodeStart, client: int, runtime_port: int,
               incarnation: int = 0) -> tuple[Managed, ...]:
    """The client's processes, each carrying the table's tag: the built-in app's node running its own tasks
    (Role.CLIENT), or a user's app's SuperNode and its ClientApp server; ``incarnation``: how many times the client
    was started before (its key, with ``spec.node_keys``)."""
    run_dir = spec.run_dir
    folder = client_dir(run_dir, client)
    node_config = node_config_arg(run_dir, client)  # where the run folder is now: it may have moved
    node_env = dict(spec.env, FLWR_HOME=str(run_dir / "flwr_home" / "nodes" / client_dir_name(client)))
    gpu = gpu_of(client, spec.gpus) if spec.gpus_per_client > 0 else None
    gpu_args = ["--gpu", gpu, "--gpus-per-client", repr(spec.gpus_per_client)] if gpu is not None else []
    task_args = [*gpu_args, *(["--held"] if spec.held else [])]
    task_env = dict(node_env, CUDA_VISIBLE_DEVICES=gpu) if gpu is not None else node_env
    supernode = table.fork(
        Role.SUPERNODE if spec.user_app else Role.CLIENT, QUICK_SUPERNODE,
        [*(["--root-certificates", spec.root_certificates] if spec.root_certificates else ["--insecure"]),
         "--superlink", spec.superlink,
         "--isolation", "process", "--host", "127.0.0.1", "--port", str(runtime_port),
         "--node-config", node_config,
         *(["--auth-supernode-private-key", str(node_key(spec.node_keys, client, incarnation))]
           if spec.node_keys else []),
         *([] if spec.user_app else ["--tasks-in-node", BUILT_IN_PRELOAD, "--torch-threads", str(spec.threads),
                                     *task_args])],
        log=folder / "supernode.log", env=node_env if spec.user_app else task_env, cwd=folder, client=client,
        port=runtime_port,
    )
    if not spec.user_app:
        return (supernode,)
    clientapp = table.fork(
        Role.CLIENTAPP, WARM_CLIENTAPP,
        ["--runtime-api", f"127.0.0.1:{runtime_port}",
         "--node-config", node_config, "--torch-threads", str(spec.threads), *task_args, "--app-log"],
        log=folder / "worker.log", env=task_env, cwd=folder, client=client,
    )
    return supernode, clientapp
