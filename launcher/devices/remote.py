"""The launcher's side of a device: stage its files, start its agent, pull its logs, stop it.

    dev = RemoteDevice(device, ssh_config=None, run_id="20261124-0530-ab12", tag="exp1")
    dev.stage(local_run, clients=[2, 3])          # data/client_2.npz ... over ssh + tar
    pid = dev.start_agent(AgentStart(superlink_port=9092, num_clients=4, threads=1, grace=10), clients=[2, 3])
    dev.pull(local_run)                            # client_2/, client_3/ logs, agent.json
    dev.stop(grace=10)                             # fl-finish --local-only on the device

Files move as tar streams through ssh (tar is on every device), so nothing more
than OpenSSH and the device's Python with this package is needed. The run lives
on the device in ``<workdir>/runs/<run-id>/``, laid out like the local run folder.
"""

from __future__ import annotations

import io
import json
import posixpath
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path

from contract.run_layout import DATA_DIR, RUN_JSON, client_dir, client_dir_name, partition_file, partition_name
from launcher.devices.hosts import Device, DevicePlacement
from launcher.devices.ssh import Session, Ssh, last_line, remote_path
from launcher.processes.entry_modules import DEVICE_AGENT, FINISH
from launcher.processes.node_config import EXTRA_FILE
from launcher.processes.nodes import NODE_KEYS
from launcher.processes.table import RUN_ENV, TAG_ENV


class RemoteError(RuntimeError):
    pass


def _dir_word(path: str) -> str:
    """A directory for ``cd``: relative ones are under the workdir (the caller cds there first)."""
    return remote_path(path) if path[:1] in "/~" else shlex.quote(path)


def devices_of(info: dict, ssh_config: str | None, tag: str | None = None) -> list[tuple["RemoteDevice", list[int]]]:
    """A run's devices, as its run.json plan records them, each with the clients placed on it.

    A run folder is data: each device is checked as the hosts file's entries are (HostsError: one that
    fails, raised), and ssh reads ``ssh_config``, the file the user named to this invocation (None: the user's
    own config), never the one run.json records (ssh's ProxyCommand and friends run commands here).
    KeyError or TypeError: devices recorded in another shape."""
    plan = info.get("plan") or {}
    run_id, tag = info["run_id"], tag or info["kill_tag"]  # shell-quoted wherever they go
    placed = [DevicePlacement.from_json(entry, where=f"run.json's device {i}")
              for i, entry in enumerate(plan.get("devices", []))]
    return [(RemoteDevice(p.device, ssh_config, run_id, tag), list(p.clients)) for p in placed]


def unused_ssh_config(recorded: str | None, ssh_config: str | None) -> str | None:
    """The line saying the ssh config a run on devices recorded (its --ssh-config) is not used (None: nothing
    to say)."""
    if not recorded or ssh_config is not None:
        return None
    return (f"the ssh config run.json names ({recorded!r}) is not used: a run folder is data; ssh reads your own "
            f"config (give --ssh-config FILE to use another)")


@dataclass(frozen=True)
class AgentStart:
    """What every device's agent of a run starts with; only its clients differ (``--tls``: the CA is staged).
    ``direct``: the SuperLink's Fleet API as the devices reach it, HOST:PORT (fl-launch --server-address: no
    tunnel; each node authenticates with its own key, staged with the CA)."""

    superlink_port: int  # the SuperLink's port on the device's 127.0.0.1 (the tunnel's end, the device's pick)
    num_clients: int  # of the whole run
    threads: int
    grace: float
    tls: bool = False
    remote_data_dir: str | None = None  # the partitions are on the device already, there
    max_restarts: int = 0
    resume_round: int = 0  # a resumed run: the round the clients' logs are marked with
    user_app: bool = False
    direct: str | None = None
    gpus_per_client: float = 0.0  # > 0: the device's clients share its GPUs so (launcher.processes.gpus)

    def superlink(self) -> str:
        """HOST:PORT of the SuperLink as the device's nodes reach it."""
        return self.direct or f"127.0.0.1:{self.superlink_port}"


def interpreter(device: Device) -> str:
    """The device's interpreter as a word for its shell."""
    p = device.python
    return remote_path(p) if p.startswith("~") else shlex.quote(p)


def python_command(device: Device) -> str:
    """The device's interpreter as words for its shell, under the hosts file's ``env`` (how a user points it
    at its packages: PYTHONPATH, a Jetson's LD_LIBRARY_PATH), for every call: probes, the bench, installs,
    fl-finish (the agent gets the env with its own variables)."""
    if not device.env:
        return interpreter(device)
    return "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in device.env.items()) + " " + interpreter(device)


class RemoteDevice:
    def __init__(self, device: Device, ssh_config: str | None, run_id: str, tag: str) -> None:
        self.device = device
        self.ssh = Ssh(device, ssh_config)
        self.run_id = run_id
        self.tag = tag
        self.run_rel = posixpath.join("runs", run_id)  # under the device's workdir
        self.agent_pid: int | None = None
        self.reachable = True  # as of the last pull
        # pulls every few seconds through one connection: a new one each time cost the device a tenth of
        # a core at a 3 s pull (benchmarks.closed_loop), taken from the share its client trains in
        self._pulls = Session(self.ssh, f"cd {self._in_run()} 2>/dev/null",
                              "tar -cf - --exclude='*.npz' $(ls -d client_* agent.json agent.log 2>/dev/null)")

    def python_word(self) -> str:
        return python_command(self.device)

    def _in_run(self) -> str:
        return f"{remote_path(self.device.workdir)}/{shlex.quote(self.run_rel)}"

    @property
    def host(self) -> str:
        return self.device.host

    def _check(self, result, what: str) -> None:
        if result.returncode != 0:
            raise RemoteError(f"{self.host}: {what} failed: {last_line(result.stderr) or f'exit {result.returncode}'}")

    def stage(self, local_run: Path, clients: list[int], ca: Path | None = None,
              remote_data_dir: str | None = None, node_keys: Path | None = None) -> None:
        """Copy the clients' partitions and extra node configs (and the run's CA, with TLS) to the device;
        ``node_keys``: the folder of the nodes' private keys, of which these clients' go (mode 0600 as here).

        With ``remote_data_dir`` the partitions are already on the device: only check they are there.
        """
        if remote_data_dir is not None:
            names = " ".join(shlex.quote(partition_name(c)) for c in clients)
            check = self.ssh.run(f"cd {remote_path(self.device.workdir)} && cd {_dir_word(remote_data_dir)} && "
                                 f"for f in {names}; do test -f \"$f\" || echo \"$f\"; done")
            self._check(check, f"reading {remote_data_dir}")
            missing = check.stdout.decode().split()
            if missing:
                raise RemoteError(f"{self.host}: {remote_data_dir} lacks {', '.join(missing)}")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            if ca is not None:
                tar.add(ca, arcname="tls/ca.pem")
            for client in clients if node_keys is not None else []:
                for key in sorted(node_keys.glob(f"client_{client}.*.key")):  # never another device's
                    tar.add(key, arcname=f"{NODE_KEYS.as_posix()}/{key.name}")
            for client in clients:  # the user's node config values (--node-config, hosts.toml)
                extra = client_dir(local_run, client) / EXTRA_FILE
                if extra.exists():
                    tar.add(extra, arcname=f"{client_dir_name(client)}/{EXTRA_FILE}")
            for client in clients if remote_data_dir is None else []:
                part = partition_file(local_run / DATA_DIR, client)
                if not part.exists():  # a link to a MindSpore writer folder: its .bin files go along
                    part = part.with_suffix("")
                if part.exists():  # a user's app (--app) brings its own data
                    tar.add(part.resolve(), arcname=f"data/{part.name}")
        rdir = self._in_run()
        result = self.ssh.run(f"mkdir -p {rdir} && tar -C {rdir} -xf -", stdin=buffer.getvalue(), timeout=600)
        self._check(result, "copying the partitions")

    def start_agent(self, spec: AgentStart, clients: list[int]) -> int:
        """The agent started detached on the device for these clients; its pid there."""
        args = shlex.join(["-m", DEVICE_AGENT, "--run-dir", self.run_rel,
                           "--superlink", spec.superlink(), "--clients", ",".join(map(str, clients)),
                           "--num-clients", str(spec.num_clients), "--torch-threads", str(spec.threads),
                           "--grace", str(spec.grace), *(["--tls"] if spec.tls else []),
                           *(["--data-dir", spec.remote_data_dir] if spec.remote_data_dir else []),
                           "--max-restarts", str(spec.max_restarts), "--resume-round", str(spec.resume_round),
                           *(["--user-app"] if spec.user_app else []),
                           *(["--node-keys"] if spec.direct else []),
                           *(["--gpus-per-client", repr(spec.gpus_per_client)] if spec.gpus_per_client else [])])
        env = {**self.device.env, TAG_ENV: self.tag, RUN_ENV: self.run_id,
               "PYTHONSAFEPATH": "1", "PYTHONUNBUFFERED": "1"}
        assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
        rel = shlex.quote(self.run_rel)
        # Only the agent goes to the background, with every stream redirected, so ssh returns at once.
        command = (f"mkdir -p {self._in_run()} && cd {remote_path(self.device.workdir)} || exit 1; "
                   f"env {assignments} setsid nohup {interpreter(self.device)} {args} "
                   f"> {rel}/agent.log 2>&1 < /dev/null & echo $!")
        result = self.ssh.run(command, timeout=60)
        self._check(result, "starting the agent")
        try:
            self.agent_pid = int(last_line(result.stdout))
        except ValueError:
            raise RemoteError(f"{self.host}: the agent did not report its pid") from None
        return self.agent_pid

    def pull(self, local_run: Path) -> dict | None:
        """Bring the device's client folders and agent files into the local run folder; agent.json's data.
        None: nothing pulled (the device unreachable, or the local run folder removed: it is not made again)."""
        if not (local_run / RUN_JSON).is_file():
            return None
        pulled = self._pulls.call()
        self.reachable = pulled is not None or self._pulls.exit_code != 255  # ssh's own failure: no connection
        if not pulled:
            return None
        device_dir = local_run / "devices" / self.host
        try:
            device_dir.parent.mkdir(exist_ok=True)  # never its parents: a removed run folder stays removed
            device_dir.mkdir(exist_ok=True)
        except FileNotFoundError:
            return None
        try:
            tar = tarfile.open(fileobj=io.BytesIO(pulled), mode="r")
        except tarfile.TarError:  # cut short (a file that changed as tar read it): the next pull has it
            return None
        with tar:
            for member in tar.getmembers():
                if not (local_run / RUN_JSON).is_file():  # removed while it is pulled
                    return None
                if not (member.isfile() or member.isdir()):
                    continue
                top = member.name.split("/", 1)[0]
                if top.startswith("client_") and top[7:].isdigit():
                    tar.extract(member, local_run, filter="data")
                elif member.name in ("agent.json", "agent.log"):
                    tar.extract(member, device_dir, filter="data")
        try:
            return json.loads((device_dir / "agent.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def close(self) -> None:
        """End the connection the pulls go through."""
        self._pulls.close()

    def stop(self, grace: float) -> tuple[int, str]:
        """fl-finish on the device itself: the exact-tag rule, applied where the processes are."""
        args = shlex.join(["-m", FINISH, "--kill-tag", self.tag, "--local-only", "--grace", str(grace)])
        result = self.ssh.run(f"{self.python_word()} {args}", timeout=grace + 60)
        return result.returncode, (result.stdout + result.stderr).decode("utf-8", "replace")

    def tunnel_argv(self, remote_port: int, local_port: int) -> list[str]:
        """ssh -R: the device's 127.0.0.1:remote_port reaches this machine's SuperLink; remote_port 0:
        the device picks a free one, and OpenSSH prints it (launcher.devices.ssh.allocated_port)."""
        return self.ssh.argv("-N", "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=INFO",  # INFO: the port line
                             "-R", f"127.0.0.1:{remote_port}:127.0.0.1:{local_port}")
