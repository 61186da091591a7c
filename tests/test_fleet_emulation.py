"""The built-in app on an emulated fleet: deadlines, over-commit, availability and emulated time, in real runs.

Virtual mode (Flower's simulation runtime) runs the clients at full speed and judges them on the emulated
clock. Oracles: the logs read with this file's own regexes, and each emulated figure recomputed from the
bytes and time logged in the same line and the profile (seconds / cpu + bytes x 8 / rate + 2 x latency).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from contract.fleet_record import (
    Fleet,
    FleetRound,
    Profile,
    Window,
    read_fleet_json,
    read_fleet_round,
    write_fleet,
    write_fleet_round,
)
from contract.loglines import format_message, parse_line
from simulator.exchange_clock import NODE_IDLE_PULL, node_work_seconds
from tests.fleet_runs import fleet_run
from tests.helpers import run_json, wait_until_nothing_tagged

CLIENT_END = re.compile(
    r"\[round\] iteration:(?P<round>\d+) end time:(?P<time>[\d.]+)s peak_rss:\S+ recv:(?P<recv>\d+)B "
    r"sent:(?P<sent>\d+)B train_samples:\d+ test_samples:\d+ profile:(?P<profile>\S+) compute:(?P<compute>[\d.]+)s "
    r"transfer:(?P<transfer>[\d.]+)s download:[\d.]+s waiting:(?P<waiting>[\d.]+)s "
    r"emulated:(?P<emulated>[\d.]+)s$", re.M)
CLOCK = re.compile(r"\[round\] iteration:(?P<round>\d+) clock emulated:(?P<emulated>[\d.]+)s real:[\d.]+s "
                   r"deadline:(?P<deadline>[\d.]+)s sampled:(?P<sampled>\d+) taken:(?P<taken>\d+) "
                   r"offline:(?P<offline>\d+) stragglers:\[(?P<stragglers>[\d, ]*)\]$", re.M)
STRAGGLER = re.compile(r"\[round\] iteration:(\d+) straggler: reply discarded by the server", re.M)
ROUND_END = re.compile(r"\[round\] iteration:(\d+)/\d+ end replies:(\d+) failures:(\d+) aggregated:(\w+)", re.M)
SAMPLED = re.compile(r"\[round\] iteration:(\d+) clients:\[([\d, ]*)\]", re.M)
ROUND_START = re.compile(r"\[round\] iteration:(\d+)/\d+ start$", re.M)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _client_ends(run_dir, client) -> dict[int, dict]:
    text = (run_dir / f"client_{client}" / "client.log").read_text()
    return {int(m["round"]): {k: (v if k == "profile" else float(v)) for k, v in m.groupdict().items()}
            for m in CLIENT_END.finditer(text)}


def _bytes_floor(line: dict, profile: Profile) -> float:
    """The least time the task's bytes need over the profile's link, by hand: model down, update up, and a
    one-way latency each way (Flower's exchange adds round trips and its server's pull backoff on top)."""
    seconds = 2 * profile.latency
    if profile.down:
        seconds += line["recv"] * 8 / profile.down
    if profile.up:
        seconds += line["sent"] * 8 / profile.up
    return seconds


def _check_figures(line: dict, profile: Profile, emulated_compute: bool, late: float = 0.0) -> None:
    """The line's figures add up, its compute is the measured time (over the CPU share when emulated), and its
    transfer lies between the bytes' floor and that floor plus Flower's exchange: per object a round trip
    (a one-array message is 6 objects each way, 2 at a time, plus 4 calls) and the server's wait for the
    upload: its pull backoff doubles from 1 s, so the try after the upload lands comes at most one step
    (<= 1.2 x the upload's time + 1.2 s, with jitter) later. Before the exchange, the wait for the node's next
    idle pull: half its cycle (3 s and an empty pull) for its first task and in process mode's lines (the mean);
    on the emulated clock after that, anywhere in the cycle (the node's phase), or ``late`` seconds more when its
    last reply was still being pushed as the round started."""
    if emulated_compute:  # the task's CPU time over the share: at most its wall time's, which on a shared
        share = profile.cpu or 1.0  # machine also counts waiting for a core (at load 12 it was 2-7x the CPU time)
        assert 0 < line["compute"] <= line["time"] / share * 1.01 + 0.003, line
    else:
        assert line["compute"] == pytest.approx(line["time"], rel=0.01, abs=0.003)
    assert line["emulated"] == pytest.approx(line["compute"] + line["transfer"], abs=0.0005)
    floor = _bytes_floor(line, profile)
    upload = line["sent"] * 8 / profile.up if profile.up else 0.0
    # and the node's own work at its share (exchange_clock.node_work_seconds)
    cycle = NODE_IDLE_PULL + 2 * profile.latency
    idle = (0.0, 0.0) if not floor else (
        (0.0, cycle + max(0.0, late)) if emulated_compute and line["round"] > 1 else (cycle / 2, cycle / 2))
    floor += node_work_seconds(profile) if floor else 0.0
    ceiling = floor + idle[1] + 10 * 2 * profile.latency + 1.2 * (upload + 10 * 2 * profile.latency) + 1.2 + 0.1
    floor += idle[0]
    assert floor - 0.001 <= line["transfer"] <= ceiling, (line, floor, ceiling)


def _server(run_dir) -> str:
    return (run_dir / "server" / "server.log").read_text()


# --- the contract's pieces -----------------------------------------------------------------------------------

def test_fleet_json_round_trip_and_round_file(tmp_path):
    fleet = Fleet.of("f.toml", 6, (Profile("pi", range(0, 2), cpu=0.3, memory=900, down=8e6, up=2e6, latency=0.04,
                                           loss=0.01, availability=0.8, line=1),
                                   Profile("tr", range(2, 4), trace=(Window(2, 0.0, 5.0), Window(3, 10.0, 20.0)))))
    assert read_fleet_json(tmp_path) is None  # no fleet: a run as today
    write_fleet(tmp_path, fleet)
    back = read_fleet_json(tmp_path)
    assert back.profiles == fleet.profiles and back.num_clients == 6
    assert [back.profile_of(c).name for c in range(6)] == ["pi", "pi", "tr", "tr", "unconstrained", "unconstrained"]
    assert back.online_at(3, 12.0) and not back.online_at(3, 5.0) and not back.online_at(2, 5.0)
    assert read_fleet_round(tmp_path) is None
    write_fleet_round(tmp_path, FleetRound(round=3, clock=41.5, offline=(9, 2)))
    assert json.loads((tmp_path / "server" / "fleet_round.json").read_text()) == \
        {"round": 3, "clock": 41.5, "offline": [2, 9]}
    assert read_fleet_round(tmp_path) == FleetRound(3, 41.5, (2, 9))
    assert [p.name for p in (tmp_path / "server").iterdir()] == ["fleet_round.json"]  # no tmp file left


def test_new_lines_parse_as_their_own_kind_and_old_ones_unchanged():
    base = dict(round=2, seconds=1.5, peak_mib=300.0, recv_bytes=10, sent_bytes=20, num_train=5, num_test=2)
    old = parse_line("INFO: <FLClient> " + format_message("round_end", **base))
    assert old.kind == "round_end" and old.values == base
    figures = dict(profile="pi4-wifi", compute_s=6.0, transfer_s=0.25, download_s=0.125, waiting_s=0.0,
                   emulated_s=6.25)
    new = parse_line("INFO: <FLClient> " + format_message("round_end_fleet", **base, **figures))
    assert new.kind == "round_end_fleet" and new.values == {**base, **figures}
    clock = parse_line("INFO: <FLServer> " + format_message(
        "server_round_clock", round=2, emulated_s=10.0, seconds=0.4, deadline_s=10.0, sampled=6, replies=4,
        offline=1, stragglers=[8, 9]))
    assert clock.kind == "server_round_clock" and clock.values["stragglers"] == [8, 9]
    reply = parse_line("INFO: <FLServer> " + format_message("server_reply", round=2, client=7, seconds=5.25))
    assert reply.kind == "server_reply" and reply.values == {"round": 2, "client": 7, "seconds": 5.25}
    for kind, values in (("client_straggler", {"round": 1, "reason": "emulated 9 s is over the 5 s deadline"}),
                         ("round_failed", {"round": 4, "reason": "0 of 6 replies within 1 s, 1 needed"})):
        assert parse_line("WARNING: <FLServer> " + format_message(kind, **values)).kind == kind


class _SlowGrid:
    """Replies one message every 0.3 s, in order; each reply is handed to one pull only (as a SuperLink)."""

    def __init__(self, count: int) -> None:
        self.count, self.t0, self.handed = count, 0.0, set()
        self.lock = threading.Lock()

    def push_messages(self, messages):
        self.t0, self.handed = time.monotonic(), set()
        return list(range(len(messages)))

    def hand(self, ids, ready) -> list:
        with self.lock:
            out = [i for i in sorted(ids) if ready(i) and i not in self.handed]
            self.handed.update(out)
        return out

    def pull_messages(self, ids):
        due = int((time.monotonic() - self.t0) / 0.3)
        return [_Reply(i) for i in self.hand(ids, lambda i: i < due)]


class _Reply:
    def __init__(self, i: int, error: bool = False) -> None:
        self.metadata = type("M", (), {"reply_to_message_id": i, "src_node_id": i})()
        self.error = error

    def has_error(self) -> bool:
        return self.error


class _Message:
    def __init__(self, i: int) -> None:
        self.metadata = type("M", (), {"dst_node_id": i})()


def test_quick_grid_stops_at_enough_replies_or_at_the_deadline():
    from simulator.deadline_grid import DeadlineGrid

    grid = DeadlineGrid(_SlowGrid(10), poll=0.02)
    t = time.monotonic()
    got = grid.send_and_receive([_Message(i) for i in range(10)], timeout=30, enough=3)
    assert [m.metadata.src_node_id for m in got] == [0, 1, 2] and grid.cut == "enough"
    assert 0.85 < time.monotonic() - t < 1.6  # the third reply is due at 0.9 s
    grid.expect(deadline=1.0)  # for the next call only
    t = time.monotonic()
    got = grid.send_and_receive([_Message(i) for i in range(10)], timeout=30)
    assert 0.95 < time.monotonic() - t < 1.5 and grid.cut == "deadline" and len(got) in (3, 4)
    t = time.monotonic()
    got = grid.send_and_receive([_Message(i) for i in range(3)], timeout=30)
    assert len(got) == 3 and grid.cut is None


class _UploadingGrid(_SlowGrid):
    """Reply 0 at once; reply 1's head comes at 0.2 s but its objects take 3 s more, so the pull that takes it
    blocks (Flower's backoff: 1 s, then 2 s); reply 2 comes whole at 0.5 s. Like a SuperLink, a reply is handed
    to one pull only, and a later pull that asks for it again gets an error reply ("message unavailable")."""

    READY = {0: 0.0, 1: 0.2, 2: 0.5}

    def pull_messages(self, ids):
        now = time.monotonic() - self.t0
        with self.lock:
            again = [i for i in sorted(ids) if i in self.handed]
        got = self.hand(ids, lambda i: self.READY[i] <= now)
        if 1 in got:
            time.sleep(3.0)
        return [_Reply(i) for i in got] + [_Reply(i, error=True) for i in again]


def test_quick_grid_ends_at_the_deadline_while_flower_is_still_pulling_a_reply():
    """One pull at a time (two asking for the same reply would get it once and an error once); the round ends
    at its deadline although that pull is still blocked, with the replies pulled before it."""
    from simulator.deadline_grid import DeadlineGrid

    grid = DeadlineGrid(_UploadingGrid(3), poll=0.02)
    t = time.monotonic()
    got = grid.send_and_receive([_Message(i) for i in range(3)], timeout=30, deadline=1.0)
    took = time.monotonic() - t
    assert 0.95 < took < 1.3 and grid.cut == "deadline", took
    assert [(m.metadata.src_node_id, m.has_error()) for m in got] == [(0, False)]


# --- real runs -------------------------------------------------------------------------------------------------

FAST = Profile("fast", range(0, 8), cpu=1.0, down=1e6, up=1e6)
SLOW = Profile("slow", range(8, 10), cpu=0.25, down=0.25e6, up=0.25e6)  # 4x slower in CPU and link


@pytest.fixture(scope="module")
def deadline_run(tmp_path_factory):
    fleet = Fleet.of("fleet.toml", 10, (FAST, SLOW))
    run_dir, done = fleet_run(tmp_path_factory.mktemp("deadline"), fleet, clients=10, rounds=3, deadline=10.0,
                              tag="t-emu-deadline")
    assert done.returncode == 0, done.stdout + done.stderr + _server(run_dir)
    assert wait_until_nothing_tagged("t-emu-deadline") == []
    return run_dir, fleet


def test_a_deadline_cuts_the_profile_4x_slower(deadline_run):
    run_dir, fleet = deadline_run
    server = _server(run_dir)
    clocks = {int(m["round"]): m for m in CLOCK.finditer(server)}
    assert sorted(clocks) == [1, 2, 3]
    for m in clocks.values():
        assert _ints(m["stragglers"]) == [8, 9] and int(m["taken"]) == 8 and float(m["deadline"]) == 10
        assert float(m["emulated"]) == 10.0  # fewer than K = 10 within the deadline: the round lasts it
    ends = ROUND_END.findall(server)
    assert [(int(r), int(n), a) for r, n, _, a in ends] == [(1, 8, "yes"), (2, 8, "yes"), (3, 8, "yes")]
    for client in range(10):
        profile = fleet.profile_of(client)
        lines = _client_ends(run_dir, client)
        assert sorted(lines) == [1, 2, 3] and {v["profile"] for v in lines.values()} == {profile.name}
        for rnd, line in lines.items():  # a slow node still pushes its cut reply as the next round starts
            _check_figures(line, profile, emulated_compute=True, late=lines[rnd - 1]["emulated"] - 10 if rnd > 1 else 0)
            assert (line["emulated"] > 10) == (profile is SLOW)
        cut = [int(r) for r in STRAGGLER.findall((run_dir / f"client_{client}" / "client.log").read_text())]
        assert cut == ([1, 2, 3] if profile is SLOW else [])
    assert run_json(run_dir)["status"] == "finished"


def test_emulated_compute_at_a_quarter_core_is_4x_the_measured(deadline_run):
    """Every client trains the same work (40 samples, the same model): its CPU time, the emulated compute times
    the share, is alike for both profiles, so a quarter core's compute is 4x a whole core's. (The wall time
    beside it counts the wait for a core on a loaded machine: at load 12 CPU time was 0.14-0.45 of it.)"""
    run_dir, fleet = deadline_run
    cpu_seconds = {"fast": [], "slow": []}
    for client in range(10):
        profile = fleet.profile_of(client)
        for line in _client_ends(run_dir, client).values():
            assert line["compute"] <= line["time"] / profile.cpu * 1.01 + 0.003, line  # CPU time <= wall time
            cpu_seconds[line["profile"]].append(line["compute"] * profile.cpu)
    fast, slow = (statistics.median(cpu_seconds[p]) for p in ("fast", "slow"))
    assert slow / fast == pytest.approx(1.0, rel=0.3), cpu_seconds


def test_a_round_with_too_few_replies_by_the_deadline_fails_and_the_run_goes_on(tmp_path):
    """Each round fails at its deadline and the next goes on; a run none of whose rounds was aggregated
    did not train: it ends failed, saying so."""
    fleet = Fleet.of("fleet.toml", 4, (Profile("all", range(0, 4), down=1e6, up=1e6),))  # >= 3.9 s each
    run_dir, done = fleet_run(tmp_path, fleet, clients=4, rounds=2, deadline=1.0, tag="t-emu-fail")
    server = _server(run_dir)
    failed = [int(r) for r in re.findall(r"\[round\] iteration:(\d+) failed at the deadline", server)]
    assert failed == [1, 2]
    assert "not aggregated" not in server and "[run] finished" not in server
    assert "[run] failed: no round was aggregated: each of the 2 rounds failed at its 1 s deadline" in server
    assert run_json(run_dir)["status"] == "failed"
    assert not (run_dir / "checkpoints" / "round_0001.pt").exists()  # the model stayed as it was
    assert all(_ints(m["stragglers"]) == [0, 1, 2, 3] for m in CLOCK.finditer(server))
    assert wait_until_nothing_tagged("t-emu-fail") == []


def test_overcommit_samples_6_and_takes_the_4_fastest(tmp_path):
    profiles = tuple(Profile(f"p{i}", range(i, i + 1), down=10e6, up=(1 + i) * 0.5e6) for i in range(10))
    fleet = Fleet.of("fleet.toml", 10, profiles)
    run_dir, done = fleet_run(tmp_path, fleet, clients=10, rounds=2, per_round=4, overcommit=1.5, tag="t-emu-over")
    server = _server(run_dir)
    assert done.returncode == 0, done.stdout + done.stderr + server
    sampled = {int(r): _ints(c) for r, c in SAMPLED.findall(server)}
    clocks = {int(m["round"]): m for m in CLOCK.finditer(server)}
    assert sorted(sampled) == [1, 2] == sorted(clocks)
    for rnd, clients in sampled.items():
        assert len(clients) == 6 and int(clocks[rnd]["sampled"]) == 6 and int(clocks[rnd]["taken"]) == 4
        lines = {c: _client_ends(run_dir, c)[rnd] for c in clients}
        for c, line in lines.items():  # a node cut in round 1 may still push that reply as round 2 starts
            before = _client_ends(run_dir, c).get(rnd - 1)
            late = before["emulated"] - float(clocks[rnd - 1]["emulated"]) if before else 0.0
            _check_figures(line, fleet.profile_of(c), emulated_compute=True, late=late)
        emulated = {c: line["emulated"] for c, line in lines.items()}
        by_time = sorted(clients, key=emulated.get)
        assert _ints(clocks[rnd]["stragglers"]) == sorted(by_time[4:])
        assert float(clocks[rnd]["emulated"]) == pytest.approx(emulated[by_time[3]], rel=0.01, abs=0.003)
    assert [int(n) for _, n, _, _ in ROUND_END.findall(server)] == [4, 4]
    assert wait_until_nothing_tagged("t-emu-over") == []


def _participation(run_dir, clients: int) -> set[tuple[int, int]]:
    return {(c, int(r)) for c in range(clients)
            for r in ROUND_START.findall((run_dir / f"client_{c}" / "client.log").read_text())}


def test_availability_half_over_40_rounds(tmp_path):
    fleet = Fleet.of("fleet.toml", 10, (Profile("flaky", range(0, 10), availability=0.5),))
    took = []
    for attempt, rounds in enumerate((40, 12)):  # the second run, shorter, from the same seed
        run_dir, done = fleet_run(tmp_path / str(attempt), fleet, clients=10, rounds=rounds, seed=5, samples=20,
                                  tag=f"t-emu-avail{attempt}")
        server = _server(run_dir)
        assert done.returncode == 0, done.stdout + done.stderr + server
        took.append(_participation(run_dir, 10))
        offline = {int(m["round"]): int(m["offline"]) for m in CLOCK.finditer(server)}
        assert sorted(offline) == list(range(1, rounds + 1))
        per_round = {r: sum(1 for _, x in took[-1] if x == r) for r in range(1, rounds + 1)}
        assert all(per_round[r] + offline[r] == 10 for r in per_round)
    assert 0.4 <= len(took[0]) / 400 <= 0.6, len(took[0])
    assert {(c, r) for c, r in took[0] if r <= 12} == took[1]  # the same clients in the same rounds, same seed
    assert wait_until_nothing_tagged("t-emu-avail1") == []


def test_a_run_without_a_fleet_writes_todays_lines_only(tmp_path):
    run_dir, done = fleet_run(tmp_path, None, clients=4, rounds=2, tag="t-emu-none")
    assert done.returncode == 0, done.stdout + done.stderr
    old_kinds = {"round_start", "epoch", "evaluate", "round_end", "final_evaluate", "server_waiting", "checkpoint",
                 "server_round_start", "server_round_end", "final_start", "server_final", "run_finished",
                 "ray_node"}  # where a virtual client's task ran (issue 26): no fleet figure in it
    for log in [run_dir / "server" / "server.log", *(run_dir / f"client_{c}" / "client.log" for c in range(4))]:
        for line in log.read_text().splitlines():
            event = parse_line(line)
            assert event is not None and event.kind in old_kinds, line
            assert not re.search(r"profile:|emulated|straggler|clock ", line), line
    assert not (run_dir / "fleet.json").exists() and not (run_dir / "server" / "fleet_round.json").exists()
    assert wait_until_nothing_tagged("t-emu-none") == []


def test_process_mode_overcommit_takes_the_first_replies_and_logs_real_compute(tmp_path):
    fleet = Fleet.of("fleet.toml", 4, (Profile("a", range(0, 2), cpu=0.5, down=8e6, up=2e6, latency=0.04),
                                       Profile("b", range(2, 4))))
    run_dir, done = fleet_run(tmp_path, fleet, clients=4, rounds=2, per_round=2, overcommit=1.5, mode="process",
                              tag="t-emu-proc")
    server = _server(run_dir)
    assert done.returncode == 0, done.stdout + done.stderr + server
    sampled = {int(r): _ints(c) for r, c in SAMPLED.findall(server)}
    for m in CLOCK.finditer(server):
        stragglers = _ints(m["stragglers"])
        assert int(m["sampled"]) == 3 and int(m["taken"]) == 2 and float(m["deadline"]) == 0
        assert len(stragglers) == 1 and set(stragglers) <= set(sampled[int(m["round"])])
    assert [int(n) for _, n, _, _ in ROUND_END.findall(server)] == [2, 2]
    for client in range(4):
        profile = fleet.profile_of(client)
        for line in _client_ends(run_dir, client).values():
            _check_figures(line, profile, emulated_compute=False)  # real compute: the launcher slows it
            assert line["waiting"] > 0
    assert read_fleet_round(run_dir).round == 2  # written for the launcher's links before each round
    assert wait_until_nothing_tagged("t-emu-proc") == []


WARM_UP = """
import time, torch
from simulator.training import warm_up
started = time.perf_counter()
warm_up(1, 10)
print(time.perf_counter() - started)
"""


@pytest.mark.slow
def test_round_one_emulated_compute_has_no_runtime_warm_up(tmp_path):
    """Virtual mode: the first task in a Ray worker pays the runtime's warm-up (torch's first steps, ~2 s here);
    that is the emulator's cost, not the device's: a cpu 0.1 client's emulated compute in round 1 exceeds its
    later rounds' by less than half the warm-up over the share (it exceeded them by all of it). The warm-up's
    size is measured here, in a fresh process, on the same (busy) machine: the bound follows its load."""
    share = 0.1
    fleet = Fleet.of("fleet.toml", 4, (Profile("tenth", range(0, 4), cpu=share),))
    run_dir, done = fleet_run(tmp_path, fleet, clients=4, rounds=3, samples=200, tag="t-emu-warm")
    assert done.returncode == 0, done.stdout + done.stderr + _server(run_dir)
    warm = float(subprocess.run([sys.executable, "-c", WARM_UP], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parents[1]).stdout.split()[-1])
    for client in range(4):
        lines = _client_ends(run_dir, client)
        assert sorted(lines) == [1, 2, 3], lines
        first, later = lines[1]["compute"], [lines[r]["compute"] for r in (2, 3)]
        print(f"client {client}: emulated compute round 1 {first:.2f} s, rounds 2-3 {later}, warm-up {warm:.2f} s")
        assert first - max(later) < 0.5 * warm / share, (client, first, later, warm)
    assert wait_until_nothing_tagged("t-emu-warm") == []


def test_a_run_no_client_replied_to_says_why_without_a_dangling_colon(tmp_path):
    """Every client offline in every round (its only window long after the run), under a deadline: no round
    gets a reply, and the run's reason names the rounds and why, not "no client replied in any round: "."""
    late = tuple(Window(c, 1e6, 1e6 + 1) for c in range(2))
    fleet = Fleet.of("fleet.toml", 2, (Profile("late", range(0, 2), trace=late),))
    run_dir, done = fleet_run(tmp_path, fleet, clients=2, rounds=2, deadline=5.0, tag="t-emu-no-reply")
    reason = run_json(run_dir)["reason"]
    assert run_json(run_dir)["status"] == "failed" and done.returncode == 1, done.stdout + done.stderr
    assert re.fullmatch(r"no client replied in any round: rounds 1-2 not aggregated \(0 of 0 replies within 5 s, "
                        r"\d+ needed\)", reason), reason
    assert wait_until_nothing_tagged("t-emu-no-reply") == []


class _CountingGrid(_SlowGrid):
    """Replies 0.1 s after each message's push (none for node 4); counts the messages awaiting replies."""

    def __init__(self, nodes: int) -> None:
        super().__init__(nodes)
        self.pushed: dict[int, float] = {}
        self.handed: set[int] = set()
        self.most_in_flight = 0

    def push_messages(self, messages):
        now = time.monotonic()
        ids = [m.metadata.dst_node_id for m in messages]
        self.pushed.update((i, now) for i in ids)
        self.most_in_flight = max(self.most_in_flight, len(set(self.pushed) - set(self.handed)))
        return ids

    def pull_messages(self, ids):
        now = time.monotonic()
        return [_Reply(i) for i in self.hand(ids, lambda i: i != 4 and now - self.pushed[i] >= 0.1)]


def test_quick_grid_keeps_a_window_of_messages_in_flight():
    """The final evaluation's sending: the next message as soon as a reply comes, never more than the window
    awaiting; a message without a reply is given up at its own timeout, the others go on meanwhile."""
    from simulator.deadline_grid import DeadlineGrid

    fake = _CountingGrid(10)
    grid = DeadlineGrid(fake, poll=0.02)
    t = time.monotonic()
    got = grid.send_in_window([_Message(i) for i in range(10)], window=3, timeout=1.0)
    took = time.monotonic() - t
    assert sorted(m.metadata.src_node_id for m in got) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert fake.most_in_flight == 3
    # 9 replies of 0.1 s three at a time, one slot held by node 4 until its 1 s timeout: about 0.5 s, then
    # node 4's timeout (pushed at about 0.1 s) ends it; batches of 3 awaiting their slowest would take 3 s
    assert 1.0 < took < 1.6, took


def test_the_final_evaluation_keeps_two_numbers_a_client_not_its_reply():
    """10,000 clients' final replies held to the end were ~14 MiB of the ServerApp's memory, growing with N:
    each reply is folded to what the pooled accuracy needs as it comes."""
    from simulator.deadline_grid import DeadlineGrid
    from simulator.strategy import pooled_counts, test_counts

    grid = DeadlineGrid(_CountingGrid(10), poll=0.02)
    kept = grid.send_in_window([_Message(i) for i in range(10) if i != 4], window=3, timeout=1.0,
                               keep=lambda reply: ("kept", reply.metadata.src_node_id))
    assert sorted(kept) == [("kept", i) for i in (0, 1, 2, 3, 5, 6, 7, 8, 9)]
    assert pooled_counts([(3, 4), None, (1, 4), (0, 0)]) == (0.5, 8)
    assert test_counts(_Reply(1, error=True)) is None
