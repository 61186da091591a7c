"""fl-stats --by profile and --plot-timeline on an emulated fleet's run: logs written here in the real formats
(contract.loglines.LogWriter) and one real virtual-mode run, judged by numbers this file computes itself with
its own regexes from the log lines and run.json."""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import struct
from pathlib import Path

import pytest

from contract.loglines import LogWriter
from launcher.stats.fleet_runs import plot_timeline, read_fleet_run
from tests.helpers import run, runs, wait_until_nothing_tagged

PROFILES = [{"name": "pi4", "clients": [0, 2]}, {"name": "rest", "clients": [2, 4]}]


def _run_json(folder: Path, fleet: bool = True, virtual: bool = False, restarts=()) -> None:
    data = {"run_id": folder.name, "kill_tag": "t", "status": "finished", "task": "train", "options": {},
            "settings": {}, "plan": {"nodes": [], "devices": [], "virtual": {"workers": 2} if virtual else None},
            "processes": [], "restarts": list(restarts)}
    if fleet:
        data["fleet"] = {"file": "fleet.toml", "clients": 4, "profiles": PROFILES}
    (folder / "run.json").write_text(json.dumps(data))


def _client_round(log: LogWriter, rnd: int, acc: float, profile: str, seconds: float, waiting: float,
                  emulated: float) -> None:
    log.write("round_start", round=rnd, rounds=2)
    log.write("evaluate", acc=acc)
    log.write("round_end_fleet", round=rnd, seconds=seconds, peak_mib=300.0, recv_bytes=1000, sent_bytes=1000,
              num_train=80, num_test=20, profile=profile, compute_s=seconds, transfer_s=0.5, download_s=0.25,
              waiting_s=waiting, emulated_s=emulated)


def _written_run(tmp_path: Path, virtual: bool = False) -> Path:
    """4 clients, 2 rounds. Round 1: client 1 offline, client 0 a straggler (cut at the 5 s deadline, no
    reply). Round 2: everyone; client 3 a straggler that replied late; the server held client 0's reply at 5.5 s
    (its other replies have no reply line). Client 1 was killed once for memory."""
    folder = tmp_path / "r1"
    folder.mkdir()
    _run_json(folder, virtual=virtual, restarts=[
        {"client": 1, "role": "supernode", "cause": "out of memory (profile pi4)"},
        {"client": 2, "role": "supernode", "cause": "exit code 1"}])
    server = LogWriter(folder / "server" / "server.log", "FLServer")
    server.write("server_offline", round=1, partitions=[1])
    server.write("server_round_start", round=1, rounds=2, sampled=3)
    server.write("server_sampled", round=1, partitions=[0, 2, 3])
    server.write("server_round_clock", round=1, emulated_s=4.0, seconds=5.0, deadline_s=5.0, sampled=3, replies=2,
                 offline=1, stragglers=[0])
    server.write("server_offline", round=2, partitions=[])
    server.write("server_round_start", round=2, rounds=2, sampled=4)
    server.write("server_sampled", round=2, partitions=[0, 1, 2, 3])
    server.write("server_reply", round=2, client=0, seconds=5.5)
    server.write("server_round_clock", round=2, emulated_s=3.0, seconds=4.0, deadline_s=5.0, sampled=4, replies=3,
                 offline=0, stragglers=[3])
    server.close()
    logs = {c: LogWriter(folder / f"client_{c}" / "client.log", "FLClient") for c in range(4)}
    logs[0].write("round_start", round=1, rounds=2)
    logs[0].write("evaluate", acc=0.1)  # cut at the deadline before it replied: no round end line
    _client_round(logs[2], 1, 0.5, "rest", 1.0, 0.5, 1.5)
    _client_round(logs[3], 1, 0.6, "rest", 2.0, 0.5, 2.5)
    _client_round(logs[0], 2, 0.3, "pi4", 3.0, 1.0, 9.0)
    _client_round(logs[1], 2, 0.4, "pi4", 4.0, 2.0, 7.0)
    _client_round(logs[2], 2, 0.7, "rest", 1.0, 0.0, 1.0)
    _client_round(logs[3], 2, 0.8, "rest", 6.0, 0.0, 6.5)
    for log in logs.values():
        log.close()
    return folder


def _p95(values):
    ordered = sorted(values)
    rank = 0.95 * (len(ordered) - 1)
    low = int(rank)
    return ordered[low] + (ordered[min(low + 1, len(ordered) - 1)] - ordered[low]) * (rank - low)


def _by_profile_json(folder: Path, *extra: str) -> dict:
    done = run("fl-stats", str(folder), "--by", "profile", "--json", *extra)
    assert done.returncode == 0, done.stderr
    return {row["profile"]: row for row in json.loads(done.stdout)["profiles"]}


def test_by_profile_on_written_logs_process_mode(tmp_path):
    rows = _by_profile_json(_written_run(tmp_path))
    # process mode: the round start to the server's reply line (else to the task's end); download: the line's,
    # at most the waiting; upload: the reply line after the task's end
    pi4_times = [5.5, 2.0 + 4.0]
    rest_times = [0.5 + 1.0, 0.5 + 2.0, 0.0 + 1.0, 0.0 + 6.0]
    assert rows["pi4"] == pytest.approx({
        "profile": "pi4", "clients": 2, "rounds": 2, "mean_s": 5.75, "p95_s": _p95(pi4_times),
        "download_s": 0.25, "waiting_s": (0.75 + 1.75) / 2, "compute_s": 3.5, "upload_s": 0.75, "stragglers": 1,
        "oom_kills": 1, "offline_rounds": 1, "acc": (0.3 + 0.4) / 2})
    assert rows["rest"] == pytest.approx({
        "profile": "rest", "clients": 2, "rounds": 4, "mean_s": sum(rest_times) / 4, "p95_s": _p95(rest_times),
        "download_s": 0.5 / 4, "waiting_s": 0.5 / 4, "compute_s": 10 / 4, "upload_s": 0.0,
        "stragglers": 1, "oom_kills": 0, "offline_rounds": 0, "acc": (0.7 + 0.8) / 2})


def test_by_profile_virtual_mode_uses_emulated_times_and_csv(tmp_path):
    folder = _written_run(tmp_path, virtual=True)
    rows = _by_profile_json(folder)
    assert rows["pi4"]["mean_s"] == pytest.approx((9.0 + 7.0) / 2)  # the emulated times: no reply line
    # virtual mode: download (the line's), compute, the rest of the emulated time is upload; no waiting
    assert (rows["pi4"]["download_s"], rows["pi4"]["waiting_s"], rows["pi4"]["compute_s"]) == (0.25, 0.0, 3.5)
    assert rows["pi4"]["upload_s"] == pytest.approx((9.0 + 7.0) / 2 - 0.25 - 3.5)
    assert rows["rest"]["p95_s"] == pytest.approx(_p95([1.5, 2.5, 1.0, 6.5]))
    done = run("fl-stats", str(folder), "--by", "profile", "--csv")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("profile,clients,rounds,mean_s,p95_s,download_s,waiting_s,compute_s,upload_s,stragglers,"
                        "oom_kills,offline_rounds,acc")
    assert lines[1].startswith("pi4,2,2,8.0,")
    table = run("fl-stats", str(folder), "--by", "profile")
    assert table.returncode == 0 and "pi4" in table.stdout and "emulated" in table.stdout


def test_offline_rounds_without_offline_lines_count_the_unsampled(tmp_path):
    folder = _written_run(tmp_path)
    log = folder / "server" / "server.log"
    log.write_text("".join(line for line in log.read_text().splitlines(True) if "offline clients:" not in line))
    rows = _by_profile_json(folder)
    assert (rows["pi4"]["offline_rounds"], rows["rest"]["offline_rounds"]) == (1, 0)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_timeline_draws_one_bar_per_client_round(tmp_path):
    folder = _written_run(tmp_path)
    bars = plot_timeline(read_fleet_run(folder, json.loads((folder / "run.json").read_text())), tmp_path / "t.png")
    assert len(bars) == 6  # the round end lines written above
    # process mode: client 0's round 2 from the round's start: download, waiting, compute, upload to the reply
    bar = next(b for b in bars if (b.client, b.round) == (0, 2))
    assert [(p.get_width()) for p in bar.parts.values()] == pytest.approx([0.25, 0.75, 3.0, 1.5])
    lefts = [p.get_x() for p in bar.parts.values()]
    assert [b - a for a, b in zip(lefts, lefts[1:])] == pytest.approx([0.25, 0.75, 3.0])
    # client 3 in round 2 (client 0 in round 1: no bar)
    assert [(b.client, b.round) for b in bars if b.parts["compute"].get_edgecolor()[:3] == (0, 0, 0)] == [(3, 2)]
    out = tmp_path / "cli.png"
    done = run("fl-stats", str(folder), "--plot-timeline", str(out))
    assert done.returncode == 0, done.stderr
    width, height = _png_size(out)
    assert width >= 600 and height >= 300 and out.stat().st_size > 5000


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    folder = tmp_path / "plain"
    (folder / "client_0").mkdir(parents=True)
    _run_json(folder, fleet=False)
    (folder / "client_0" / "client.log").write_text("")
    done = run("fl-stats", str(folder), "--by", "profile")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "run plain has no fleet" in done.stderr
    fleet_run = _written_run(tmp_path)
    (tmp_path / "a_file").write_text("")
    # /proc refuses new files even to root; a file's "folder"; a missing folder; a folder as the file
    for target in (Path("/proc/fl-stats-test.png"), tmp_path / "a_file" / "t.png", tmp_path / "missing" / "t.png",
                   tmp_path):
        done = run("fl-stats", str(fleet_run), "--plot-timeline", str(target))
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--plot-timeline" in done.stderr, done.stderr
    done = run("fl-stats", str(fleet_run), "--plot-timeline", str(tmp_path / "t.png"), "--csv")
    assert done.returncode == 2 and done.stderr.count("\n") == 1


FLEET_TOML = """\
[[profile]]
name = "pi4"
clients = 4
cpu = 0.1
down = "8Mbit"
up = "2Mbit"
latency = "40ms"
availability = 0.6

[[profile]]
name = "rest"
clients = "rest"
cpu = 1.0
availability = 0.9
"""

ROUND_END = re.compile(r"iteration:(\d+) end time:([\d.]+)s .* profile:(\S+) compute:[\d.]+s transfer:[\d.]+s "
                       r"download:[\d.]+s waiting:([\d.]+)s emulated:([\d.]+)s$")
EVALUATE = re.compile(r"\[evaluate\] evaluate acc: ([\d.]+)$")
STRAGGLERS = re.compile(r"iteration:(\d+) clock .* stragglers:\[([\d, ]*)\]$")
OFFLINE = re.compile(r"iteration:(\d+) offline clients:\[([\d, ]*)\]$")


def _numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


@pytest.fixture(scope="module")
def virtual_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet-run")
    (root / "fleet.toml").write_text(FLEET_TOML)
    tag = "t-fleet-stats"
    try:
        done = run("fl-launch", "--client-num", "16", "--rounds", "2", "--local-epochs", "1", "--fleet",
                   str(root / "fleet.toml"), "--log-dir", str(root / "logs"), "--min-clients", "2",
                   "--round-deadline", "2", "--mode", "virtual", "--kill-tag", tag, timeout=240)
    finally:
        assert wait_until_nothing_tagged(tag) == []
    assert done.returncode == 0, done.stderr[-2000:]
    return runs(root / "logs")[-1]


def _expected(folder: Path) -> dict:
    """Per profile, from the log lines (this file's regexes) and run.json alone."""
    info = json.loads((folder / "run.json").read_text())
    ranges = {p["name"]: range(*p["clients"]) for p in info["fleet"]["profiles"]}
    stragglers, offline = [], []
    for line in (folder / "server" / "server.log").read_text().splitlines():
        if m := STRAGGLERS.search(line):
            stragglers += _numbers(m.group(2))
        if m := OFFLINE.search(line):
            offline += _numbers(m.group(2))
    times, profile_seen, last_acc = {}, {}, {}
    for log in folder.glob("client_*/client.log"):
        client = int(log.parent.name.split("_")[1])
        for line in log.read_text().splitlines():
            if m := ROUND_END.search(line):
                times.setdefault(client, []).append(float(m.group(5)))  # virtual mode: the emulated time
                profile_seen[client] = m.group(3)
            if m := EVALUATE.search(line):
                last_acc[client] = float(m.group(1))
    oom = [r["client"] for r in info.get("restarts", []) if "out of memory" in r["cause"]]
    out = {}
    for name, clients in ranges.items():
        assert all(profile_seen[c] == name for c in clients if c in profile_seen)
        mine = [t for c in clients for t in times.get(c, [])]
        accs = [last_acc[c] for c in clients if c in last_acc]
        out[name] = {"profile": name, "clients": len(clients), "rounds": len(mine),
                     "mean_s": sum(mine) / len(mine) if mine else None, "p95_s": _p95(mine) if mine else None,
                     "stragglers": sum(s in clients for s in stragglers), "oom_kills": sum(c in clients for c in oom),
                     "offline_rounds": sum(c in clients for c in offline),
                     "acc": sum(accs) / len(accs) if accs else None}
    return out


def test_real_virtual_run_by_profile_and_timeline(virtual_run, tmp_path):
    expected = _expected(virtual_run)
    rows = _by_profile_json(virtual_run)
    assert set(rows) == {"pi4", "rest"}
    for name, want in expected.items():
        assert {k: rows[name][k] for k in want} == pytest.approx(want, rel=1e-3), name
        parts = sum(rows[name][f"{p}_s"] for p in ("download", "waiting", "compute", "upload"))
        assert parts == pytest.approx(rows[name]["mean_s"], rel=1e-3) and rows[name]["waiting_s"] == 0, name
    # the fleet did what it was told: the slow profile is cut at the 2 s deadline, clients were offline
    assert expected["pi4"]["stragglers"] >= 1 and expected["pi4"]["mean_s"] > 2.0
    assert expected["rest"]["mean_s"] < 2.0
    assert sum(row["offline_rounds"] for row in expected.values()) >= 1
    client_rounds = sum(row["rounds"] for row in expected.values())
    assert client_rounds > 16
    bars = plot_timeline(read_fleet_run(virtual_run, json.loads((virtual_run / "run.json").read_text())),
                         tmp_path / "timeline.png")
    assert len(bars) == client_rounds
    assert all(math.isfinite(b.parts["compute"].get_width()) and b.parts["compute"].get_width() > 0 for b in bars)
    out = tmp_path / "cli.png"
    done = run("fl-stats", str(virtual_run), "--plot-timeline", str(out))
    assert done.returncode == 0, done.stderr
    width, height = _png_size(out)
    assert width >= 600 and height >= 400


def test_fl_stats_tensorboard_holds_the_fleets_emulated_round_times(virtual_run, tmp_path):
    from tests.test_run_end_to_end import _read_events

    done = run("fl-stats", str(virtual_run), "--tensorboard", str(tmp_path / "tb"))
    assert done.returncode == 0, done.stderr
    got = _read_events(tmp_path / "tb" / virtual_run.name)
    want = {}
    for log in virtual_run.glob("client_*/client.log"):
        for line in log.read_text().splitlines():
            if m := ROUND_END.search(line):  # virtual mode: the emulated time
                want.setdefault(f"fleet/{log.parent.name}/round_s", {})[int(m.group(1))] = float(m.group(5))
    assert len(want) >= 8
    for tag, values in want.items():
        assert got[tag] == pytest.approx(values, rel=1e-4), tag
    assert set(got["fleet/round_emulated_s"]) == {1, 2}


def test_no_escape_codes_in_any_log_file_of_a_virtual_run(virtual_run):
    """Ray's coloured worker prefixes and the lines it forwards from its workers included."""
    from tests.test_plain_logs import coloured_logs

    assert coloured_logs(virtual_run, process_mode=False) == []


# --- a real process-mode run: 3 of 4 clients on a 3/1 Mbit/s link (issue 29's example) ----------------------
SLOW_LINK_TOML = """\
[[profile]]
name = "slow-link"
clients = 3
down = "3Mbit"
up = "1Mbit"

[[profile]]
name = "fast"
clients = "rest"
"""
UP_BITS = 1e6
CLIENT_END = re.compile(r"iteration:(\d+) end time:([\d.]+)s .* sent:(\d+)B .* profile:(\S+) compute:[\d.]+s "
                        r"transfer:[\d.]+s (?:download:([\d.]+)s )?waiting:([\d.]+)s emulated:[\d.]+s$", re.M)
CLOCK_REAL = re.compile(r"iteration:(\d+) clock emulated:[\d.]+s real:([\d.]+)s ")


@pytest.fixture(scope="module")
def process_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet-process-run")
    (root / "fleet.toml").write_text(SLOW_LINK_TOML)
    tag = "t-fleet-stats-process"
    try:
        done = run("fl-launch", "--client-num", "4", "--rounds", "2", "--local-epochs", "1", "--fleet",
                   str(root / "fleet.toml"), "--log-dir", str(root / "logs"), "--mode", "process",
                   "--kill-tag", tag, timeout=300)
    finally:
        assert wait_until_nothing_tagged(tag) == []
    assert done.returncode == 0, done.stderr[-2000:]
    return runs(root / "logs")[-1]


def _client_rounds(folder: Path) -> list[dict]:
    """Each client-round's figures from its round end line (this file's regex)."""
    out = []
    for log in folder.glob("client_*/client.log"):
        for m in CLIENT_END.finditer(log.read_text()):
            out.append({"client": int(log.parent.name.split("_")[1]), "round": int(m[1]), "task": float(m[2]),
                        "sent": int(m[3]), "profile": m[4], "download": float(m[5] or 0), "waiting": float(m[6])})
    return out


@pytest.mark.slow
def test_real_process_run_says_where_a_slow_links_round_went(process_run, tmp_path):
    """The slow profile's round time holds its upload: at least the reply's bytes over the 1 Mbit/s link after
    the task's end, at most the round's real time on the server; its parts add up to it; the timeline draws
    each client-round as download, waiting, compute, upload from the round's start."""
    mine = _client_rounds(process_run)
    slow = [r for r in mine if r["profile"] == "slow-link"]
    assert len(slow) == 6 and len(mine) == 8
    round_real = {int(m[1]): float(m[2]) for m in CLOCK_REAL.finditer((process_run / "server/server.log").read_text())}
    links = [json.loads((process_run / f"client_{c}" / "link.json").read_text()) for c in range(3)]
    # the bytes crossed the link: each round's reply, and the queries and headers around it
    assert all(link["bytes_up"] >= 2 * max(r["sent"] for r in slow) for link in links)
    upload_floor = statistics.mean(r["sent"] * 8 / UP_BITS for r in slow)  # 1.98 s for digits' LeNet
    until_task_end = statistics.mean(r["waiting"] + r["task"] for r in slow)  # the old figure
    rows = _by_profile_json(process_run)
    got = rows["slow-link"]
    assert got["mean_s"] >= until_task_end + upload_floor, (got, until_task_end, upload_floor)
    assert got["mean_s"] <= statistics.mean(round_real[r["round"]] for r in slow) + 0.05
    assert got["upload_s"] >= upload_floor
    assert got["compute_s"] == pytest.approx(statistics.mean(r["task"] for r in slow), abs=1e-3)
    assert got["download_s"] == pytest.approx(statistics.mean(min(r["download"], r["waiting"]) for r in slow),
                                              abs=1e-3)
    assert got["download_s"] + got["waiting_s"] == pytest.approx(statistics.mean(r["waiting"] for r in slow),
                                                                 abs=1e-3)
    parts = got["download_s"] + got["waiting_s"] + got["compute_s"] + got["upload_s"]
    assert parts == pytest.approx(got["mean_s"], abs=1e-3)
    run_info = json.loads((process_run / "run.json").read_text())
    bars = plot_timeline(read_fleet_run(process_run, run_info), tmp_path / "timeline.png")
    assert len(bars) == 8 and all(list(b.parts) == ["download", "waiting", "compute", "upload"] for b in bars)
    for r in slow:
        bar = next(b for b in bars if (b.client, b.round) == (r["client"], r["round"]))
        widths = {name: p.get_width() for name, p in bar.parts.items()}
        assert widths["compute"] == pytest.approx(r["task"], abs=1e-3)
        assert widths["upload"] >= r["sent"] * 8 / UP_BITS
        assert widths["download"] + widths["waiting"] == pytest.approx(r["waiting"], abs=1e-3)
        assert sum(widths.values()) <= round_real[r["round"]] + 0.05


# --- fl-stats --compare: the real run against a copy whose logs this test scales by known factors ------------
FACTORS = {(1, "slow-link"): 1.5, (2, "slow-link"): 3.0, (1, "fast"): 2.0, (2, "fast"): 0.5}
CLOCK_FACTORS = {1: 1.25, 2: 4.0}
SCALED_IN_CLIENT = re.compile(r"(iteration:(\d+) end time:)([\d.]+)(s .* profile:(\S+) .*download:)([\d.]+)"
                              r"(s waiting:)([\d.]+)(s )", re.M)
REPLY = re.compile(r"(iteration:(\d+) reply client:(\d+) after:)([\d.]+)(s)$", re.M)


def _scaled_copy(folder: Path, target: Path) -> tuple[dict[tuple[int, int], float], dict[int, str]]:
    """``folder`` copied to ``target`` with each client-round's times (task, download, waiting, the server's
    reply line) times FACTORS[(round, profile)], each round's real clock time times CLOCK_FACTORS[round];
    returns the original round time of each (round, client) from the reply lines, and each client's profile."""
    shutil.copytree(folder, target, symlinks=True)
    profile_of = {}
    for log in target.glob("client_*/client.log"):
        client = int(log.parent.name.split("_")[1])

        def scale(m, client=client):
            f = FACTORS[(int(m[2]), m[5])]
            profile_of[client] = m[5]
            return (f"{m[1]}{float(m[3]) * f:.4f}{m[4]}{float(m[6]) * f:.4f}{m[7]}{float(m[8]) * f:.4f}{m[9]}")

        log.write_text(SCALED_IN_CLIENT.sub(scale, log.read_text()))
    server = target / "server" / "server.log"
    text = server.read_text()
    original = {(int(m[2]), int(m[3])): float(m[4]) for m in REPLY.finditer(text)}
    text = REPLY.sub(lambda m: f"{m[1]}{float(m[4]) * FACTORS[(int(m[2]), profile_of[int(m[3])])]:.4f}{m[5]}", text)
    text = CLOCK_REAL.sub(lambda m: m[0].replace(f"real:{m[2]}s", f"real:{float(m[2]) * CLOCK_FACTORS[int(m[1])]:.4f}s"
                                                 ), text)
    server.write_text(text)
    return original, profile_of


@pytest.mark.slow
def test_compare_gives_each_rounds_and_profiles_ratio(process_run, tmp_path):
    copy = tmp_path / "scaled"
    original, profile_of = _scaled_copy(process_run, copy)
    assert len(original) == 8 and set(profile_of.values()) == {"slow-link", "fast"}
    done = run("fl-stats", "--compare", str(process_run), str(copy), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["a"]["mode"], out["a"]["clock"], out["b"]["run"]) == ("process", "real", "scaled")
    rows = {(r["round"], r["profile"]): r for r in out["rows"]}
    for (number, profile), factor in FACTORS.items():
        mine = [t for (n, c), t in original.items() if n == number and profile_of[c] == profile]
        assert rows[(number, profile)]["a_s"] == pytest.approx(statistics.mean(mine), abs=2e-3)
        assert rows[(number, profile)]["ratio"] == pytest.approx(factor, rel=1e-3), (number, profile)
    for number, factor in CLOCK_FACTORS.items():
        assert rows[(number, "(all)")]["ratio"] == pytest.approx(factor, rel=1e-3)
    for profile in ("slow-link", "fast"):
        times = [(t, FACTORS[(n, profile)]) for (n, c), t in original.items() if profile_of[c] == profile]
        want = sum(t * f for t, f in times) / sum(t for t, _ in times)
        assert rows[("mean", profile)]["ratio"] == pytest.approx(want, rel=1e-3)
    assert len(rows) == 2 * 3 + 2
    table = run("fl-stats", "--compare", str(process_run), str(copy))
    assert table.returncode == 0 and "B/A" in table.stdout and "slow-link" in table.stdout, table.stderr
    done = run("fl-stats", "--compare", str(process_run), str(copy), "--by", "profile")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--compare" in done.stderr, done.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    _run_json(plain, fleet=False)
    done = run("fl-stats", "--compare", str(process_run), str(plain))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "has no fleet" in done.stderr, done.stderr
