"""benchmarks.memory.PeakMemory: the peak of a run's summed PSS, read without taking a core from the run.

The oracle: a child that holds 300 MiB of its own pages for 3 s (longer than AT_MOST_EVERY: a shorter peak may
be missed), then frees them; the peak must hold them (PSS of private pages is their size), and PSS (a walk of
every page) must be read far less often than the ticks.
"""

import subprocess
import sys
import time

import psutil

from benchmarks.memory import PeakMemory

HOLD = """
import sys, time
block = bytearray(300 * 2**20)          # zero pages: touch each so they are resident
for i in range(0, len(block), 4096):
    block[i] = 1
print("held", flush=True)
time.sleep(3)
del block
print("freed", flush=True)
time.sleep(float(sys.argv[1]))
"""


def test_the_peak_holds_3_seconds_of_300_mib_and_pss_is_read_only_when_rss_grew():
    child = subprocess.Popen([sys.executable, "-c", HOLD, "4"], stdout=subprocess.PIPE, text=True)
    try:
        base = psutil.Process(child.pid)
        with PeakMemory(lambda: [base], interval=0.1) as peak:
            assert child.stdout.readline().strip() == "held"
            assert child.stdout.readline().strip() == "freed"
            time.sleep(3)
        ticks = 3 / 0.1 + 3 / 0.1
    finally:
        child.kill()
        child.wait()
    assert peak.mib > 300, peak.mib  # the moment's 300 MiB, plus the interpreter
    assert peak.mib < 300 + 60, peak.mib
    assert peak.readings < ticks / 3, (peak.readings, ticks)
