"""The emulated fleet as the launcher and the built-in app both read it: profiles, availability, fleet.json.

    fleet = read_fleet_json(run_dir)             # None: the run has no fleet (a run exactly as without one)
    fleet.profile_of(7).down                     # 8000000.0 (bits per second)
    fleet.online(3, round=5, seed=42)            # availability profiles: online in that round?
    fleet.online_at(35, 120.0)                   # trace profiles: inside one of client 35's windows at t?
    fleet.profile_of(3).link_at(120.0).down      # schedule profiles: the link its schedule gives at t
    write_fleet(run_dir, fleet)                  # the launcher, when it prepares the run: RUN/fleet.json
    write_fleet_round(run_dir, FleetRound(round=3, clock=41.5, offline=(2, 9)))   # the ServerApp, each round
    read_fleet_round(run_dir)                    # the launcher: FleetRound(round=3, clock=41.5, offline=(2, 9))

The launcher reads the user's fleet.toml (launcher.fleet.profiles.read_fleet_file, with its checks) into these
types and writes them into the run folder as JSON; the ServerApp and the ClientApp read them back there.
Numbers are SI base units: bits per second, bytes, seconds. A profile's None: not limited.

Availability: client c is online in round r when a hash of (seed, c, r) maps below `availability`:
reproducible for a seed, independent per client and round. A trace profile's clients are online inside their
windows [start_s, end_s) and offline elsewhere. `online` is True for trace profiles, `online_at` for others.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

FLEET_FILE = "fleet.json"                 # in the run folder
FLEET_ROUND_FILE = "server/fleet_round.json"  # in the run folder: which clients are offline this round
FLEET_ROUND_ACK = "server/fleet_round_ack.json"  # the launcher's answer: its links follow that round now


@dataclass(frozen=True)
class Window:
    """One online window of a client in a trace, in seconds from the run's first round: [start, end)."""

    client: int
    start: float
    end: float


@dataclass(frozen=True)
class LinkStep:
    """From ``time`` seconds after the run's first round on, a schedule profile's link is this one."""

    time: float
    down: float | None = None
    up: float | None = None
    latency: float = 0.0
    loss: float = 0.0


@dataclass(frozen=True)
class Profile:
    """One kind of device; numbers in SI base units. None: not limited."""

    name: str
    clients: range = range(0)
    cpu: float | None = None            # share of one core
    memory: int | None = None           # bytes
    down: float | None = None           # bits per second, SuperLink -> client
    up: float | None = None             # bits per second, client -> SuperLink
    latency: float = 0.0                # seconds, one way
    loss: float = 0.0                   # share of exchanges whose connection drops
    availability: float | None = None   # chance of being online in a round
    trace: tuple[Window, ...] | None = None
    schedule: tuple[LinkStep, ...] | None = None  # the link over time, in time order (its steps replace the above)
    line: int = 0                       # where its [[profile]] starts in the fleet file

    @property
    def shapes_link(self) -> bool:
        return self.down is not None or self.up is not None or self.latency > 0 or self.loss > 0 or \
            self.schedule is not None

    def link_at(self, t_seconds: float) -> "Profile":
        """The profile with the link its schedule gives at t (seconds from the first round): the last step at
        or before t; before the first step, and without a schedule, the profile's own link."""
        step = None
        for candidate in self.schedule or ():
            if candidate.time <= t_seconds:
                step = candidate
        if step is None:
            return self
        return replace(self, down=step.down, up=step.up, latency=step.latency, loss=step.loss)

    @property
    def needs_link(self) -> bool:
        """In process mode its clients reach the SuperLink through a link emulator (shaped, or cut offline)."""
        return self.shapes_link or self.availability is not None or self.trace is not None

    @property
    def needs_limits(self) -> bool:
        return self.cpu is not None or self.memory is not None

    def compute_seconds(self, measured: float) -> float:
        """Measured compute time at a whole core, as this profile's CPU share would take it."""
        return measured / self.cpu if self.cpu else measured

    def as_record(self) -> dict:
        """For run.json: plain JSON values (clients as [first, last + 1], trace as its window count)."""
        return {"name": self.name, "clients": [self.clients.start, self.clients.stop], "cpu": self.cpu,
                "memory": self.memory, "down": self.down, "up": self.up, "latency": self.latency,
                "loss": self.loss, "availability": self.availability,
                "trace_windows": None if self.trace is None else len(self.trace),
                "schedule_steps": None if self.schedule is None else len(self.schedule)}


UNCONSTRAINED = Profile(name="unconstrained")


@dataclass(frozen=True)
class Fleet:
    path: Path
    num_clients: int
    profiles: tuple[Profile, ...]
    _of: tuple[int, ...] = field(default=(), repr=False, compare=False)  # profile index per client, -1: none

    @classmethod
    def of(cls, path: str | Path, num_clients: int, profiles: tuple[Profile, ...]) -> "Fleet":
        """A fleet whose clients map to the profiles by their client ranges (the rest UNCONSTRAINED)."""
        of = [-1] * num_clients
        for index, profile in enumerate(profiles):
            for client in profile.clients:
                of[client] = index
        return cls(path=Path(path), num_clients=num_clients, profiles=tuple(profiles), _of=tuple(of))

    def profile_of(self, client: int) -> Profile:
        if not 0 <= client < self.num_clients:
            raise IndexError(f"client {client} is not in 0..{self.num_clients - 1}")
        index = self._of[client]
        return UNCONSTRAINED if index < 0 else self.profiles[index]

    def online(self, client: int, round: int, seed: int) -> bool:  # noqa: A002 (the issue's word)
        """Whether the client takes part in this round by its profile's availability (True without one)."""
        availability = self.profile_of(client).availability
        return availability is None or draw(seed, client, round) < availability

    def online_at(self, client: int, t_seconds: float) -> bool:
        """Whether the client is inside one of its trace windows at t (True for a profile without a trace)."""
        trace = self.profile_of(client).trace
        return trace is None or any(w.client == client and w.start <= t_seconds < w.end for w in trace)

    def ever_online(self, client: int) -> bool:
        """False for a client whose profile's availability is 0, or whose trace has no window of it."""
        profile = self.profile_of(client)
        if profile.trace is not None:
            return any(w.client == client for w in profile.trace)
        return profile.availability is None or profile.availability > 0

    @property
    def shapes_link(self) -> bool:
        return any(p.shapes_link for p in self.profiles)

    def as_record(self) -> dict:
        return {"file": str(self.path), "clients": self.num_clients,
                "profiles": [p.as_record() for p in self.profiles]}


def draw(seed: int, client: int, round: int) -> float:  # noqa: A002
    """A uniform number in [0, 1) from (seed, client, round) alone."""
    digest = hashlib.blake2b(f"{seed}:{client}:{round}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def fleet_to_json(fleet: Fleet) -> dict:
    """Everything a fleet holds, traces' windows included, as plain JSON values."""
    profiles = []
    for p in fleet.profiles:
        record = {key: value for key, value in p.as_record().items() if key not in ("trace_windows", "schedule_steps")}
        record["line"] = p.line
        record["trace"] = None if p.trace is None else [[w.client, w.start, w.end] for w in p.trace]
        record["schedule"] = None if p.schedule is None else [[x.time, x.down, x.up, x.latency, x.loss]
                                                                for x in p.schedule]
        profiles.append(record)
    return {"file": str(fleet.path), "clients": fleet.num_clients, "profiles": profiles}


def fleet_from_json(data: dict) -> Fleet:
    profiles = []
    for r in data["profiles"]:
        trace = None if r.get("trace") is None else tuple(Window(int(c), float(s), float(e)) for c, s, e in r["trace"])
        schedule = None if r.get("schedule") is None else tuple(LinkStep(*step) for step in r["schedule"])
        profiles.append(Profile(
            name=r["name"], clients=range(*r["clients"]), cpu=r.get("cpu"), memory=r.get("memory"),
            down=r.get("down"), up=r.get("up"), latency=float(r.get("latency") or 0.0),
            loss=float(r.get("loss") or 0.0), availability=r.get("availability"), trace=trace, schedule=schedule,
            line=int(r.get("line") or 0)))
    return Fleet.of(data["file"], int(data["clients"]), tuple(profiles))


def write_fleet(run_dir: str | Path, fleet: Fleet) -> Path:
    """RUN/fleet.json: the fleet the run's app reads (written once, when the run is prepared)."""
    path = Path(run_dir) / FLEET_FILE
    _atomic_write(path, json.dumps(fleet_to_json(fleet), indent=1) + "\n")
    return path


def read_fleet_json(run_dir: str | Path) -> Fleet | None:
    """The run's fleet; None when the run has none."""
    path = Path(run_dir) / FLEET_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return fleet_from_json(json.loads(text))


@dataclass(frozen=True)
class FleetRound:
    """What the ServerApp tells the launcher before it samples a round: who is offline, at which run clock."""

    round: int
    clock: float                 # seconds from the first round: real (process mode), or emulated
    offline: tuple[int, ...] = ()


def write_fleet_round(run_dir: str | Path, fleet_round: FleetRound) -> Path:
    """RUN/server/fleet_round.json, replaced atomically (tmp + rename)."""
    path = Path(run_dir) / FLEET_ROUND_FILE
    _atomic_write(path, json.dumps({"round": fleet_round.round, "clock": fleet_round.clock,
                                    "offline": sorted(fleet_round.offline)}) + "\n")
    return path


def read_fleet_round(run_dir: str | Path) -> FleetRound | None:
    """The newest round's offline clients; None before the first round (or without a fleet)."""
    try:
        data = json.loads((Path(run_dir) / FLEET_ROUND_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return FleetRound(round=int(data["round"]), clock=float(data["clock"]),
                      offline=tuple(int(c) for c in data["offline"]))


def acknowledge_round(run_dir: str | Path, server_round: int) -> None:
    """The launcher: its links now follow this round's fleet_round.json."""
    _atomic_write(Path(run_dir) / FLEET_ROUND_ACK, json.dumps({"round": server_round}) + "\n")


def round_acknowledged(run_dir: str | Path, server_round: int) -> bool:
    try:
        data = json.loads((Path(run_dir) / FLEET_ROUND_ACK).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return int(data.get("round", 0)) >= server_round
