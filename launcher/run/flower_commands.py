"""The command lines of Flower's own processes that a run's supervisor starts, and `flwr`'s config for them.

    superlink_argv(port, tls, virtual=False)     # flower-superlink (launcher.flower.quick_superlink) on 127.0.0.1
    write_flwr_config(env, port, ca=None)        # $FLWR_HOME/config.toml: `flwr` finds the run's SuperLink there
    flwr_run_argv(run_dir, plan, gpu_config="")  # `flwr run APP local --stream`: submits the run

(a client node's two processes: launcher.processes.nodes.start_node)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from launcher.devices.tls import TlsPaths
from launcher.flower.plain_logs import plain
from launcher.processes.entry_modules import QUICK_SUPERLINK
from launcher.run.run_plan import RunPlan
from simulator.flower_app import run_dir_config


def superlink_argv(port: int, tls: TlsPaths | None, virtual: bool,
                   direct: tuple[str, int] | None = None) -> list[str]:
    """``tls``: the run's certificates, absolute (else plain HTTP); ``virtual``: Flower's simulation runtime;
    ``direct``: (address, port) where the Fleet API (only it) listens too, for devices that connect directly
    (--server-address), its nodes holding registered keys."""
    security = (["--ssl-certfile", str(tls.cert), "--ssl-keyfile", str(tls.key), "--ssl-ca-certfile", str(tls.ca)]
                if tls else ["--insecure"])
    if direct:
        security += ["--enable-supernode-auth", "--fleet-host", direct[0], "--fleet-port", str(direct[1])]
    return [sys.executable, "-m", QUICK_SUPERLINK, *security, "--host", "127.0.0.1", "--port", str(port),
            "--disable-runtime-dependency-installation", *(["--simulation"] if virtual else [])]


def write_flwr_config(env: dict[str, str], link_port: int, ca: str | None) -> None:
    """The run's own FLWR_HOME: `flwr run` finds its SuperLink there, never in ~/.flwr."""
    home = Path(env["FLWR_HOME"])
    home.mkdir(exist_ok=True)
    security = f"root-certificates = {json.dumps(ca)}" if ca else "insecure = true"
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
        f'address = "127.0.0.1:{link_port}"\n{security}\n'
    )


def flwr_run_argv(run_dir: Path, plan: RunPlan, gpu_config: str = "") -> list[str]:
    """`flwr run`: submits the app's run to the SuperLink, and streams its ServerApp's log until it ends;
    ``gpu_config``: the virtual clients' GPU share (launcher.processes.gpus.virtual_gpu_config)."""
    # the built-in app learns where its run folder is now (it may have been copied or moved since)
    overrides = plan.run_config if plan.user_app else run_dir_config(run_dir)
    argv = plain(["flwr", "run", str(run_dir / plan.app_dir), "local", "--stream",
                  *(["--run-config", overrides] if overrides else [])])
    if plan.virtual:  # the SuperLink's simulation runtime: N virtual nodes, one Ray worker per CPU given
        # (joining a cluster, its nodes' CPUs decide: Ray refuses num_cpus there)
        workers = "" if plan.virtual.ray_address else f" init-args-num-cpus={plan.virtual.workers}"
        argv += ["--federation-config",
                 f"num-supernodes={len(plan.nodes)} client-resources-num-cpus=1{workers}{gpu_config}"]
    return argv
