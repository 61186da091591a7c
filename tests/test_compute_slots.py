"""Compute slots: never more holders than slots, and a killed holder gives its slot back."""

import subprocess
import sys
import threading
import time

from launcher.flower.compute_slots import ComputeSlots

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
