"""An emulated fleet's run read back per profile: who took part, how long, where the time went, who was cut.

    run = read_fleet_run(folder, info)            # info: the run's run.json; FleetStatsError without a fleet
    by_profile(run)                               # one row per profile, a pandas DataFrame
    #      clients  rounds  mean_s  p95_s  download_s  waiting_s  compute_s  upload_s  stragglers  ...     acc
    # pi4        2       5  5.2123  5.4012      1.3101     0.0402     0.3120    3.5600           0  ...  0.9444
    bars = plot_timeline(run, Path("round.png"))  # one TimelineBar per client-round: its parts as bars
    compare(run, other)                           # per round and profile both runs' round times and B/A
    #   round    profile     a_s     b_s  ratio
    #       1  (all)      10.8090  9.3842 0.8682      # the round itself: start to end (the clock line)
    #       1  slow-link   7.8437  6.3757 0.8128      # the mean of the profile's client-rounds' round time
    #    mean  slow-link   7.8728  6.1000 0.7748      # over every round of each run

A client-round's time runs from the round's start to the moment the server holds the client's reply (receive
to reply, both transfers included), in four parts (RoundParts): download (the task's bytes over the link),
waiting (the rest before its task started), compute (the task), upload (the reply over the link, the server's
pulls of it included). Where the figures come from (contract.loglines, the fleet templates):
- a client's ``round_end_fleet`` line: its profile, compute, transfer, download (the link model's share of
  the transfer before the task), waiting, emulated;
- virtual mode: the emulated figure is the round time (every device starts when the round does): download,
  compute, and the rest of the transfer as upload, no waiting;
- process mode: the server's ``server_reply`` line for the client is the round time; ``waiting`` (round start
  to the task's start) splits into the download (the model's, at most all of the waiting) and the rest; the
  task's real ``time`` is compute; the rest up to the reply is the upload. A client-round without a
  ``server_reply`` line (a reply not taken in time, a run from before those lines) ends at its task's end;
- the server's ``server_round_clock`` line: the round's emulated and real time (the round's end on the
  timeline), deadline and stragglers; its ``server_offline`` line: the clients not sampled because offline
  (a log without those lines: a client the round did not sample counts as offline in the rounds whose clock
  line counts any offline);
- the round's start: in process mode the server's ``server_round_start`` time stamp, in virtual mode the
  sum of the earlier rounds' emulated times;
- run.json: ``fleet`` (profiles with their client ranges), ``restarts`` (a cause holding "out of memory"
  is an out-of-memory kill), ``plan.virtual`` (set: virtual mode);
- accuracy: the mean over the profile's clients of each one's last ``evaluate acc`` (the received model).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from contract.errors import InputError
from contract.loglines import iter_events, parse_line

PARTS = ("download", "waiting", "compute", "upload")
BY_PROFILE_COLUMNS = ["clients", "rounds", "mean_s", "p95_s", *(f"{p}_s" for p in PARTS), "stragglers", "oom_kills",
                      "offline_rounds", "acc"]


class FleetStatsError(InputError):
    """A run fl-stats cannot report per profile (no fleet, no fleet logs)."""


@dataclass(frozen=True)
class ProfileRange:
    name: str
    clients: range


@dataclass(frozen=True)
class ClientRound:
    """One client's round end line under a fleet."""

    client: int
    round: int
    profile: str
    seconds: float      # the task's real time
    compute_s: float
    transfer_s: float
    download_s: float   # the link model's share of transfer_s before the task
    waiting_s: float
    emulated_s: float
    replied_s: float | None = None  # process mode: when the server held the reply, from the round's start


@dataclass(frozen=True)
class RoundParts:
    """A client-round from the round's start to the server holding its reply, in seconds, in order."""

    download: float
    waiting: float
    compute: float
    upload: float

    @property
    def total(self) -> float:
        return self.download + self.waiting + self.compute + self.upload


@dataclass
class ServerRound:
    round: int
    replied: dict[int, float] = field(default_factory=dict)  # client -> its reply held, from the round's start
    start: dt.datetime | None = None          # the server's round start line's time stamp
    sampled: list[int] = field(default_factory=list)
    offline: list[int] | None = None          # None: the log does not name them
    offline_count: int = 0
    stragglers: list[int] = field(default_factory=list)
    deadline_s: float = 0.0
    emulated_s: float | None = None
    real_s: float | None = None


@dataclass
class FleetRun:
    name: str
    virtual: bool
    profiles: list[ProfileRange]
    client_rounds: list[ClientRound]
    rounds: dict[int, ServerRound]
    last_acc: dict[int, float]
    oom_kills: dict[int, int]

    def profile_of(self, client: int) -> str | None:
        return next((p.name for p in self.profiles if client in p.clients), None)

    def parts(self, cr: ClientRound) -> RoundParts:
        """The client-round's download, waiting, compute and upload (see the module's docstring)."""
        if self.virtual:
            download = min(cr.download_s, cr.emulated_s)
            compute = min(cr.compute_s, cr.emulated_s - download)
            return RoundParts(download, 0.0, compute, max(0.0, cr.emulated_s - download - compute))
        download = min(cr.download_s, cr.waiting_s)
        task_end = cr.waiting_s + cr.seconds
        upload = max(0.0, cr.replied_s - task_end) if cr.replied_s is not None else 0.0
        return RoundParts(download, cr.waiting_s - download, cr.seconds, upload)

    def round_time(self, cr: ClientRound) -> float:
        """Seconds from the round's start to the server holding the client's reply."""
        return self.parts(cr).total

    def round_end(self, number: int) -> float | None:
        """The round's own time, start to end: emulated (virtual) or real (process); None unknown."""
        server = self.rounds.get(number)
        if server is None:
            return None
        return server.emulated_s if self.virtual else server.real_s

    def round_starts(self) -> dict[int, float]:
        """Each round's start in seconds from the first round's: emulated (virtual) or real (process)."""
        starts, clock = {}, 0.0
        first = next((r.start for _, r in sorted(self.rounds.items()) if r.start is not None), None)
        for number, r in sorted(self.rounds.items()):
            if self.virtual:
                starts[number] = clock
                clock += r.emulated_s or 0.0
            elif r.start is not None and first is not None:
                starts[number] = (r.start - first).total_seconds()
        return starts


def _profiles(info: dict) -> list[ProfileRange]:
    fleet = info.get("fleet") or {}
    return [ProfileRange(str(p["name"]), range(*p["clients"])) for p in fleet.get("profiles") or []]


def _client_number(folder: Path) -> int | None:
    tail = folder.name.rpartition("_")[2]
    return int(tail) if folder.name.startswith("client_") and tail.isdigit() else None


def _read_client(log: Path, client: int, rounds: dict[tuple[int, int], ClientRound], last_acc: dict) -> None:
    try:
        text = log.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return
    for kind, v in iter_events(text):
        if kind == "round_end_fleet":
            rounds[(client, v["round"])] = ClientRound(client, v["round"], v["profile"], v["seconds"], v["compute_s"],
                                                       v["transfer_s"], v["download_s"], v["waiting_s"],
                                                       v["emulated_s"])
        elif kind == "resume":  # an aborted attempt's later rounds are superseded
            for key in [k for k in rounds if k[0] == client and k[1] >= v["round"]]:
                del rounds[key]
        elif kind == "evaluate" and v["acc"] is not None:
            last_acc[client] = v["acc"]


def _read_server(log: Path) -> dict[int, ServerRound]:
    rounds: dict[int, ServerRound] = {}
    try:
        lines = log.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return rounds
    for line in lines:
        event = parse_line(line)
        if event is None or "round" not in event.values:
            continue
        v = event.values
        r = rounds.setdefault(v["round"], ServerRound(v["round"]))
        if event.kind == "server_round_start":
            r.start = event.time
        elif event.kind == "server_sampled":
            r.sampled = list(v["partitions"])
        elif event.kind == "server_offline":
            r.offline = list(v["partitions"])
        elif event.kind == "server_reply":
            r.replied[v["client"]] = v["seconds"]
        elif event.kind == "server_round_clock":
            r.stragglers, r.offline_count = list(v["stragglers"]), v["offline"]
            r.deadline_s, r.emulated_s, r.real_s = v["deadline_s"] or 0.0, v["emulated_s"], v["seconds"]
    return {n: r for n, r in rounds.items() if r.start is not None or r.emulated_s is not None}


def read_fleet_run(folder: str | Path, info: dict) -> FleetRun:
    """The run in ``folder`` (``info``: its run.json) read back; FleetStatsError when it has no fleet."""
    folder = Path(folder)
    profiles = _profiles(info)
    if not profiles:
        raise FleetStatsError(f"run {folder.name} has no fleet (run.json holds none: it ran without --fleet)")
    found: dict[tuple[int, int], ClientRound] = {}
    last_acc: dict[int, float] = {}
    for log in folder.glob("client_*/client.log"):
        client = _client_number(log.parent)
        if client is not None:
            _read_client(log, client, found, last_acc)
    oom: dict[int, int] = {}
    for entry in info.get("restarts") or []:
        if "out of memory" in str(entry.get("cause") or "") and isinstance(entry.get("client"), int):
            oom[entry["client"]] = oom.get(entry["client"], 0) + 1
    virtual = bool((info.get("plan") or {}).get("virtual"))
    rounds = _read_server(folder / "server" / "server.log")
    client_rounds = [replace(cr, replied_s=rounds[cr.round].replied.get(cr.client)) if cr.round in rounds else cr
                     for cr in sorted(found.values(), key=lambda c: (c.round, c.client))]
    return FleetRun(folder.name, virtual, profiles, client_rounds, rounds, last_acc, oom)


def offline_rounds(run: FleetRun, client: int) -> int:
    """Rounds the client was not sampled in because it was offline."""
    count = 0
    for r in run.rounds.values():
        if r.offline is not None:
            count += client in r.offline
        elif r.offline_count and r.sampled:
            count += client not in r.sampled
    return count


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _p95(values: list[float]) -> float:
    """The 95th percentile, linear between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = 0.95 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def by_profile(run: FleetRun) -> pd.DataFrame:
    """One row per profile (in the fleet's order): see BY_PROFILE_COLUMNS and the module's docstring."""
    rows = {}
    for profile in run.profiles:
        clients = list(profile.clients)
        mine = [cr for cr in run.client_rounds if cr.client in profile.clients]
        parts = [run.parts(cr) for cr in mine]
        times = [p.total for p in parts]
        accs = [run.last_acc[c] for c in clients if c in run.last_acc]
        rows[profile.name] = {
            "clients": len(clients),
            "rounds": len(mine),
            "mean_s": _mean(times),
            "p95_s": _p95(times),
            **{f"{name}_s": _mean([getattr(p, name) for p in parts]) for name in PARTS},
            "stragglers": sum(s in profile.clients for r in run.rounds.values() for s in r.stragglers),
            "oom_kills": sum(run.oom_kills.get(c, 0) for c in clients),
            "offline_rounds": sum(offline_rounds(run, c) for c in clients),
            "acc": sum(accs) / len(accs) if accs else math.nan,
        }
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=BY_PROFILE_COLUMNS)
    frame.index.name = "profile"
    return frame


COMPARE_COLUMNS = ["round", "profile", "a_s", "b_s", "ratio"]
WHOLE_ROUND = "(all)"  # a compare row for the round itself


def _profile_times(run: FleetRun) -> dict[tuple[int, str], list[float]]:
    """(round, profile) -> its client-rounds' round times."""
    times: dict[tuple[int, str], list[float]] = {}
    for cr in run.client_rounds:
        times.setdefault((cr.round, run.profile_of(cr.client) or cr.profile), []).append(run.round_time(cr))
    return times


def compare(a: FleetRun, b: FleetRun) -> pd.DataFrame:
    """Per round both runs hold, the round's own time (profile WHOLE_ROUND) and each profile's mean round time
    side by side, with b / a; then per profile its mean over its client-rounds of those rounds (round "mean").
    Profiles match by name (a profile only one run has: its other side NaN). FleetStatsError when the runs share
    no round."""
    common = sorted(set(a.rounds) & set(b.rounds))
    if not common:
        raise FleetStatsError(f"runs {a.name} and {b.name} share no round to compare")
    names = [p.name for p in a.profiles] + [p.name for p in b.profiles if p.name not in {q.name for q in a.profiles}]
    ta, tb = _profile_times(a), _profile_times(b)
    rows = []

    def row(number, profile: str, x: float | None, y: float | None) -> None:
        x = math.nan if x is None else x
        y = math.nan if y is None else y
        rows.append({"round": number, "profile": profile, "a_s": x, "b_s": y, "ratio": y / x if x else math.nan})

    for number in common:
        row(number, WHOLE_ROUND, a.round_end(number), b.round_end(number))
        for name in names:
            if (number, name) in ta or (number, name) in tb:
                row(number, name, _mean(ta.get((number, name), [])), _mean(tb.get((number, name), [])))
    for name in names:
        row("mean", name, _mean([t for (n, p), ts in ta.items() if p == name and n in common for t in ts]),
            _mean([t for (n, p), ts in tb.items() if p == name and n in common for t in ts]))
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


@dataclass(frozen=True)
class TimelineBar:
    """One client-round on the timeline: a matplotlib Rectangle per part (PARTS), in order from the round's
    start; a part of zero length has a zero-width one."""

    client: int
    round: int
    parts: dict


# how each part is drawn: (alpha of the profile's colour, hatch); waiting is white
_PART_STYLE = {"download": (0.4, "\\\\"), "waiting": (0.0, None), "compute": (1.0, None), "upload": (0.4, "//")}


def plot_timeline(run: FleetRun, out: Path) -> list[TimelineBar]:
    """Each round a group of horizontal bars, one per client-round from the round's start to the server holding
    its reply, in its parts (download, waiting, compute, upload), coloured by profile; each round's end a solid
    line, its deadline a dashed one, stragglers edged in black (a cross where a straggler never replied)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Patch

    starts = run.round_starts()
    colours = {p.name: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(run.profiles)}
    by_round: dict[int, dict[int, ClientRound]] = {}
    for cr in run.client_rounds:
        by_round.setdefault(cr.round, {})[cr.client] = cr
    numbers = sorted(set(by_round) | set(run.rounds))
    rows = sum(len(set(by_round.get(n, {})) | set((run.rounds.get(n) or ServerRound(n)).sampled)) for n in numbers)
    height = min(60.0, 2.0 + 0.18 * rows + 0.3 * len(numbers))
    fig, ax = plt.subplots(figsize=(10, height))
    bars: list[TimelineBar] = []
    y, ticks, labels = 0.0, [], []
    for number in numbers:
        server = run.rounds.get(number) or ServerRound(number)
        start = starts.get(number)
        mine = by_round.get(number, {})
        clients = sorted(set(mine) | set(server.sampled))
        top = y
        for client in clients:
            cr = mine.get(client)
            straggler = client in server.stragglers
            if cr is not None and start is not None:
                colour = colours.get(cr.profile, "grey")
                left, drawn = start, {}
                for name in PARTS:
                    length = getattr(run.parts(cr), name)
                    alpha, hatch = _PART_STYLE[name]
                    face = "white" if alpha == 0 else to_rgba(colour, alpha)
                    edge = "black" if straggler else ("grey" if alpha < 1 else colour)
                    drawn[name] = ax.barh(y, length, left=left, height=0.8, color=face, hatch=hatch,
                                          edgecolor=edge, linewidth=1.2 if straggler else 0.5).patches[0]
                    left += length
                bars.append(TimelineBar(client, number, drawn))
            elif straggler and start is not None and server.deadline_s:
                ax.plot([start + server.deadline_s], [y], marker="x", color="black")
            y += 1
        end = server.emulated_s if run.virtual else server.real_s
        if start is not None and clients and end is not None:
            ax.vlines(start + end, top - 0.5, y - 0.5, colors="black", linewidth=1.4)
        if start is not None and server.deadline_s:
            ax.vlines(start + server.deadline_s, top - 0.5, y - 0.5, colors="red", linestyles="--", linewidth=1.2)
        if clients:
            ticks.append((top + y - 1) / 2)
            labels.append(f"round {number}")
        y += 1  # a gap between rounds
    ax.set_xlim(left=0)
    ax.set_yticks(ticks, labels)
    ax.invert_yaxis()
    clock = "emulated" if run.virtual else "real"
    ax.set_xlabel(f"seconds from the first round's start ({clock})")
    ax.set_title(f"{run.name}: each client from the round's start to its reply held, {clock} time "
                 f"({'virtual' if run.virtual else 'process'} mode)")
    handles = [Patch(color=colours[p.name], label=f"{p.name}: compute") for p in run.profiles]
    handles += [Patch(facecolor=to_rgba("grey", _PART_STYLE[n][0]) if _PART_STYLE[n][0] else "white",
                      edgecolor="grey", hatch=_PART_STYLE[n][1], label=n) for n in PARTS if n != "compute"]
    handles.append(Patch(facecolor="white", edgecolor="black", linewidth=1.2, label="straggler (cut)"))
    handles.append(plt.Line2D([], [], color="black", label="round end"))
    if any(r.deadline_s for r in run.rounds.values()):
        handles.append(plt.Line2D([], [], color="red", linestyle="--", label="deadline"))
    ax.legend(handles=handles, loc="best", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=100)
    finally:
        plt.close(fig)
    return bars
