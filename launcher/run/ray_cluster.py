"""Ray for a virtual run: an existing cluster it joins (``--ray-address``), and where Ray's own logs go.

    address = check_ray_address("10.0.0.5:6379")   # RayAddressError: one line, before anything starts
    link = ray_temp_link(run_dir)                   # /tmp/fl-ray-1a2b3c4d -> RUN/ray, made now
    env.update(ray_env(address, link))              # RAY_ADDRESS (joins) or "" (a Ray of its own), RAY_TMPDIR
    remove_ray_temp_link(run_dir)                   # when the run ends (the supervisor, or fl-finish)
    check_cluster_nodes("10.0.0.5:6379")            # [NodeCheck("10.0.0.6", ("torch missing (here 2.13.0)",)), ...]

Flower's Ray backend calls ``ray.init()`` with no address: Ray joins the cluster named by RAY_ADDRESS in the
environment of the SuperLink's simulation runtime, and starts a Ray of its own when it is empty. Ray puts its
session (logs, unix sockets) under ``$RAY_TMPDIR/ray``; its socket paths must stay within 107 bytes, so
RAY_TMPDIR is a short link under /tmp to the run folder, and Ray's session lands in ``RUN/ray``.

Ray passes a task's arguments and results of up to RAY_max_direct_call_object_size bytes inside the task call
itself, larger ones through its object store (a shared-memory object per task, created, sealed, pinned, fetched
and freed by the raylet: about 2.8 ms of the raylet's CPU, and more of the caller's and the worker's, per task).
Each virtual client's task carries the model (the built-in LeNet: 0.25 MB, over Ray's 100 KiB default), so a
run raises the limit to INLINE_BYTES for its own driver and workers (a value the user set is kept): the final
evaluation of 3500 clients took 49 s of CPU through the object store, 27 s without it.

A Ray of the run's own starts no Python workers ahead: Ray prestarts one per CPU when the first driver connects,
but Flower's driver gives its job a runtime environment (its PYTHONPATH), so the job's actors start workers of
their own and the prestarted ones (each importing Ray, ~0.7 s of CPU) exit unused, within round 1's start.
"""

from __future__ import annotations

import hashlib
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

from contract.errors import InputError
from launcher.apps.requirements import check_requirements
from launcher.devices.preflight import local_versions
from launcher.pyenv.python_facts import marker_environment

INLINE_ENV = "RAY_max_direct_call_object_size"
INLINE_BYTES = 1 << 20  # a model of up to 256k float32 parameters goes inside its task call (a larger one: no gain)
PRESTART_ENV = "RAY_prestart_worker_first_driver"  # "0": no workers started before the job's own
RAY_LOGS = "ray"  # RUN/ray: Ray's session of a local virtual run ($RAY_TMPDIR/ray)
LINK_PREFIX = "/tmp/fl-ray-"
CONNECT_TIMEOUT = 3.0


class RayAddressError(InputError):
    """A --ray-address (or RAY_ADDRESS) that is not HOST:PORT, or that nothing answers at."""


def parse_ray_address(address: str) -> tuple[str, int]:
    """(host, port) of a cluster's head, HOST:PORT as `ray start --head` prints it."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or "://" in address or not port.isdigit() or not 0 < int(port) < 65536:
        raise RayAddressError(f"--ray-address {address!r} must be the cluster head's HOST:PORT "
                              f"(as `ray start --head` prints it)")
    return host.strip("[]"), int(port)


def check_ray_address(address: str) -> str:
    """The address, once a TCP connect to it succeeds (Ray itself would retry an absent head for minutes)."""
    host, port = parse_ray_address(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as err:
        raise RayAddressError(f"--ray-address {address}: no Ray cluster answers there "
                              f"({err.strerror or err.__class__.__name__})") from None
    return address.strip()


def ray_temp_link(run_dir: Path) -> Path:
    """The run's short Ray temp dir: a link under /tmp to the run folder (Ray adds /ray), named by its hash."""
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:10]
    return Path(f"{LINK_PREFIX}{digest}")


def make_ray_temp_link(run_dir: Path) -> Path:
    """Make the link (replacing a stale one of the same run folder)."""
    target = run_dir.resolve()
    link = ray_temp_link(run_dir)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target, target_is_directory=True)
    return link


def remove_ray_temp_link(run_dir: Path) -> None:
    """Remove the run's link (its logs stay in RUN/ray); a link that points elsewhere is not the run's."""
    link = ray_temp_link(run_dir)
    try:
        if link.is_symlink() and Path(os.readlink(link)) == run_dir.resolve():
            link.unlink()
    except OSError:
        pass


def ray_env(address: str | None, temp_link: Path) -> dict[str, str]:
    """The environment the simulation runtime's Ray reads: the cluster to join ("": start one), its temp dir, the
    size up to which a task's arguments and results travel inside the call (the user's, when set), and for a Ray
    of its own no prestarted workers (the user's setting, when set; a cluster's raylets keep their own)."""
    env = {"RAY_ADDRESS": address or "", "RAY_TMPDIR": str(temp_link),
           INLINE_ENV: os.environ.get(INLINE_ENV) or str(INLINE_BYTES)}
    if not address:
        env[PRESTART_ENV] = os.environ.get(PRESTART_ENV) or "0"
    return env


# --check --ray-address: each alive node of the cluster asked, by a task pinned to it, for its Python's facts.
# The probe is built from source so that Ray sends it by value: it runs on a node that lacks this launcher.
_PROBE = '''
def probe():
    import platform
    import re
    from importlib.metadata import distributions
    found = {}
    for dist in distributions():  # the first on sys.path wins, as for import (launcher.pyenv.python_facts)
        name = dist.metadata["Name"]
        key = re.sub(r"[-_.]+", "-", name).lower() if name else None
        if key and key not in found:
            found[key] = {"version": dist.version}
    return {"python": platform.python_version(), "installed": found}
'''
NODE_CHECK_TIMEOUT = 180.0  # a node starts a worker for the probe (imports Ray: seconds, more on a busy node)


@dataclass(frozen=True)
class NodeCheck:
    """One cluster node: where it is, and what it lacks to run this launcher's clients (empty: nothing)."""

    ip: str
    problems: tuple[str, ...]

    def line(self) -> str:
        return f"ray node {self.ip}: {'; '.join(self.problems)}" if self.problems else f"ray node {self.ip}: ok"


def _node_problems(facts: dict, mine: dict, requirements: list) -> tuple[str, ...]:
    problems = []
    if ".".join(str(facts["python"]).split(".")[:2]) != mine["python"]:
        problems.append(f"Python {facts['python']} (here {mine['python']})")
    installed = facts["installed"]
    for package in ("fl-launch", "flwr", "torch"):
        theirs = installed.get(package, {}).get("version")
        if theirs != mine[package]:
            problems.append(f"{package} {theirs or 'missing'} (here {mine[package]})")
    if requirements:
        found = check_requirements(requirements, {k: v["version"] for k, v in installed.items()}, marker_environment())
        problems += [f"the app needs {r}, which is missing" for r in found.missing]
    return tuple(problems)


def check_cluster_nodes(address: str, requirements: list | None = None) -> list[NodeCheck]:
    """Every alive node of the cluster at ``address`` (checked reachable first), with what it lacks: Python,
    fl-launch, flwr, torch at the versions here, and an --app's declared requirements."""
    import ray  # noqa: PLC0415  (Ray's import takes seconds: only for this check)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415

    check_ray_address(address)
    namespace: dict = {"__name__": "fl_launch_probe"}  # no importable module: Ray pickles the probe by value
    exec(_PROBE, namespace)  # noqa: S102  (our own constant source)
    with warnings.catch_warnings():  # Ray's notes on its future defaults: the check's output is one line a node
        warnings.simplefilter("ignore", FutureWarning)
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        remote = ray.remote(num_cpus=0)(namespace["probe"])
        pending = {node["NodeManagerAddress"]: remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node["NodeID"], soft=False)).remote() for node in nodes}
        mine = local_versions()
        checks = []
        for ip, ref in sorted(pending.items()):
            try:
                facts = ray.get(ref, timeout=NODE_CHECK_TIMEOUT)
            except Exception as err:  # noqa: BLE001  a node that cannot run the probe: that is its line
                checks.append(NodeCheck(ip, (f"no answer: {type(err).__name__}",)))
                continue
            checks.append(NodeCheck(ip, _node_problems(facts, mine, requirements or [])))
        return checks
    finally:
        ray.shutdown()
