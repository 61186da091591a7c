"""Direct connections (``fl-launch --server-address HOST``): devices reach the SuperLink's Fleet API at HOST
themselves, over TLS, each SuperNode with a key pair made for the run and registered with the SuperLink.

    check_server_address("192.168.1.20")      # None: an address of this machine that devices can reach
    check_server_address("127.0.0.1")         # '--server-address 127.0.0.1 is a loopback address, which ...'
    keys = make_node_keys(run_dir / NODE_KEYS, clients=[0, 1], incarnations=4)   # tls/nodes/client_0.0.key ...
    register_node_keys(run_dir / NODE_KEYS, env)   # None once the SuperLink holds every .pub; else why not

A node has one key per incarnation: its first start, then one per restart (--max-restarts), because the
SuperLink maps a registered public key to one node id for good, and a restarted client must join as a new
node (its old id is marked lost). Private keys are OpenSSH-format EC P-384 keys, mode 0600; the device of a
client gets that client's private keys only, the SuperLink the public ones.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from launcher.processes.entry_modules import REGISTER_NODES
from launcher.processes.nodes import node_key

REGISTER_TIMEOUT = 120  # seconds for every key's registration (one process imports Flower's CLI once)


def addresses_of(host: str) -> list[str]:
    """The IP addresses ``host`` (a name or an address) resolves to here; [] when it does not."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({info[4][0] for info in infos})


def _bindable(address: str) -> bool:
    """Whether a socket of this machine can be bound to ``address`` (it is one of this machine's)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError as err:
            if err.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                return False
            raise
    return True


def check_server_address(host: str) -> str | None:
    """Why ``host`` cannot be the address devices reach the SuperLink at (one line), or None."""
    flag = f"--server-address {host}"
    addresses = addresses_of(host)
    if not addresses:
        return f"{flag}: not an address, nor a name this machine resolves"
    address = addresses[0]
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.is_unspecified:
        return f"{flag}: give the one address devices reach this machine at, not the wildcard"
    if ip.is_loopback:
        return f"{flag} is a loopback address, which devices cannot reach: give this machine's address on their network"
    if not _bindable(address):
        return f"{flag}: {address} is not an address of this machine"
    return None


def bind_address(host: str) -> str:
    """The IP address the Fleet API listens on for ``host`` (check_server_address passed it)."""
    return addresses_of(host)[0]


def public_key(private: Path) -> Path:
    return private.with_suffix(".pub")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def make_node_keys(folder: Path, clients: list[int], incarnations: int) -> list[Path]:
    """Each client's key pairs, one per incarnation, under ``folder``; their private keys' paths."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for client in clients:
        for incarnation in range(incarnations):
            key = ec.generate_private_key(ec.SECP384R1())
            path = node_key(folder, client, incarnation)
            _write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                   serialization.NoEncryption()))
            public_key(path).write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                       serialization.PublicFormat.OpenSSH))
            made.append(path)
    return made


def fleet_address(host: str, port: int) -> str:
    """HOST:PORT as a node's --superlink takes it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def register_node_keys(folder: Path, env: dict[str, str], connection: str = "local") -> str | None:
    """Every public key in ``folder`` registered with the SuperLink of ``connection`` (in $FLWR_HOME of ``env``);
    None, or why not (one line)."""
    keys = sorted(str(path) for path in folder.glob("*.pub"))
    try:
        result = subprocess.run([sys.executable, "-m", REGISTER_NODES, connection, *keys], env={**os.environ, **env},
                                capture_output=True, text=True, timeout=REGISTER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"registering the nodes' keys with the SuperLink took over {REGISTER_TIMEOUT} s"
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return f"registering the nodes' keys with the SuperLink failed: {lines[-1] if lines else result.returncode}"
    return None
