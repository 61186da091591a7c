"""Ray for a virtual run: an existing cluster it joins (``--ray-address``), and where Ray's own logs go.

    address = check_ray_address("10.0.0.5:6379")   # RayAddressError: one line, before anything starts
    link = ray_temp_link(run_dir)                   # /tmp/fl-ray-1a2b3c4d -> RUN/ray, made now
    env.update(ray_env(address, link))              # RAY_ADDRESS (joins) or "" (a Ray of its own), RAY_TMPDIR
    remove_ray_temp_link(run_dir)                   # when the run ends (the supervisor, or fl-finish)

Flower's Ray backend calls ``ray.init()`` with no address: Ray joins the cluster named by RAY_ADDRESS in the
environment of the SuperLink's simulation runtime, and starts a Ray of its own when it is empty. Ray puts its
session (logs, unix sockets) under ``$RAY_TMPDIR/ray``; its socket paths must stay within 107 bytes, so
RAY_TMPDIR is a short link under /tmp to the run folder, and Ray's session lands in ``RUN/ray``.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

from contract.errors import InputError

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
    """The environment the simulation runtime's Ray reads: the cluster to join ("": start one), its temp dir."""
    return {"RAY_ADDRESS": address or "", "RAY_TMPDIR": str(temp_link)}
