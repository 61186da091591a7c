"""launcher.flower.imports_frozen: no collection while a start's imports run, and none of their objects walked after.

The oracle is the collector's own bookkeeping (gc.callbacks see every collection, gc.get_freeze_count the frozen
objects), in a fresh interpreter so pytest's own objects and settings do not count.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import gc, json
from launcher.flower.imports_frozen import imports_frozen

runs = []
gc.callbacks.append(lambda phase, info: runs.append(info["generation"]) if phase == "start" else None)
before = gc.get_freeze_count()
with imports_frozen():
    inside = gc.isenabled()
    made = [[i] for i in range(300_000)]  # as many container objects as the SuperLink's imports make
    import email.mime.multipart, http.cookiejar, xml.dom.minidom  # modules this interpreter had not loaded
during = len(runs)
after = [[i] for i in range(100_000)]  # made after: collected as usual
print(json.dumps({"inside": inside, "during": during, "after": len(runs) - during, "enabled": gc.isenabled(),
                  "frozen": gc.get_freeze_count() - before}))
"""


def _probe(*setup: str) -> dict:
    out = subprocess.run([sys.executable, "-c", "\n".join([*setup, PROBE])], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_imports_in_the_block_trigger_no_collection_and_end_frozen():
    seen = _probe()
    assert seen["inside"] is False and seen["during"] == 0
    assert seen["frozen"] >= 300_000  # the lists made inside, and what the imports made
    assert seen["enabled"] is True and seen["after"] >= 1  # the collector is back for what comes later


def test_a_collector_that_was_off_stays_off():
    seen = _probe("import gc; gc.disable()")
    assert seen["enabled"] is False and seen["during"] == 0 and seen["after"] == 0
