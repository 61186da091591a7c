"""A run's local clients held to their device profiles: links, CPU and memory limits, online or not.

    fleet = EmulatedFleet(read_fleet_json(run_dir), run_dir, table, seed=0, name="exp1")
    fleet.start_links(superlink_port, local=[0, 1]) # a link emulator per local client whose profile needs one
    spec = fleet.superlink_of(client, spec)       # the node's --superlink: its link's port, or the SuperLink's
    fleet.hold(client, start_node(table, spec, client, port))   # CPU and memory limits on its processes
    fleet.poll()                                  # each poll: links switched as server/fleet_round.json says
    fleet.exit_cause(client)                      # "out of memory (profile pi4)" when the limit killed it
    fleet.clear_leftovers()                       # once the run is claimed: empty groups an earlier attempt left
    fleet.close()                                 # limits lifted, their cgroups removed

Process mode only (virtual mode emulates the same profiles in the app, on an emulated clock). A client whose
profile has a link (rate, latency, loss) or an availability or trace gets its own link emulator
(launcher.fleet.link, a process of role ``link`` in the run's table) between its SuperNode and the SuperLink;
one with cpu or memory gets a limit handle (launcher.fleet.limits: cgroups where the machine lets us write
them, else SIGSTOP/SIGCONT and a resident-memory watchdog) holding its SuperNode, its task host and every task
the host forks. Memory is also watched as a device would hold the client: every page its processes use, even
those this machine shares with the fork server, a page several of them map counted once (memory.held_bytes);
above the profile's memory the client is killed whole, the cause "out of memory (profile X)". A cgroup's own
memory limit at the same figure charges only the pages the client touched first (not those of the fork server
it maps), so it is a backstop: the watch binds. The ServerApp writes, before it samples a round, which
clients are offline (contract.fleet_record.FleetRound); their links are cut until they are back online. A trace's
windows are followed on the run's clock between rounds too, so a client can drop out mid-round. A schedule
profile's link takes, before each round is sent, the schedule's row in force at the round's clock.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil

from contract.fleet_record import FLEET_ROUND_FILE, Fleet, acknowledge_round, read_fleet_round
from contract.run_layout import client_dir
from launcher.fleet.cgroup_limits import TagGroups, group_name
from launcher.fleet.limits import ClientLimits, Limiter
from launcher.fleet.link import LinkSpec
from launcher.fleet.memory import MemoryGauge
from launcher.fleet.memory import describe as counting
from launcher.processes.entry_modules import FLEET_LINK
from launcher.processes.nodes import NodeStart
from launcher.processes.ports import free_ports, wait_for_port
from launcher.processes.roles import Role
from launcher.processes.table import Managed, ProcessTable

LINK_START_SECONDS = 15.0
LINK_SHAPE_FILE = "link_shape.json"  # in a client's folder: its link's shape now (a schedule profile's)
CLOSE_SECONDS = 3.0  # for every client's groups together, while their dying members hold them


class EmulatedFleet:
    def __init__(self, fleet: Fleet, run_dir: Path, table: ProcessTable, seed: int, name: str,
                 limiter: Limiter | None = None) -> None:
        self.fleet, self.run_dir, self.table, self.seed, self.name = fleet, Path(run_dir), table, seed, name
        clients = range(fleet.num_clients)
        self.limited = [c for c in clients if fleet.profile_of(c).needs_limits]
        self.linked = [c for c in clients if fleet.profile_of(c).needs_link]
        self.limiter = (limiter or Limiter.choose()) if self.limited else None
        self.handles = {}
        self.links: dict[int, Managed] = {}
        self.online: dict[int, bool] = {}
        self.shapes: dict[int, LinkSpec] = {}  # a schedule profile's client: the shape its link has now
        self._round_seen: tuple[float, int] | None = None  # (mtime, round) of the fleet_round.json acted on
        self._clock: tuple[float, float] | None = None  # (run clock, monotonic time) when that file was read
        self._offline: set[int] = set()
        self._to_acknowledge: int | None = None
        self._ooms_seen: dict[int, int] = {}  # per client: OOM kills already told as an exit's cause
        self._rss_kills: dict[int, int] = {}  # per client: kills by the memory watch
        self._gauges: dict[int, MemoryGauge] = {}  # per client with a memory limit

    def clear_leftovers(self) -> None:
        """Remove the empty groups an earlier attempt of this run left (its supervisor killed); one a live process
        still holds is adopted by the client that makes it again. Only once the run is claimed: another live
        run's groups are not this one's to touch."""
        if self.limited:
            TagGroups.find(self.name).remove(timeout=0)

    def describe(self) -> dict:
        """How each limit is enforced, for run.json and the console."""
        memory = any(self.fleet.profile_of(c).memory is not None for c in self.limited)
        return {"limits": self.limiter.description if self.limiter else None,
                "memory": (f"the memory the client's processes hold together, a page they share counted once "
                           f"({counting()}), watched every poll (0.25 s); the client is killed whole above its "
                           "profile's memory; the cgroup's limit at the same figure is a backstop") if memory else None,
                "links": (f"user-space link emulator ({FLEET_LINK}), one process per client, "
                          f"for {len(self.linked)} of {self.fleet.num_clients} clients") if self.linked else None}

    # links -----------------------------------------------------------------
    def start_links(self, superlink_port: int, local: list[int]) -> None:
        """A link emulator for each local client that needs one, listening before its node starts."""
        clients = [c for c in self.linked if c in set(local)]
        for client, port in zip(clients, free_ports(len(clients))):
            profile = self.fleet.profile_of(client)
            folder = client_dir(self.run_dir, client)
            argv = [sys.executable, "-m", FLEET_LINK, "--listen", str(port),
                    "--upstream", f"127.0.0.1:{superlink_port}", *LinkSpec.of(profile).args(),
                    "--seed", str(self.seed * 1_000_003 + client), "--counters", str(folder / "link.json")]
            if profile.schedule is not None:
                argv += ["--spec-file", str(folder / LINK_SHAPE_FILE)]
                self.shapes[client] = LinkSpec.of(profile)
            self.links[client] = self.table.spawn(Role.LINK, argv, log=folder / "link.log", client=client, port=port)
            self.online[client] = True
        for client, link in self.links.items():
            if not wait_for_port("127.0.0.1", link.port, LINK_START_SECONDS, alive=lambda p=link: self._alive(p)):
                raise RuntimeError(f"client {client}'s link emulator did not start (see {link.log})")

    def _alive(self, proc: Managed) -> bool:
        self.table.reap()
        return proc.alive

    def superlink_of(self, client: int, spec: NodeStart) -> NodeStart:
        """The node's start specification, pointed at its link when it has one."""
        link = self.links.get(client)
        return spec if link is None else spec.through(f"127.0.0.1:{link.port}")

    def poll(self) -> None:
        """Switch links as the ServerApp's newest round says (availability) and as traces say (run clock);
        kill what is left of a client whose limit's OOM killer took one of its processes."""
        self._read_round()
        for client, link in self.links.items():
            want = self._wants_online(client)
            if want != self.online[client] and link.alive:
                os.kill(link.pid, signal.SIGUSR2 if want else signal.SIGUSR1)
                self.online[client] = want
        if self._to_acknowledge is not None:  # the ServerApp waits for this before it sends the round
            acknowledge_round(self.run_dir, self._to_acknowledge)
            self._to_acknowledge = None
        for client, handle in self.handles.items():
            if handle.oom_kills() > self._ooms_seen.get(client, 0) and handle.pids():
                handle.kill()  # cgroup v1's OOM killer takes one process; the client goes whole
        self._watch_memory()

    def _read_round(self) -> None:
        path = self.run_dir / FLEET_ROUND_FILE
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if self._round_seen is not None and self._round_seen[0] == mtime:
            return
        current = read_fleet_round(self.run_dir)
        if current is None:
            return
        self._round_seen = (mtime, current.round)
        self._offline = set(current.offline)
        self._clock = (current.clock, time.monotonic())
        self._shape_links(current.clock)
        self._to_acknowledge = current.round

    def _shape_links(self, clock: float) -> None:
        """Before a round is sent: each schedule profile's link to the row in force at the round's clock (the
        link reads its shape file on SIGHUP)."""
        for client, shape in self.shapes.items():
            want = LinkSpec.of(self.fleet.profile_of(client).link_at(clock))
            link = self.links.get(client)
            if want == shape or link is None or not link.alive:
                continue
            path = client_dir(self.run_dir, client) / LINK_SHAPE_FILE
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(want.to_json())
            tmp.replace(path)
            os.kill(link.pid, signal.SIGHUP)
            self.shapes[client] = want

    def _wants_online(self, client: int) -> bool:
        if self._round_seen is None:
            return True  # before the first round: everyone may connect
        if client in self._offline:
            return False
        profile = self.fleet.profile_of(client)
        if profile.trace is not None and self._clock is not None:
            clock, at = self._clock
            return self.fleet.online_at(client, clock + time.monotonic() - at)
        return True

    # limits ----------------------------------------------------------------
    def hold(self, client: int, procs) -> None:
        """Hold a client's (new) processes to its profile's CPU share and memory."""
        if client not in self.limited:
            return
        handle = self.handles.get(client)
        if handle is None:
            profile = self.fleet.profile_of(client)
            # a memory-only profile: a whole core (ClientLimits takes no None share)
            limits = ClientLimits(cpu=profile.cpu if profile.cpu is not None else 1.0, memory=profile.memory)
            handle = self.limiter.limit(group_name(self.name, client), limits, profile=profile.name)
            self.handles[client] = handle
        for proc in procs:
            if proc.alive:
                handle.add(proc.pid)

    def _ooms(self, client: int) -> int:
        """Out-of-memory kills of the client: by its backend (a cgroup's OOM killer) and by the RSS watch."""
        return self.handles[client].oom_kills() + self._rss_kills.get(client, 0)

    def _watch_memory(self) -> None:
        """A device's memory holds every page the client's processes use, a page several of them share (forked
        from the fork server) once: that (memory.MemoryGauge) may not pass the profile's memory; above it the
        client is killed whole."""
        for client, handle in self.handles.items():
            limit = self.fleet.profile_of(client).memory
            if limit is None or handle.watches_memory:  # the fallback's watchdog is the one watcher: poll() sees
                continue  # its kills
            pids = handle.pids()
            if not pids:
                continue
            if self._gauges.setdefault(client, MemoryGauge(limit)).over(list(_processes(pids))):
                self._rss_kills[client] = self._rss_kills.get(client, 0) + 1
                handle.kill()

    def exit_cause(self, client: int) -> str | None:
        """Why the client's process exited, when its memory limit killed it (each kill told once)."""
        if client not in self.handles or self._ooms(client) <= self._ooms_seen.get(client, 0):
            return None
        self._ooms_seen[client] = self._ooms(client)
        return f"out of memory (profile {self.fleet.profile_of(client).name})"

    def close(self) -> None:
        """Lift every client's limits and remove their groups, all within CLOSE_SECONDS."""
        deadline = time.monotonic() + CLOSE_SECONDS
        for handle in self.handles.values():
            handle.close(until=deadline)
        self.handles.clear()
        if self.limiter is not None:
            self.limiter.close()
            # and any an earlier attempt left below another group
            TagGroups.find(self.name).remove(timeout=max(0.0, deadline - time.monotonic()))


def _processes(pids):
    for pid in pids:
        try:
            yield psutil.Process(pid)
        except psutil.Error:
            continue
