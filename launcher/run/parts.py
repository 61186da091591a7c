"""The parts of a run that run its clients, as the supervisor drives them: one small interface for each.

    for part in parts: part.start()      # in order: the fleet's links, this machine's clients, the devices
    for part in parts: part.poll()       # each poll (every 0.25 s): take in what changed, keep things up
    [r for part in parts for r in part.records()]   # run.json's processes the local process table does not hold
    for part in parts: part.stop(grace)  # each on its own: one that fails leaves the others to do

    LocalClients   this machine's client nodes (a SuperNode and a client process each, forked by the fork server):
                   started, registrations seen, an exit restarted once settled (launcher.processes.restarts)
    FleetLinks     --fleet: each emulated client's link (launcher.fleet.emulation), switched as rounds and traces say
    DeviceClients  --hosts: each device's tunnel and agent (launcher.devices.run_devices), pulled every few seconds

Every local process is in the run's ProcessTable, which run.json's "processes" lists whole; a part's
``records()`` adds what that table does not hold (a device's processes, as its agent reported them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from contract.run_layout import client_dir
from launcher.devices.remote import AgentStart
from launcher.devices.run_devices import RunDevices
from launcher.fleet.emulation import EmulatedFleet
from launcher.flower.node_log import registered_since
from launcher.processes.nodes import NodeStart, start_node
from launcher.processes.ports import free_ports
from launcher.processes.restarts import SettlingExits, restart_client
from launcher.processes.roles import CLIENT_ROLES, NODE_ROLES, TASK_ROLES, Role
from launcher.processes.table import Managed, ProcessTable

LOCALHOST = "localhost"


class Part(Protocol):
    what: str  # for the console: "stopping {what} failed: ..."

    def start(self) -> None: ...
    def poll(self) -> None: ...
    def records(self) -> list[dict]: ...
    def stop(self, grace: float) -> None: ...
    def clients_alive(self) -> int: ...
    def clients_connected(self) -> int: ...  # alive, and their node registered with the SuperLink


class LocalClients:
    """This machine's clients (with a fleet: each through its link and held to its profile)."""

    what = "the clients"

    def __init__(self, table: ProcessTable, nodes: NodeStart, ports: dict[int, int], max_restarts: int,
                 fleet: EmulatedFleet | None, on_restart: Callable[[dict, str], None]) -> None:
        """``ports``: client -> its node's Runtime API port; ``on_restart(entry, host)``: a client restarted or lost."""
        self.table, self.nodes, self.ports, self.max_restarts = table, nodes, ports, max_restarts
        self.fleet, self.on_restart = fleet, on_restart
        self.exits = SettlingExits()  # client exits not restarted yet
        self.restarts: dict[int, int] = {}  # every restart of a client (its next start's incarnation)
        self.planned: dict[int, int] = {}  # those the client asked for (launcher.processes.restarts)
        self._node_log_at: dict[int, int] = {}  # client -> its supernode.log's size when its node (last) started
        self._registered: set[int] = set()  # clients whose (newest) node was seen registered
        self._reconnecting: set[int] = set()  # restarted clients whose new node has not registered yet

    def start(self) -> None:
        for client, port in self.ports.items():
            self.start_node(client, port)

    def poll(self) -> None:
        """Note the clients whose (newest) node registered with the SuperLink since it started; a client once
        seen is not read again until its node starts again."""
        for client in {p.client for p in self.table.alive(NODE_ROLES)} - self._registered:
            log = self._supernode_log(client)
            if client in self._node_log_at and registered_since(log, self._node_log_at[client]):
                self._registered.add(client)
        self._reconnecting -= self._registered

    def records(self) -> list[dict]:
        return []  # all in the run's process table

    def stop(self, grace: float) -> None:
        self.table.stop(CLIENT_ROLES, grace=grace)
        self.table.stop([Role.FORKSERVER], grace=grace)

    # restarts --------------------------------------------------------------
    def exited(self, ended: list[Managed]) -> None:
        """Processes that ended at this poll: their clients restart once the exit settled (restart_settled)."""
        self.exits.add(ended)

    def restart_settled(self, may_start: Callable[[], bool]) -> bool:
        """Restart the clients whose exit settled while ``may_start()`` (no stop begun; asked before each, and
        again as its new pair is about to start: a restart takes seconds). True: processes started or ended."""
        changed = False
        for proc in self.exits.settled():
            if not may_start():
                break
            cause = self.fleet.exit_cause(proc.client) if self.fleet is not None else None
            entry = restart_client(self.table, self.nodes.run_dir, proc, self.restarts, self.max_restarts,
                                   start=lambda c=proc.client: self.start_node(c, free_ports(1)[0]),
                                   may_start=may_start, cause=cause, planned=self.planned)
            if entry is None:
                continue
            changed = True
            self.on_restart(entry, LOCALHOST)
            if entry["restarted"]:
                self._reconnecting.add(proc.client)
        return changed

    def give_up_restarts(self) -> None:
        """A stop has begun: none of the exits waiting is restarted, and nobody is "restarting"."""
        self.exits.drop()
        self._reconnecting.clear()

    def restarting(self) -> list[int]:
        return sorted(self.exits.clients() | self._reconnecting)

    # counts ----------------------------------------------------------------
    def clients_connected(self) -> int:
        """Clients whose node registered with the SuperLink since it (last) started."""
        return len({p.client for p in self.table.alive(NODE_ROLES)} & self._registered)

    def clients_alive(self) -> int:
        return len({p.client for p in self.table.alive(TASK_ROLES)})

    def start_node(self, client: int, port: int) -> None:
        """A client's two processes; with a fleet, through its link and held to its profile."""
        log = self._supernode_log(client)
        self._node_log_at[client] = log.stat().st_size if log.exists() else 0
        self._registered.discard(client)  # its new node registers anew
        if self.fleet is None:  # incarnation: its key of this start, with --server-address's node keys
            start_node(self.table, self.nodes, client, port, incarnation=self.restarts.get(client, 0))
            return
        self.fleet.hold(client, start_node(self.table, self.fleet.superlink_of(client, self.nodes), client, port))

    def _supernode_log(self, client: int) -> Path:
        return client_dir(self.nodes.run_dir, client) / "supernode.log"


class FleetLinks:
    """--fleet: the emulated clients' links; ``describe`` says how each limit is enforced, before they start."""

    what = "the fleet's links"

    def __init__(self, fleet: EmulatedFleet, table: ProcessTable, superlink_port: int, local: list[int],
                 describe: Callable[[dict], None]) -> None:
        self.fleet, self.table, self.superlink_port, self.local = fleet, table, superlink_port, local
        self.describe = describe

    def start(self) -> None:
        self.describe(self.fleet.describe())
        self.fleet.start_links(self.superlink_port, self.local)

    def poll(self) -> None:
        self.fleet.poll()

    def records(self) -> list[dict]:
        return []  # all in the run's process table

    def stop(self, grace: float) -> None:
        self.table.stop([Role.LINK], grace=grace)  # its limits are lifted last (EmulatedFleet.close)

    def clients_alive(self) -> int:
        return 0  # its clients are LocalClients'

    clients_connected = clients_alive


class DeviceClients:
    """--hosts: the devices' clients, each device through its tunnel and agent (with --server-address: directly,
    each node with its key from ``node_keys``)."""

    what = "the devices"

    def __init__(self, devices: RunDevices, table: ProcessTable, spec: AgentStart, ca: Path | None,
                 node_keys: Path | None = None) -> None:
        self.devices, self.table, self.spec, self.ca, self.node_keys = devices, table, spec, ca, node_keys

    def start(self) -> None:
        """RemoteError: a device that could not be staged or started."""
        self.devices.start(self.spec, ca=self.ca, node_keys=self.node_keys)

    def poll(self) -> None:
        self.devices.poll()

    def records(self) -> list[dict]:
        return self.devices.records()

    def stop(self, grace: float) -> None:
        try:
            self.devices.stop(grace)
        finally:
            self.table.stop([Role.TUNNEL], grace=grace)

    def clients_alive(self) -> int:
        return self.devices.alive_clients()  # as their agents last reported

    clients_connected = clients_alive
