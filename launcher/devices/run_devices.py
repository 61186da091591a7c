"""A run's devices as the supervisor drives them: staged, each with its tunnel and agent, pulled, stopped.

    devices = RunDevices(devices_of(info), run_dir, table, view, on_restart=record, on_change=write_processes)
    devices.start(AgentStart(superlink_port=link_port, num_clients=10, threads=1, grace=10), ca=None)
    devices.poll()             # each poll: a dropped tunnel back up; logs and agent.json every few seconds
    devices.alive_clients()    # the devices' ClientApps alive, as their agents last reported
    devices.records()          # their process records, for run.json's "processes"
    devices.stop(grace=10)     # fl-finish on each device, then a last pull

Each device gets an ``ssh -R`` tunnel (a local process of role ``tunnel``) so that its nodes reach the
SuperLink at their own 127.0.0.1, on a port the device picks (``-R 0:...``: a port taken there fails
nothing; a tunnel brought back asks for the same one), and a detached agent (launcher.devices.agent)
that runs its clients. With ``AgentStart.direct`` (fl-launch --server-address) there is no tunnel: the
nodes reach the SuperLink at that address themselves, each with its own key (staged with the CA).
A device SSH cannot reach sits out: its nodes are marked away (contract.lost_nodes) until it answers
again with its tunnel holding. A client its agent restarted is handed to ``on_restart(entry, host)``;
``on_change()`` is called whenever the records changed. With no devices every method does nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from contract.lost_nodes import set_away
from contract.run_layout import RUN_JSON, client_dir
from launcher.devices.remote import AgentStart, RemoteDevice, RemoteError
from launcher.devices.ssh import CONNECT_TIMEOUT, allocated_port
from launcher.flower.node_log import supernode_id
from launcher.processes.roles import TASK_ROLES, Role
from launcher.processes.table import Managed, ProcessTable, describe_exit

PULL_SECONDS = 3.0  # how often a device's logs are brought over while the run goes on
TUNNEL_RETRY_SECONDS = 2.0  # a device off the network: try its tunnel again this often
PORT_WAIT_SECONDS = CONNECT_TIMEOUT + 10  # a new tunnel says which port the device bound within this


class RunDevices:
    def __init__(self, devices: list[tuple[RemoteDevice, list[int]]], run_dir: Path, table: ProcessTable, view,
                 on_restart: Callable[[dict, str], None], on_change: Callable[[], None]) -> None:
        self.devices = devices
        self.run_dir = run_dir
        self.table = table
        self.view = view
        self.on_restart = on_restart
        self.on_change = on_change
        self.tunnels: dict[str, Managed] = {}
        self._remote_procs: dict[str, list[dict]] = {}
        self._tunnel_log_at: dict[str, int] = {}  # device -> its tunnel.log's size when its last tunnel started
        self._away: dict[str, set[int]] = {}  # device -> its node ids while SSH cannot reach it
        self._tunnel_retry_at: dict[str, float] = {}
        self._restarts_seen: dict[str, int] = {}
        self._pulls: dict[str, Future] = {}
        self._last_pull = 0.0
        self._link_port: int | None = None
        self._remote_ports: dict[str, int] = {}  # device -> the port its tunnel's end holds there
        self._direct = False  # its nodes reach the SuperLink themselves: no tunnel
        self._pool = ThreadPoolExecutor(max_workers=len(devices)) if devices else None

    def start(self, spec: AgentStart, ca: Path | None, node_keys: Path | None = None) -> None:
        """Each device: partitions over, a tunnel to the SuperLink up (none with ``spec.direct``), the agent
        started detached. ``node_keys``: the folder of the nodes' keys. RemoteError: a device that could not
        be staged or started."""
        self._link_port = spec.superlink_port
        self._direct = spec.direct is not None
        for device, clients in self.devices:
            self.view.message(f"{device.host}: staging {len(clients)} client(s)")
            device.stage(self.run_dir, clients, ca=ca, remote_data_dir=spec.remote_data_dir, node_keys=node_keys)
            agent_spec = spec
            if not self._direct:
                self._start_tunnel(device)
                agent_spec = dataclasses.replace(spec, superlink_port=self._remote_port(device))
            pid = device.start_agent(agent_spec, clients)
            self._remote_procs[device.host] = [{"role": Role.AGENT, "client": None, "host": device.host, "pid": pid,
                                                "exit_code": None, "exit": "running"}]
            self.view.message(f"{device.host}: agent pid {pid}, clients {', '.join(map(str, clients))}")

    def records(self) -> list[dict]:
        """The devices' process records (each agent, and the processes it reported), for run.json."""
        return [p for procs in self._remote_procs.values() for p in procs]

    def alive_clients(self) -> int:
        return sum(1 for p in self.records() if p["role"] in TASK_ROLES and p.get("exit_code") is None)

    def poll(self, final: bool = False) -> None:
        """Pull logs and agent state every few seconds; bring a dropped tunnel back."""
        if not self.devices:
            return
        for device, _ in self.devices:
            tunnel = self.tunnels.get(device.host)
            if self._tunnel_holding(device):
                self._tunnel_retry_at.pop(device.host, None)  # holding: the next drop is news again
            if not final and tunnel is not None and not tunnel.alive:
                if device.host not in self._tunnel_retry_at:
                    self.view.message(f"{device.host}: SSH tunnel ended ({describe_exit(tunnel.exit_code)}); "
                                      f"reconnecting")
                if time.monotonic() >= self._tunnel_retry_at.get(device.host, 0.0):
                    self._tunnel_retry_at[device.host] = time.monotonic() + TUNNEL_RETRY_SECONDS
                    self._start_tunnel(device)
        now = time.monotonic()
        if not final and now - self._last_pull < PULL_SECONDS:
            return
        self._last_pull = now
        for device, clients in self.devices:
            future = self._pulls.get(device.host)
            if future is not None and future.done():
                self._absorb(device, future.result())
                self._update_away(device, clients)
                future = None
            if future is None:
                self._pulls[device.host] = self._pool.submit(device.pull, self.run_dir)
        if final:
            for device, _ in self.devices:
                self._absorb(device, self._pulls.pop(device.host).result())

    def stop(self, grace: float) -> None:
        """fl-finish on every device at once, then the last pull of their logs and state."""
        if not self.devices:
            return
        stops = {device.host: self._pool.submit(device.stop, grace) for device, _ in self.devices}
        try:
            for host, future in stops.items():
                code, output = future.result()
                if code != 0:
                    self.view.message(f"{host}: stopping its processes said: "
                                      f"{output.strip().splitlines()[-1:] or code}")
            self.poll(final=True)
        finally:
            self._pool.shutdown(wait=True)
            for device, _ in self.devices:
                device.close()

    def _tunnel_log(self, device: RemoteDevice) -> Path:
        return self.run_dir / "devices" / device.host / "tunnel.log"

    def _start_tunnel(self, device: RemoteDevice) -> None:
        """Its first tunnel lets the device pick the port (0); one brought back asks for that port again."""
        if not (self.run_dir / RUN_JSON).is_file():  # the run folder removed: its tunnel log would make it again
            return
        log = self._tunnel_log(device)
        self._tunnel_log_at[device.host] = log.stat().st_size if log.exists() else 0
        self.tunnels[device.host] = self.table.spawn(
            Role.TUNNEL, device.tunnel_argv(self._remote_ports.get(device.host, 0), self._link_port),
            log=log, port=self._link_port,
        )

    def _remote_port(self, device: RemoteDevice) -> int:
        """The port the device bound for its tunnel, as OpenSSH reports it. RemoteError: none came."""
        if device.host in self._remote_ports:
            return self._remote_ports[device.host]
        log, tunnel = self._tunnel_log(device), self.tunnels.get(device.host)
        deadline = time.monotonic() + PORT_WAIT_SECONDS
        while tunnel is not None and time.monotonic() < deadline:
            with open(log, "rb") as fh:
                fh.seek(self._tunnel_log_at.get(device.host, 0))
                port = allocated_port(fh.read().decode("utf-8", "replace"))
            if port is not None:
                self._remote_ports[device.host] = port
                return port
            if not tunnel.alive:
                break
            time.sleep(0.1)
        raise RemoteError(f"{device.host}: the SSH tunnel to the SuperLink did not come up (see {log})")

    def _tunnel_holding(self, device: RemoteDevice) -> bool:
        """Its tunnel is up and has stayed up a while (not one that is about to fail again); with no tunnel to
        hold (direct connections), SSH reaching it is all."""
        if self._direct:
            return True
        tunnel = self.tunnels.get(device.host)
        return tunnel is not None and tunnel.alive and time.time() - tunnel.started > 2 * PULL_SECONDS

    def _update_away(self, device: RemoteDevice, clients: list[int]) -> None:
        """A device SSH cannot reach: its nodes sit out (no waiting, no sampling) until it is back."""
        if not device.reachable and device.host not in self._away:
            nodes = {n for c in clients if (n := supernode_id(client_dir(self.run_dir, c) / "supernode.log"))}
            self._away[device.host] = nodes
            set_away(self.run_dir, device.host, nodes)
            self.view.message(f"{device.host}: unreachable; its clients sit out until it is back")
        elif device.reachable and device.host in self._away and self._tunnel_holding(device):
            del self._away[device.host]  # reachable again, its tunnel holding: back in the rounds
            set_away(self.run_dir, device.host, set())
            self._tunnel_retry_at.pop(device.host, None)
            self.view.message(f"{device.host}: back")

    def _absorb(self, device: RemoteDevice, agent: dict | None) -> None:
        """Take in a pulled agent.json: its new restarts, its processes' records."""
        if not agent:
            return
        seen = self._restarts_seen.setdefault(device.host, 0)
        for entry in agent.get("restarts", [])[seen:]:  # the agent restarted a client of its own
            self.on_restart(entry, device.host)
        self._restarts_seen[device.host] = len(agent.get("restarts", []))
        agent_pid = device.agent_pid or agent.get("pid")
        state = agent.get("state")
        records = [{"role": Role.AGENT, "client": None, "host": device.host, "pid": agent_pid, "port": None,
                    "exit_code": 0 if state == "stopped" else None, "exit": state}]
        records += [dict(p, host=device.host) for p in agent.get("processes", [])]
        self._remote_procs[device.host] = records
        self.on_change()
