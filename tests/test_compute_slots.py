"""Compute slots: never more holders than slots, a killed holder gives its slot back, a freed slot is taken at
once, and a run computes one task per core at a time."""

import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import threading
import time

from launcher.flower.compute_slots import ComputeSlots
from tests.helpers import run, runs

HOLD = """
import sys, time
from pathlib import Path
from launcher.flower.compute_slots import ComputeSlots
with ComputeSlots(Path(sys.argv[1]), count=1).held():
    print("holding", flush=True)
    time.sleep(60)
"""


def test_no_more_holders_than_slots(tmp_path):
    slots = ComputeSlots(tmp_path, count=2)
    inside, most = 0, 0
    lock = threading.Lock()

    def task():
        nonlocal inside, most
        with slots.held():
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.05)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=task) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 2


def test_a_killed_holder_releases_its_slot(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    got = threading.Event()

    def wait_for_slot():
        with ComputeSlots(tmp_path, count=1).held():
            got.set()

    threading.Thread(target=wait_for_slot, daemon=True).start()
    assert not got.wait(0.5)  # held by the other process
    holder.kill()
    holder.wait()
    assert got.wait(5)


def test_a_freed_slot_is_taken_at_once(tmp_path, monkeypatch):
    """The head of the queue sleeps on the holders' bell: a slot let go is taken within a millisecond or two,
    not at the waiter's next look (here every second; it would be every 10 ms polling)."""
    from launcher.flower import compute_slots

    monkeypatch.setattr(compute_slots, "DEATH_POLL_SECONDS", 1.0)
    handoffs = []
    released = []
    turns = 21

    def hold_in_turn():
        slots = ComputeSlots(tmp_path, count=1)
        for turn in range(turns):
            with slots.held():
                if released:
                    handoffs.append(time.perf_counter() - released[-1])
                time.sleep(0.011 + 0.0037 * (turn % 5))  # not in step with any polling period
                released.append(time.perf_counter())
            time.sleep(0.005)  # the other thread is queued by now: it takes the slot

    threads = [threading.Thread(target=hold_in_turn) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(handoffs) == 2 * turns - 1
    assert statistics.median(handoffs) < 0.003, sorted(handoffs)


STAMPED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .*\[round\] iteration:(\d+)(?:/\d+)? (start|end)")


def test_no_more_tasks_compute_at_once_than_the_machine_has_cores(tmp_path):
    """A real run of more clients than cores: from the clients' own round lines (written while a task holds
    its slot), never more tasks between their start and end lines at once than os.cpu_count()."""
    cores = os.cpu_count() or 1
    clients = 2 * cores + 1
    log_dir = tmp_path / "logs"
    result = run("fl-launch", "--client-num", str(clients), "--mode", "process", "--rounds", "2", "--local-epochs", "3",
                 "--log-dir", str(log_dir), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    events = []
    for log in sorted(runs(log_dir)[-1].glob("client_*/client.log")):
        for line in log.read_text().splitlines():
            if m := STAMPED.match(line):
                stamp = dt.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f")
                events.append((stamp, 1 if m[3] == "start" else -1))  # at one stamp: ends first
    assert len(events) == 2 * 2 * clients
    computing, most = 0, 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        computing += step
        most = max(most, computing)
    assert most == cores
