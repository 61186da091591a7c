"""How fast this host computes right now: the CPU time of one fixed LeNet5 training step, sampled in the background.

    with HostProbe(Path("/tmp/probe.txt")) as probe:
        with probe.during("devices"):
            ...                       # a run
    probe.medians["devices"]          # e.g. 5.31: the median step (CPU ms on one thread) while it ran

On a shared host the CPU time of the same work drifts by 10-40% within minutes (caches, memory bandwidth and
frequency taken by other guests); a run's task times on this machine drift with it. A child process trains
LeNet5 on one fixed batch of 32 one-channel 32x32 images on one torch thread, two steps twice a second (~2% of a
core), and writes each sample as ``<unix time> <CPU ms per step>`` to a file; ``during`` takes the median of
the samples inside its window. Its CPU time (not wall) is the measure: waiting for a core does not count.
"""

from __future__ import annotations

import select
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERVAL_S = 0.5
START_S = 120.0  # torch's import on a loaded machine

_SCRIPT = f"""
import sys, time
import torch
from simulator.model import LeNet5
torch.set_num_threads(1)
torch.manual_seed(0)
model = LeNet5(channels=1, num_classes=10)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(32, 1, 32, 32), torch.randint(0, 10, (32,))
def step():
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
for _ in range(10):
    step()
print("ready", flush=True)
while True:
    began = time.thread_time()
    step(); step()
    print(time.time(), (time.thread_time() - began) * 500, flush=True)
    time.sleep({INTERVAL_S})
"""


class HostProbe:
    """The probe's child process and its samples; ``medians`` holds each finished window's median (CPU ms)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.medians: dict[str, float] = {}
        self.samples: list[tuple[float, float]] = []
        self._child: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._out = None

    def __enter__(self) -> HostProbe:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.path.open("a")
        errors = self.path.with_suffix(".stderr")
        with errors.open("w") as stderr:
            self._child = subprocess.Popen([sys.executable, "-c", _SCRIPT], cwd=ROOT, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=stderr, text=True)
        ready, _, _ = select.select([self._child.stdout], [], [], START_S)
        if not ready or self._child.stdout.readline().strip() != "ready":  # torch imported and warm first
            self.__exit__(None, None, None)
            raise RuntimeError(f"the host probe did not start in {START_S:.0f} s: {errors.read_text()[-500:]}")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._child.stdout:
            at, ms = (float(x) for x in line.split())
            self.samples.append((at, ms))
            self._out.write(line)
            self._out.flush()

    def __exit__(self, *exc) -> None:
        if self._child is not None and self._child.poll() is None:
            self._child.kill()  # the PID this probe started, nothing else
        if self._child is not None:
            self._child.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._out is not None:
            self._out.close()

    @contextmanager
    def during(self, name: str):
        """The median of the samples taken while the block ran, as ``medians[name]``; a block that took none
        (the probe died) raises once it has run: a window without a figure must not pass for an unchanged host."""
        began = time.time()
        yield
        ended = time.time()
        inside = [ms for at, ms in list(self.samples) if began <= at <= ended]
        if not inside:
            raise RuntimeError(f"the host probe took no sample during {name} ({ended - began:.0f} s)")
        self.medians[name] = statistics.median(inside)
