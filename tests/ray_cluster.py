"""A two-node Ray cluster made by a test on this machine: the head here, the worker in its own network namespace.

    with ray_cluster(tmp_path) as cluster:
        cluster.address                  # "10.200.x.1:PORT", the head's GCS, for --ray-address
        cluster.node_ips                 # {"10.200.x.1", "10.200.x.2"}
        cluster.members()                # {(pid, create_time), ...}: every process of both nodes now
        cluster.alive_nodes()            # 2, as the cluster's own GCS counts them
    ray_cluster(tmp_path, worker_fake=("torch", "0.0.1"))   # the worker node's Python reports torch 0.0.1

Each node is started by `ray start` inside a cgroup of the test's own (cgroup2), with a short temp dir of its
own, and stopped by that cgroup (SIGTERM, then cgroup.kill): never `ray stop` (it would stop every Ray on this
machine) and never by name. The namespace and its veth pair are the test's own too.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.devices import veth_namespace
from tests.helpers import BIN

CGROUP2 = Path("/sys/fs/cgroup/unified")
NODE_FLAGS = ["--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", "100000000", "--disable-usage-stats"]


def available() -> str | None:
    """Why a cluster cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root for network namespaces and cgroups"
    if shutil.which("ip") is None:
        return "ip is not installed"
    if not (CGROUP2 / "cgroup.procs").exists():
        return f"no cgroup2 hierarchy at {CGROUP2}"
    if not (BIN / "ray").exists():
        return "ray is not installed (flwr[simulation])"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _members(group: Path) -> set[tuple[int, float]]:
    try:
        pids = {int(w) for w in (group / "cgroup.procs").read_text().split()}
    except (OSError, ValueError):
        return set()
    out = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.add((pid, proc.create_time()))
        except psutil.Error:
            continue
    return out


@dataclass
class Cluster:
    address: str
    node_ips: set[str]
    groups: list[Path]
    temp: Path

    def members(self) -> set[tuple[int, float]]:
        return set().union(*(_members(g) for g in self.groups))

    def cmdlines(self) -> dict[int, str]:
        """{pid: command line} of the nodes' processes now (Ray's workers name themselves ray::...)."""
        out = {}
        for pid, _ in self.members():
            try:
                out[pid] = " ".join(psutil.Process(pid).cmdline())
            except psutil.Error:
                continue
        return out

    def alive_nodes(self) -> int:
        done = subprocess.run([str(BIN / "ray"), "status", "--address", self.address], capture_output=True,
                              text=True, timeout=60)
        active = done.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return sum(1 for line in active.splitlines() if " node_" in line)


def _start_node(group: Path, argv: list[str], log: Path, netns: str | None = None,
                env: dict[str, str] | None = None) -> None:
    """`ray start` in the cgroup (its daemons stay there when it returns)."""
    group.mkdir()
    wrapped = ["ip", "netns", "exec", netns, *argv] if netns else argv
    script = f'echo $$ > {group}/cgroup.procs && exec "$@"'
    with open(log, "ab") as out:
        done = subprocess.run(["sh", "-c", script, "sh", *wrapped], stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=120, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"ray start failed: {log.read_text()[-1500:]}")


def _stop_group(group: Path) -> None:
    for pid, _ in _members(group):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 5
    while _members(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    if group.exists():
        (group / "cgroup.kill").write_text("1")  # gcs_server and the autoscaler ignore SIGTERM
    deadline = time.monotonic() + 10
    while group.exists() and time.monotonic() < deadline:
        try:
            group.rmdir()
        except OSError:
            time.sleep(0.2)


def _fake_distribution(folder: Path, name: str, version: str) -> Path:
    """A folder whose only content is a dist-info: on a node's PYTHONPATH, importlib.metadata finds this
    version of ``name`` first (nothing is imported from it)."""
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return folder


@contextmanager
def ray_cluster(folder: Path, timeout: float = 120, worker_fake: tuple[str, str] | None = None):
    """``worker_fake``: (distribution, version) the worker node's Python reports instead of its own."""
    tag = os.getpid() % 10000
    net = f"10.200.{tag % 250}"
    ns, host_if, ns_if = f"flr-{tag}", f"frh{tag}", f"frn{tag}"
    temp = Path(tempfile.mkdtemp(prefix="flr", dir="/tmp"))  # short: Ray's socket paths stay within 107 bytes
    root = CGROUP2 / f"fl-test-ray-{tag}"
    head_group, worker_group = root / "head", root / "worker"
    port = _free_port()
    try:
        veth_namespace(ns, host_if, ns_if, net)
        root.mkdir()
        ray = str(BIN / "ray")
        _start_node(head_group, [ray, "start", "--head", "--node-ip-address", f"{net}.1", "--port", str(port),
                                 "--include-dashboard", "false", "--ray-client-server-port", str(_free_port()),
                                 "--temp-dir", str(temp / "h"), *NODE_FLAGS], folder / "ray-head.log")
        env = dict(os.environ)
        if worker_fake:
            fake = _fake_distribution(temp / "fake", *worker_fake)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(fake), env.get("PYTHONPATH")) if p)
        _start_node(worker_group, [ray, "start", "--address", f"{net}.1:{port}", "--node-ip-address", f"{net}.2",
                                   "--temp-dir", str(temp / "w"), *NODE_FLAGS], folder / "ray-worker.log", netns=ns,
                    env=env)
        cluster = Cluster(f"{net}.1:{port}", {f"{net}.1", f"{net}.2"}, [head_group, worker_group], temp)
        deadline = time.monotonic() + timeout
        while cluster.alive_nodes() < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not reach 2 nodes in {timeout:g} s")
            time.sleep(1)
        yield cluster
    finally:
        for group in (worker_group, head_group):
            if group.exists():
                _stop_group(group)
        if root.exists():
            root.rmdir()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)
