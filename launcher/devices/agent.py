"""The part of a run that lives on a device: its client nodes, started, reaped and stopped there.

    # started over SSH by the launcher, detached from the connection:
    cd ~/fl && setsid nohup python3 -m launcher.devices.agent --run-dir runs/RUN \
        --superlink 127.0.0.1:9092 --clients 2,3 --num-clients 4 > runs/RUN/agent.log 2>&1 &

For each of its clients it writes the node config and starts the same two
processes a local client has (launcher.processes.nodes), each carrying the run's
tag. It records them in ``<run-dir>/agent.json`` (which the launcher pulls with
the logs), reaps them, and on SIGTERM stops them all before it exits. It exits
by itself once none of its processes is left.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

from contract.loglines import LogWriter, client_log_path
from contract.run_layout import client_dir
from launcher.processes.gpus import this_host_gpus
from launcher.processes.node_config import read_extra
from launcher.processes.nodes import NODE_KEYS, NodeStart, flower_env, start_node, write_node_config
from launcher.processes.ports import free_ports
from launcher.processes.restarts import SettlingExits, restart_client
from launcher.processes.table import RUN_ENV, TAG_ENV, ProcessTable

AGENT_JSON = "agent.json"
_stop = False


def _on_term(_signum, _frame) -> None:
    global _stop
    _stop = True


def _write(run_dir: Path, table: ProcessTable, state: str, restarts: list[dict]) -> None:
    data = {"pid": os.getpid(), "state": state, "time": time.time(),
            "processes": [p.record(run_dir) for p in table.procs], "restarts": restarts}
    tmp = run_dir / f".{AGENT_JSON}.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(run_dir / AGENT_JSON)


def keys_only_for_us(folder: Path) -> Path:
    """The nodes' private keys, readable by this user only (whatever the copy did to their mode); the folder."""
    for key in folder.glob("*.key"):
        key.chmod(0o600)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fl-launch's agent on a device")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink as seen from here")
    parser.add_argument("--clients", required=True, help="comma-separated client numbers placed here")
    parser.add_argument("--num-clients", type=int, required=True)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--data-dir", default=None, help="read client_<i>.npz here, not in <run-dir>/data")
    parser.add_argument("--max-restarts", type=int, default=0)
    parser.add_argument("--resume-round", type=int, default=0, help="a resumed run: mark the clients' logs")
    parser.add_argument("--tls", action="store_true", help="verify the SuperLink against <run-dir>/tls/ca.pem")
    parser.add_argument("--node-keys", action="store_true",
                        help="each node authenticates with its key in <run-dir>/tls/nodes (a direct SuperLink)")
    parser.add_argument("--user-app", action="store_true", help="the run's app is the user's (fl-launch --app)")
    parser.add_argument("--gpus-per-client", type=float, default=0.0,
                        help="each client's share of one of this device's GPUs (launcher.processes.gpus)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the SSH session that started us may go
    run_dir = Path(args.run_dir).resolve()
    clients = [int(c) for c in args.clients.split(",")]
    table = ProcessTable(os.environ.get(TAG_ENV, ""), os.environ.get(RUN_ENV, ""))
    env = flower_env(run_dir, args.torch_threads)
    table.start_fork_server(run_dir, env)  # the device's clients share one torch too
    gpus = this_host_gpus().ids if args.gpus_per_client > 0 else ()  # this device's own, asked here
    spec = NodeStart(run_dir, args.superlink, env, args.torch_threads,
                     root_certificates=str(run_dir / "tls" / "ca.pem") if args.tls else None, user_app=args.user_app,
                     node_keys=keys_only_for_us(run_dir / NODE_KEYS) if args.node_keys else None,
                     gpus=gpus, gpus_per_client=args.gpus_per_client)

    for client, port in zip(clients, free_ports(len(clients))):
        if args.resume_round:
            log = LogWriter(client_log_path(client_dir(run_dir, client)), "FLClient")
            log.write("resume", level="WARNING", round=args.resume_round)
            log.close()
        write_node_config(run_dir, client, args.num_clients,
                          data_dir=Path(args.data_dir).resolve() if args.data_dir else None,
                          extra=read_extra(client_dir(run_dir, client)))
        start_node(table, spec, client, port)
    restarts: list[dict] = []
    counts: dict[int, int] = {}
    planned: dict[int, int] = {}
    _write(run_dir, table, "running", restarts)
    exits = SettlingExits()  # a stop's SIGTERM may reach a client first: no restart for it
    while not _stop and table.alive():
        ended = table.reap()
        exits.add(ended)
        settled = exits.settled()
        for proc in settled:
            if _stop:  # asked again for each: a restart takes seconds, and a stop may begin during one
                break
            again = lambda c=proc.client: start_node(table, spec, c, free_ports(1)[0],  # noqa: E731
                                                     incarnation=counts.get(c, 0))
            entry = restart_client(table, run_dir, proc, counts, args.max_restarts, start=again,
                                   may_start=lambda: not _stop, planned=planned)
            if entry is not None:
                restarts.append(entry)
        if ended or settled:  # an exit, or a restart's new processes: the launcher learns of it at its next pull
            _write(run_dir, table, "running", restarts)
        time.sleep(0.5)
    _write(run_dir, table, "stopping", restarts)
    table.stop_all(grace=args.grace)
    _write(run_dir, table, "stopped", restarts)


if __name__ == "__main__":
    main()
