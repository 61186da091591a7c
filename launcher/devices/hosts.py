"""The devices file: which hosts take clients, how to reach them, where to work.

    devices = load_hosts("devices.toml")
    [(d.host, d.slots) for d in devices]
    # [('pi-01.local', 2), ('jetson', 4)]

    [defaults]                      # applies to every [[device]]
    user = "pi"
    port = 22
    identity = "~/.ssh/id_ed25519"
    python = "/home/pi/fl/.venv/bin/python"
    workdir = "/home/pi/fl"

    [[device]]
    host = "pi-01.local"            # an address or an alias from the ssh config
    slots = 2
    env = { OMP_NUM_THREADS = "1" }
    node-config = { dataset-path = "/data/part_{i}" }   # into its clients' node configs (wins over --node-config)

Every error names the file and the line: an unknown key, a missing or duplicate
host, a value of the wrong type or shape.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from contract.errors import InputError
from contract.user_toml import UserToml
from launcher.processes.node_config import NodeConfigError, check_node_config

KEYS = {"host", "user", "port", "identity", "python", "workdir", "slots", "env", "node-config"}
DEFAULT_KEYS = KEYS - {"host", "slots"}
SAFE_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}$")
SAFE_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
SAFE_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
RECORD_KEYS = {"node_config": "node-config"}  # a Device field as run.json records it: its hosts-file key
OPTIONAL_RECORD_KEYS = {"user", "port", "identity"}  # None in a record: not given


class HostsError(InputError):
    """The one line a bad --hosts file gets, named by file and line."""


@dataclass(frozen=True)
class Device:
    host: str
    slots: int = 1
    user: str | None = None
    port: int | None = None
    identity: str | None = None
    python: str = "python3"
    workdir: str = "fl-launch"  # relative: under the remote user's home
    env: dict = field(default_factory=dict)
    node_config: dict = field(default_factory=dict)  # added to its clients' node configs ({i}, {n} as the option)

    @property
    def name(self) -> str:
        return self.host


@dataclass(frozen=True)
class DevicePlacement:
    """One device of a run and the clients placed on it: an entry of run.json's plan "devices".

        DevicePlacement(Device("pi-01"), clients=(2, 3)).to_json()
        # {'host': 'pi-01', 'slots': 1, ..., 'node_config': {}, 'clients': [2, 3]}
    """

    device: Device
    clients: tuple[int, ...]

    def to_json(self) -> dict:
        return {**asdict(self.device), "clients": list(self.clients)}

    @classmethod
    def from_json(cls, data: dict, where: str = "run.json's device") -> DevicePlacement:
        """An entry read back from a run folder, checked as load_hosts checks a hosts file's (a run folder is
        data: its values reach ssh's command line). HostsError: a value the hosts file would refuse;
        KeyError or TypeError: an entry of another shape than fl-launch writes."""
        device = {k: v for k, v in data.items() if k != "clients"}
        for key, value in device.items():
            if value is not None or key not in OPTIONAL_RECORD_KEYS:
                _check_value(RECORD_KEYS.get(key, key), value, lambda k: f"{where} {device.get('host')!r}")
        clients = data["clients"]
        if not isinstance(clients, list) or not all(type(c) is int and c >= 0 for c in clients):
            raise TypeError("clients must be a list of client numbers")
        return cls(Device(**device), tuple(clients))


def _check_value(key: str, value, where) -> None:
    def bad(why: str):
        raise HostsError(f"{where(key)}: {key} {why}")

    if key in ("host",):
        if not isinstance(value, str) or not SAFE_HOST.match(value):
            bad("must be a host name, address or ssh alias (letters, digits, '.', '-', '_', ':')")
    elif key == "user":
        if not isinstance(value, str) or not SAFE_USER.match(value):
            bad("must be a plain user name")
    elif key in ("port",):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
            bad("must be an integer from 1 to 65535")
    elif key == "slots":
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1024:
            bad("must be an integer from 1 to 1024")
    elif key in ("identity", "python", "workdir"):
        if not isinstance(value, str) or not value or any(c in value for c in "\n\r\0"):
            bad("must be a non-empty path on one line")
    elif key == "env":
        if not isinstance(value, dict):
            bad("must be a table of NAME = \"value\"")
        for name, text in value.items():
            if not SAFE_ENV_NAME.match(name) or not isinstance(text, str) or "\0" in text or "\n" in text:
                bad(f"entry {name!r} must be NAME = \"one-line string\"")
    elif key == "node-config":
        if not isinstance(value, dict):
            bad("must be a table of key = value (as --node-config takes them)")
        try:
            check_node_config(value, "node-config")
        except NodeConfigError as err:
            raise HostsError(f"{where(key)}: {err}") from None


def load_hosts(path: str | Path) -> list[Device]:
    toml = UserToml.read(path, HostsError, "hosts file")
    path, data = toml.path, toml.data
    for key in data:
        if key not in ("defaults", "device"):
            raise HostsError(f"{toml.at_top(key)}: unknown key {key!r} (expected [defaults] and [[device]])")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise HostsError(f"{path}:1: defaults must be a table")
    for key, value in defaults.items():
        where = lambda k: toml.at("defaults", None, k)  # noqa: E731
        if key not in DEFAULT_KEYS:
            raise HostsError(f"{where(key)}: unknown key {key!r} in [defaults]")
        _check_value(key, value, where)
    entries = data.get("device", [])
    if not isinstance(entries, list) or not entries:
        raise HostsError(f"{path}:1: no [[device]] entries")
    devices, seen = [], {}
    for index, entry in enumerate(entries):
        where = lambda k, i=index: toml.at("device", i, k)  # noqa: E731
        for key in entry:
            if key not in KEYS:
                raise HostsError(f"{where(key)}: unknown key {key!r} in [[device]]")
        if "host" not in entry:
            raise HostsError(f"{where(None)}: [[device]] without a host")
        merged = {**defaults, **entry}
        for key, value in entry.items():
            _check_value(key, value, where)
        if merged["host"] in seen:
            raise HostsError(f"{where('host')}: duplicate host {merged['host']!r} "
                             f"(first at line {seen[merged['host']]})")
        seen[merged["host"]] = toml.line("device", index, "host")
        env = {**defaults.get("env", {}), **entry.get("env", {})}
        node_config = {**defaults.get("node-config", {}), **entry.get("node-config", {})}
        merged.pop("node-config", None)
        devices.append(Device(**{**merged, "env": env, "node_config": node_config}))
    return devices

def place_clients(devices: list[Device], client_num: int) -> list[Device]:
    """Device of each client, filling devices' slots in file order."""
    slots = [d for d in devices for _ in range(d.slots)]
    if client_num > len(slots):
        raise HostsError(f"{client_num} clients do not fit the {len(slots)} slots of {len(devices)} devices")
    return slots[:client_num]


def by_device(placement: list[Device]) -> list[DevicePlacement]:
    """Each device of a placement (place_clients') with its clients, in the order they first appear."""
    clients: dict[str, list[int]] = {}
    devices: dict[str, Device] = {}
    for client, device in enumerate(placement):
        devices.setdefault(device.host, device)
        clients.setdefault(device.host, []).append(client)
    return [DevicePlacement(devices[host], tuple(clients[host])) for host in devices]
