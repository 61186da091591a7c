"""A profile's link schedule (schedule = "wifi.csv": rows time_s,down,up,latency,loss from the first round):
the fleet file's reader, and the same fleet and seed in process mode (the link emulator reshaped before each
round) and in virtual mode (the emulated clock), judged by this file's regexes on the server's clock lines,
the clients' round end lines and link.json."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

from contract.errors import InputError
from launcher.fleet.profiles import read_fleet_file
from simulator.exchange_clock import NODE_IDLE_PULL
from tests.helpers import run, runs, wait_until_nothing_tagged

FLEET_TOML = """\
[[profile]]
name = "wifi"
clients = "rest"
schedule = "wifi.csv"
"""
# round 1 (clock 0) on a fast link, every later round (clock > 0.5 s) on 2/1 Mbit/s
SCHEDULE = """\
time_s,down,up,latency,loss
0,20Mbit,20Mbit,10ms,0
0.5,2Mbit,1Mbit,40ms,0
"""
CLOCK = re.compile(r"iteration:(\d+) clock emulated:([\d.]+)s real:([\d.]+)s ", re.M)
TRANSFER = re.compile(r"iteration:(\d+) end time:.* transfer:([\d.]+)s ", re.M)


def test_schedule_rows_are_read_and_checked(tmp_path):
    (tmp_path / "fleet.toml").write_text(FLEET_TOML)
    (tmp_path / "wifi.csv").write_text(SCHEDULE)
    profile = read_fleet_file(tmp_path / "fleet.toml", 2).profile_of(1)
    assert (profile.link_at(0.2).down, profile.link_at(0.2).latency) == (20e6, 0.01)
    assert (profile.link_at(7.0).down, profile.link_at(7.0).up, profile.link_at(7.0).latency) == (2e6, 1e6, 0.04)
    assert profile.needs_link
    for body, words in (("0,1Mbit,1Mbit,10ms\n", "is time_s,down,up,latency,loss"),
                        ("0,fast,1Mbit,10ms,0\n", "cannot read"),
                        ("5,1Mbit,1Mbit,10ms,0\n2,1Mbit,1Mbit,10ms,0\n", "after the row before"),
                        ("0,1Mbit,1Mbit,10ms,2\n", "loss must be 0..1"),
                        ("time_s,down,up,latency,loss\n", "no time_s,down,up,latency,loss row")):
        (tmp_path / "wifi.csv").write_text(body)
        with pytest.raises(InputError, match=re.escape(words)):
            read_fleet_file(tmp_path / "fleet.toml", 2)


def _run(root: Path, mode: str) -> Path:
    tag = f"t-fleet-schedule-{mode}"
    try:
        done = run("fl-launch", "--client-num", "2", "--rounds", "3", "--local-epochs", "1", "--fleet",
                   str(root / "fleet.toml"), "--log-dir", str(root / f"logs-{mode}"), "--mode", mode, "--seed", "3",
                   "--kill-tag", tag, timeout=300)
    finally:
        assert wait_until_nothing_tagged(tag) == []
    assert done.returncode == 0, done.stderr[-2000:]
    return runs(root / f"logs-{mode}")[-1]


@pytest.mark.slow
def test_a_schedule_slows_later_rounds_alike_in_process_and_virtual_mode(tmp_path):
    (tmp_path / "fleet.toml").write_text(FLEET_TOML)
    (tmp_path / "wifi.csv").write_text(SCHEDULE)
    process, virtual = _run(tmp_path, "process"), _run(tmp_path, "virtual")
    real = {int(m[1]): float(m[3]) for m in CLOCK.finditer((process / "server/server.log").read_text())}
    emulated = {int(m[1]): float(m[2]) for m in CLOCK.finditer((virtual / "server/server.log").read_text())}
    assert set(real) == set(emulated) == {1, 2, 3}
    # the schedule bites: the emulated clock's later rounds pay the slow row (the reply's ~250 kB at 1 Mbit/s:
    # 2 s more than at 20 Mbit/s; both pay Flower's pull backoff and the node's idle pull, about half of its cycle)
    transfer = {int(m[1]): float(m[2]) for m in TRANSFER.finditer((virtual / "client_0/client.log").read_text())}
    assert transfer[1] < 2.0 + NODE_IDLE_PULL and min(transfer[2], transfer[3]) > transfer[1] + 2.0, transfer
    # process mode: the link emulator took the slow row and the real rounds pay it
    shape = json.loads((process / "client_0" / "link.json").read_text())["shape"]
    assert (shape["down"], shape["up"], shape["latency"]) == (2e6, 1e6, 0.04)
    assert min(real[2], real[3]) > 2.0, real
    # both modes agree on the rounds after the step within 20% (as a fixed link does)
    ratio = statistics.mean([real[2], real[3]]) / statistics.mean([emulated[2], emulated[3]])
    print(f"schedule: process real {real} / virtual emulated {emulated}: rounds 2-3 {ratio:.3f}")
    assert 0.8 <= ratio <= 1.2, (real, emulated)
