"""The fleet file: device profiles, the clients each takes, and when each client is online.

    fleet = read_fleet_file("fleet.toml", num_clients=40)
    fleet.profile_of(0).name                    # 'pi4-wifi'
    fleet.profile_of(0).memory                  # 943718400 (bytes)
    fleet.online(3, round=5, seed=42)           # True or False, the same for the same seed
    fleet.online_at(35, 120.0)                  # trace profiles: inside one of client 35's windows?

    # fleet.toml
    [[profile]]
    name = "pi4-wifi"
    clients = 30            # the next 30 clients in client order; "rest" for all that are left
    cpu = 0.3               # share of one core of this machine, 0.01 to 1
    memory = "900MiB"       # B, kB, MB, GB, KiB, MiB, GiB (launcher.fleet.units)
    down = "8Mbit"          # bit, kbit, Mbit, Gbit (also bps...), or B/s, kB/s, MB/s, GB/s
    up = "2Mbit"
    latency = "40ms"        # one way: us, ms, s
    loss = 0.01             # share of exchanges whose connection drops (launcher.fleet.link)
    availability = 0.8      # chance of being online in a round, or instead:
    # trace = "pi4.csv"     # rows client,start_s,end_s (relative to this file): online windows
    # schedule = "wifi.csv" # the link over time: rows time_s,down,up,latency,loss from the first round

Clients are numbered 0..N-1 (client_<i>). Profiles take clients in file order: each the next `clients`
of them; "rest" (at most one profile) takes N minus what the others take, at its place in the order, and
may be empty. Clients no profile takes get UNCONSTRAINED (no limits, always online), as without a fleet.
Every key but name and clients is optional: what is left out is not limited.

Availability: client c is online in round r when a hash of (seed, c, r) maps below `availability`:
reproducible for a seed, independent per client and round. A trace names run client numbers; each of
a trace profile's clients is online inside its rows' windows [start_s, end_s) and offline elsewhere (a
client without a row is never online); several profiles may name one trace file, each taking the rows of
its own clients. A schedule's link holds a round long: the row in force at the round's start on the run's
clock (real seconds in process mode, emulated in virtual mode), the profile's own link before its first row.
Availability governs rounds, a trace time: `online` is True for
trace profiles and `online_at` is True for availability profiles.

Every error is one line naming the file and the line (FleetError, an InputError). The types (Profile,
Window, Fleet, draw, UNCONSTRAINED) live in contract.fleet_record, where the built-in app reads them too; the
launcher writes the fleet into the run folder with write_fleet(run_dir, fleet) (RUN/fleet.json).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from contract.errors import InputError
from contract.fleet_record import UNCONSTRAINED, Fleet, LinkStep, Profile, Window, draw, write_fleet  # noqa: F401
from contract.user_toml import UserToml
from launcher.fleet.units import UnitError, parse_duration, parse_rate, parse_size

KEYS = ("name", "clients", "cpu", "memory", "down", "up", "latency", "loss", "availability", "trace", "schedule")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CPU_MIN = 0.01


class FleetError(InputError):
    """The one line a bad fleet file gets, named by file and line."""


def _number(value, key: str, low: float, high: float, bad) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        bad(key, f"{key} must be a number from {low:g} to {high:g}, not {value!r}")
    if not low <= value <= high:
        bad(key, f"{key} {value:g} is outside {low:g}..{high:g}")
    return float(value)


def read_fleet_file(path: str | Path, num_clients: int) -> Fleet:
    """The fleet file read and checked against a run of num_clients clients."""
    toml = UserToml.read(path, FleetError, "fleet file")
    path, data = toml.path, toml.data
    for key in data:
        if key != "profile":
            raise FleetError(f"{toml.at_top(key)}: unknown key {key!r} (expected [[profile]] tables)")
    entries = data.get("profile", [])
    if not isinstance(entries, list) or not entries:
        raise FleetError(f"{path}:1: no [[profile]] tables")
    parsed, seen, rest_at = [], {}, None
    for index, entry in enumerate(entries):
        parsed.append(_read_profile(toml, index, entry))
        name = parsed[-1]["name"]
        if name in seen:
            raise FleetError(f"{toml.at('profile', index, 'name')}: duplicate profile name {name!r} "
                             f"(first at line {seen[name]})")
        seen[name] = toml.line("profile", index, "name")
        if parsed[-1]["clients"] == "rest":
            if rest_at is not None:
                raise FleetError(f"{toml.at('profile', index, 'clients')}: a second profile takes the rest "
                                 f"(the first at line {rest_at})")
            rest_at = toml.line("profile", index, "clients")
    counted = sum(p["clients"] for p in parsed if p["clients"] != "rest")
    ranges, first = [], 0
    for index, entry in enumerate(parsed):
        count = max(0, num_clients - counted) if entry["clients"] == "rest" else entry["clients"]
        if first + count > num_clients:
            raise FleetError(f"{toml.at('profile', index, 'clients')}: the profiles ask for {counted} clients "
                             f"but the run has {num_clients}: profile {entry['name']!r} would take clients "
                             f"{first}..{first + count - 1} (the run's are 0..{num_clients - 1})")
        ranges.append(range(first, first + count))
        first += count
    sharing: dict[str, dict[int, str]] = {}  # a trace file -> the clients of the profiles naming it -> profile
    for entry, clients in zip(parsed, ranges):
        if entry.get("trace") is not None:
            sharing.setdefault(entry["trace"], {}).update(dict.fromkeys(clients, entry["name"]))
    windows: dict[str, tuple[Window, ...]] = {}
    profiles = []
    for index, (entry, clients) in enumerate(zip(parsed, ranges)):
        trace = None
        if entry.get("trace") is not None:
            if entry["trace"] not in windows:
                windows[entry["trace"]] = _read_trace(path, entry["trace"], sharing[entry["trace"]], num_clients,
                                                      toml.at("profile", index, "trace"))
            trace = tuple(w for w in windows[entry["trace"]] if w.client in clients)
            if not trace:
                raise FleetError(f"{path.parent / entry['trace']}: the trace has no client,start_s,end_s row: the "
                                 f"clients of profile {entry['name']!r} ({_span(clients)}) would never be online")
        line = toml.line("profile", index, None)
        profiles.append(Profile(**{**entry, "clients": clients, "trace": trace, "line": line}))
    fleet = Fleet.of(path, num_clients, tuple(profiles))
    if not any(fleet.ever_online(client) for client in range(num_clients)):
        raise FleetError(f"{path}: no client of the run is ever online (availability 0, or traces without "
                         "their windows): no round could start")
    return fleet


def _read_profile(toml: UserToml, index: int, entry) -> dict:
    path = toml.path

    def bad(key: str | None, why: str):
        raise FleetError(f"{toml.at('profile', index, key)}: {why}")

    if not isinstance(entry, dict):
        bad(None, "each [[profile]] must be a table")
    for key in entry:
        if key not in KEYS:
            bad(key, f"unknown key {key!r} in [[profile]] (known: {', '.join(KEYS)})")
    name = entry.get("name")
    if name is None:
        bad(None, "[[profile]] without a name")
    if not isinstance(name, str) or not SAFE_NAME.match(name) or name == UNCONSTRAINED.name:
        bad("name", f"name {name!r} must be letters, digits, '.', '-', '_' (and not {UNCONSTRAINED.name!r})")
    out: dict = {"name": name}
    clients = entry.get("clients")
    if clients is None:
        bad(None, f"profile {name!r} has no clients (a count, or \"rest\")")
    if clients != "rest" and (isinstance(clients, bool) or not isinstance(clients, int) or clients < 1):
        bad("clients", f"clients must be a count of at least 1 or \"rest\", not {clients!r}")
    out["clients"] = clients
    if "cpu" in entry:
        out["cpu"] = _number(entry["cpu"], "cpu", CPU_MIN, 1.0, bad)
    for key in ("loss", "availability"):
        if key in entry:
            out[key] = _number(entry[key], key, 0.0, 1.0, bad)
    parsers = {"memory": parse_size, "down": parse_rate, "up": parse_rate, "latency": parse_duration}
    for key, parse in parsers.items():
        if key in entry:
            try:
                out[key] = parse(entry[key])
            except UnitError as err:
                bad(key, f"{key}: {err}")
    if out.get("latency", 0) < 0:
        bad("latency", "latency must not be negative")
    if "trace" in entry:
        if "availability" in entry:
            bad("trace", f"profile {name!r} has both availability and trace: give one")
        if not isinstance(entry["trace"], str) or not entry["trace"]:
            bad("trace", "trace must be the path of a CSV file (relative to the fleet file)")
        out["trace"] = entry["trace"]
    if "schedule" in entry:
        if not isinstance(entry["schedule"], str) or not entry["schedule"]:
            bad("schedule", "schedule must be the path of a CSV file (relative to the fleet file)")
        out["schedule"] = _read_schedule(path, entry["schedule"], toml.at("profile", index, "schedule"))
    return out


def _csv_rows(path: Path, what: str, where: str) -> list[list[str]]:
    """A CSV file next to the fleet file, as rows; one FleetError line when it cannot be read."""
    try:
        return list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError) as err:
        raise FleetError(f"{where}: cannot read the {what} {path} "
                         f"({getattr(err, 'strerror', None) or err})") from None


def _read_schedule(fleet_path: Path, name: str, where: str) -> tuple[LinkStep, ...]:
    """A link schedule: rows time_s,down,up,latency,loss (down/up a rate or "-" for unlimited), in time order."""
    schedule_path = fleet_path.parent / name
    rows = _csv_rows(schedule_path, "schedule", where)
    steps: list[LinkStep] = []
    for number, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not cells or cells == [""] or cells[0].startswith("#") or (number == 1 and cells[0].lower() == "time_s"):
            continue
        at = f"{schedule_path}:{number}"
        if len(cells) != 5:
            raise FleetError(f"{at}: a schedule row is time_s,down,up,latency,loss, not {','.join(row)!r}")
        try:
            time_s, loss = float(cells[0]), float(cells[4])
            down, up = (None if c in ("-", "") else parse_rate(c) for c in cells[1:3])
            latency = parse_duration(cells[3]) if cells[3] not in ("-", "") else 0.0
        except (ValueError, UnitError) as err:
            raise FleetError(f"{at}: cannot read {','.join(row)!r} as time_s,down,up,latency,loss ({err})") from None
        if not math.isfinite(time_s) or time_s < 0 or (steps and time_s <= steps[-1].time):
            raise FleetError(f"{at}: time_s {cells[0]} must be from 0 and after the row before's")
        if not 0 <= loss <= 1 or latency < 0:
            raise FleetError(f"{at}: loss must be 0..1 and latency not negative")
        steps.append(LinkStep(time_s, down, up, latency, loss))
    if not steps:
        raise FleetError(f"{schedule_path}: the schedule has no time_s,down,up,latency,loss row")
    return tuple(steps)


def _read_trace(fleet_path: Path, name: str, owners: dict[int, str], num_clients: int,
                where: str) -> tuple[Window, ...]:
    """The windows of a trace file; ``owners``: the clients of the profiles that name it -> their profile."""
    trace_path = fleet_path.parent / name
    rows = _csv_rows(trace_path, "trace", where)
    windows = []
    for number, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not cells or cells == [""] or cells[0].startswith("#"):
            continue
        if number == 1 and cells[0].lower() == "client":
            continue  # a header row
        at = f"{trace_path}:{number}"
        if len(cells) != 3:
            raise FleetError(f"{at}: a trace row is client,start_s,end_s, not {','.join(row)!r}")
        try:
            client, start, end = int(cells[0]), float(cells[1]), float(cells[2])
        except ValueError:
            raise FleetError(f"{at}: cannot read {','.join(row)!r} as client,start_s,end_s "
                             "(an integer and two numbers of seconds)") from None
        if not 0 <= client < num_clients:
            raise FleetError(f"{at}: client {client} does not exist (the run has {num_clients}: "
                             f"0..{num_clients - 1})")
        if client not in owners:
            named = sorted(set(owners.values()))
            which = f"profile {named[0]!r}" if len(named) == 1 else f"the profiles {', '.join(map(repr, named))}"
            raise FleetError(f"{at}: client {client} is not one of the clients of {which} "
                             f"({_spans(sorted(owners))})")
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            raise FleetError(f"{at}: a window needs 0 <= start_s < end_s, not {start:g}..{end:g}")
        windows.append(Window(client, start, end))
    return tuple(windows)


def _span(clients: range) -> str:
    return "none" if not clients else f"{clients.start}..{clients.stop - 1}"


def _spans(clients: list[int]) -> str:
    """Sorted client numbers as runs: [0, 1, 2, 5] -> '0..2, 5'."""
    runs: list[list[int]] = []
    for c in clients:
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ", ".join(f"{a}..{b}" if b > a else f"{a}" for a, b in runs) or "none"


def holds_cpu(fleet: Fleet, clients) -> bool:
    """Whether any of these clients is held to less than a whole core by its profile's cpu share: their host
    computes one more task at once (launcher.flower.compute_slots.cpu_slot_count)."""
    return any(c < fleet.num_clients and (fleet.profile_of(c).cpu or 1.0) < 1.0 for c in clients)


def cpu_warning(fleet: Fleet, clients: list[int], at_once: int, cores: int) -> str | None:
    """A warning line when the local ``clients`` that may train at once (``at_once``: a round's sample, at
    most one per compute slot) ask more of this machine's ``cores`` than the server leaves them (half a core
    kept): their compute then takes longer than their profiles say. None when they fit.

        cpu_warning(fleet, clients=list(range(8)), at_once=3, cores=2)   # three clients at cpu 0.6
        # 'fleet: the 3 clients that train at once ask 1.8 cores ...'
    """
    shares = sorted(((fleet.profile_of(c).cpu or 1.0) if c < fleet.num_clients else 1.0 for c in clients),
                    reverse=True)[:at_once]
    asked, room = sum(shares), cores - 0.5
    if not shares or asked <= room:
        return None
    return (f"fleet: the {len(shares)} clients that may train at once ask {asked:g} cores of this machine's "
            f"{cores} (half a core kept for the server): their compute will take longer than their profiles "
            f"say; lower their cpu shares or --clients-per-round")
