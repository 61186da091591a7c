"""``fl-launch --hosts FILE --check --bench``: each device measured against this machine, as a fleet.toml.

    spec = BenchSpec(dataset="digits", batch_size=32)
    here, benches = bench_devices(devices, ssh_config, spec, memory={"pi-01": 900 * 2**20})
    print(fleet_toml(benches, here))                       # one [[profile]] per device

Compute: the run's model (the built-in LeNet5 at the data set's image shape, one torch thread) trained on
random batches in a probe process here and one on each device (its own Python, with fl-launch installed:
--check verifies it), started side by side and warmed up; then WINDOWS rounds of one window of
COMPUTE_SECONDS per probe, one probe at a time, and each probe's fastest window counts (a busy moment
spoils a window, not the figure). cpu = this machine's time per batch / the device's, capped to 1.0 and
floored at 0.01 (launcher.fleet.profiles reads a share of one core of this machine).
There: wall time per batch, so that a device held to part of a core (a quota, a slow clock) shows it.
Here: CPU time per batch, one whole core's figure even while other work shares this machine's cores.
The link: one SSH master connection per device; down (the device's download, as a fleet file means it) is
N bytes fed to `wc -c` there (the time of N less that of N/4: the session's set-up overlaps the bytes), up is
`head -c N /dev/zero` read back here, each N grown until the transfer lasts LINK_SECONDS; latency is half the
median round trip of one byte echoed by `cat` in an open session.
Devices are timed one after another, so that devices sharing this machine's cores or network (test
namespaces) do not slow each other.

The output is the fleet file launcher.fleet.profiles reads: name (the host, made a safe profile name),
clients (its slots), cpu, memory (the device's available memory), down, up, latency.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from contract.errors import InputError
from launcher.devices.hosts import Device
from launcher.devices.ssh import Ssh, last_line, remote_path
from launcher.fleet.handle import LimitHandle
from launcher.fleet.limits import Backend, ClientLimits, Limiter, LimitsError
from launcher.fleet.units import format_rate

COMPUTE_SECONDS = 1.0  # one window
WINDOWS = 3
LINK_SECONDS = 0.8
LINK_FIRST = 64 * 1024
LINK_MAX = 256 * 2**20
ECHOES = 15
CPU_MIN = 0.01
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")

# Run with the Python of this machine and of each device: argv[1] is the JSON of BenchSpec plus "shape".
COMPUTE_PROBE = r"""
import json, sys, time
spec = json.loads(sys.argv[1])
import torch
from simulator.model import LeNet5
from simulator.training import train
shape, classes = spec.get("shape"), spec.get("num_classes") or 10
if shape is None:
    dataset, data_dir = spec["dataset"], spec.get("data_dir")
    if dataset == "digits":
        shape, classes = [1, 32, 32], 10
    elif dataset == "cifar10":
        shape, classes = [3, 32, 32], 10
    elif dataset == "synthetic":
        shape = [3, 32, 32]
    elif dataset == "femnist":
        from simulator.femnist import open_femnist
        source = open_femnist(data_dir)
        shape, classes = [source.channels, 32, 32], source.num_classes
    elif dataset == "npz":
        from simulator.npz_split import open_npz_split
        split = open_npz_split(data_dir)
        shape, classes = list(split.shape), split.num_classes
    else:
        raise SystemExit(f"unknown data set {dataset!r}")
torch.set_num_threads(1)
torch.manual_seed(0)
batch, per_call = spec["batch_size"], 4
x = torch.randn(batch * per_call, *shape)
y = torch.randint(0, classes, (batch * per_call,))
model = LeNet5(shape[0], classes)
train(model, x, y, epochs=1, batch_size=batch, lr=1e-3, seed=0)  # warm: first calls allocate
print(json.dumps({"shape": shape, "num_classes": classes}), flush=True)
calls = 0
while sys.stdin.readline().strip() == "go":  # one timed window per line; anything else (EOF) ends it
    done, cpu0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < spec["seconds"]:
        train(model, x, y, epochs=1, batch_size=batch, lr=1e-3, seed=calls)
        calls, done = calls + 1, done + 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(json.dumps({"batches": done * per_call, "wall": wall, "cpu": cpu}), flush=True)
"""


class BenchError(InputError):
    """This machine's own measurement failed (a data set it cannot read): one line."""


@dataclass(frozen=True)
class BenchSpec:
    """The run's data shape: the image shape comes from the data set (femnist, npz: read in data_dir)."""

    dataset: str = "digits"
    batch_size: int = 32
    num_classes: int = 10
    data_dir: str | None = None
    seconds: float = COMPUTE_SECONDS


@dataclass(frozen=True)
class Compute:
    shape: tuple[int, ...]
    num_classes: int
    batch_size: int
    batches: int
    wall: float     # seconds for all the batches
    cpu: float      # CPU seconds of the process meanwhile

    @property
    def per_batch(self) -> float:
        """Wall seconds per batch: what the device delivers to one process, a quota or slow clock included."""
        return self.wall / self.batches

    @property
    def core_per_batch(self) -> float:
        """CPU seconds per batch: one whole core's time, whatever else runs beside it (this machine's figure)."""
        return min(self.cpu, self.wall) / self.batches


@dataclass(frozen=True)
class Link:
    down: float     # bits per second, here -> device: the device's download, as a fleet file's down
    up: float       # bits per second, device -> here
    rtt: float      # seconds, one byte there and back
    down_bytes: int
    up_bytes: int


@dataclass
class DeviceBench:
    host: str
    slots: int
    memory: int | None = None          # bytes available on the device
    compute: Compute | None = None
    link: Link | None = None
    problem: str | None = None

    def cpu(self, here: Compute) -> float | None:
        if self.compute is None:
            return None
        return min(1.0, max(CPU_MIN, here.core_per_batch / self.compute.per_batch))


def _spec_json(spec: BenchSpec, here: Probe | None) -> str:
    """The probe's argument: the data set to read the shape from (here), or the shape found here (devices)."""
    data = {"dataset": spec.dataset, "data_dir": spec.data_dir, "batch_size": spec.batch_size,
            "num_classes": spec.num_classes, "seconds": spec.seconds, "shape": None}
    if here is not None:
        data.update(shape=list(here.shape), num_classes=here.num_classes)
    return json.dumps(data)


class Probe:
    """The model's batches in a process of their own, here or over SSH, timed one window at a time."""

    def __init__(self, argv: list[str], name: str) -> None:
        self.name = name
        self.errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors)
        self.shape: tuple[int, ...] = ()
        self.num_classes = 0
        self.windows: list[Compute] = []
        self.batch_size = 0
        self.held: LimitHandle | None = None

    def _line(self, timeout: float) -> dict:
        timer = threading.Timer(timeout, self.proc.kill)  # a device that hangs ends its probe, not the bench
        timer.start()
        try:
            line = self.proc.stdout.readline()
        finally:
            timer.cancel()
        if not line:
            self.proc.wait()
            self.errors.seek(0)
            why = last_line(self.errors.read()) or f"exit {self.proc.returncode}"
            raise OSError(f"the model's batches failed: {why}")
        return json.loads(line)

    def ready(self, batch_size: int, timeout: float = 180) -> None:
        facts = self._line(timeout)
        self.shape, self.num_classes, self.batch_size = tuple(facts["shape"]), int(facts["num_classes"]), batch_size

    def window(self, seconds: float) -> Compute:
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        facts = self._line(seconds + 60)
        self.windows.append(Compute(self.shape, self.num_classes, self.batch_size, int(facts["batches"]),
                                    float(facts["wall"]), float(facts["cpu"])))
        return self.windows[-1]

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.errors.close()
        if self.held is not None:
            self.held.close()


def probe_here(spec: BenchSpec) -> Probe:
    """The batches on this machine, in a fresh process of this Python (as each device runs them in its own),
    held as an emulated client is (launcher.fleet.limits: a whole core's quota at the highest CPU weight), so
    that other work here does not time-slice it: at load 11 on 2 cores its CPU time per batch read 8-13% above
    a held process's, and every profile's cpu as much too high."""
    probe = Probe([sys.executable, "-c", COMPUTE_PROBE, _spec_json(spec, None)], "this machine")
    try:
        probe.held = _held_as_a_client(probe.proc.pid)
        probe.ready(spec.batch_size)
    except OSError as err:
        probe.close()
        raise BenchError(f"--bench: {err} on this machine") from None
    return probe


def _held_as_a_client(pid: int) -> LimitHandle | None:
    limiter = Limiter.choose()
    if limiter.backend is Backend.FALLBACK:  # a duty cycle at a whole core does nothing
        return None
    try:
        handle = limiter.limit(f"bench-{pid}", ClientLimits(cpu=1.0), profile="bench")
        handle.add(pid)
    except (OSError, LimitsError):
        return None
    return handle


def probe_there(device: Device, ssh_config: str | None, spec: BenchSpec, here: Probe) -> Probe:
    python = remote_path(device.python) if device.python.startswith("~") else shlex.quote(device.python)
    env = " ".join(shlex.quote(f"{k}={v}") for k, v in device.env.items())  # as the run's processes there
    command = (f"{'env ' + env + ' ' if env else ''}{python} -c {shlex.quote(COMPUTE_PROBE)} "
               f"{shlex.quote(_spec_json(spec, here))}")
    return Probe([*Ssh(device, ssh_config).argv(), "--", command], device.host)


class Master:
    """One SSH master connection; commands over it skip the handshake (ssh -S)."""

    def __init__(self, ssh: Ssh) -> None:
        self.ssh = ssh
        self.folder = tempfile.mkdtemp(prefix="flb-")  # short: a socket path has ~100 bytes
        self.socket = os.path.join(self.folder, "c")
        self.proc = subprocess.Popen(ssh.argv("-M", "-S", self.socket, "-N", "-o", "ControlPersist=no"),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                error = self.proc.stderr.read().decode("utf-8", "replace") if self.proc.poll() is not None else ""
                self.close()
                raise OSError(f"no SSH master connection: {last_line(error.encode()) or 'timed out'}")
            time.sleep(0.02)

    def argv(self, command: str) -> list[str]:
        return [*self.ssh.argv("-S", self.socket, "-o", "ControlMaster=no"), "--", command]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        try:
            os.unlink(self.socket)
        except OSError:
            pass
        os.rmdir(self.folder)

    def fetch(self, size: int) -> tuple[int, float]:
        """The device's upload: bytes read back and seconds from the first chunk to the end (the bytes after
        the first chunk)."""
        proc = subprocess.Popen(self.argv(f"head -c {size} /dev/zero"), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        total = first = 0
        started = time.perf_counter()
        while chunk := os.read(proc.stdout.fileno(), 1 << 20):
            if not first:
                first, started = len(chunk), time.perf_counter()
            total += len(chunk)
        elapsed = time.perf_counter() - started
        proc.stdout.close()
        if proc.wait(timeout=30) != 0 or total != size:
            raise OSError(f"up: {total} of {size} bytes came back")
        return total - first, elapsed

    def send(self, size: int) -> float:
        """The device's download: seconds to feed size bytes to `wc -c` there and read its count back."""
        started = time.perf_counter()
        proc = subprocess.Popen(self.argv("wc -c"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        block, left = bytes(1 << 20), size
        while left > 0:
            proc.stdin.write(block[:min(left, len(block))])
            left -= min(left, len(block))
        proc.stdin.close()
        counted = proc.stdout.read()
        elapsed = time.perf_counter() - started
        proc.stdout.close()
        if proc.wait(timeout=30) != 0 or counted.split()[:1] != [str(size).encode()]:
            raise OSError(f"down: the device counted {counted.decode(errors='replace').strip()!r} of {size} bytes")
        return elapsed

    def round_trips(self, count: int) -> list[float]:
        proc = subprocess.Popen(self.argv("cat"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, bufsize=0)
        times = []
        try:
            for _ in range(count + 1):  # the first includes starting `cat`
                started = time.perf_counter()
                proc.stdin.write(b"x")
                if os.read(proc.stdout.fileno(), 1) != b"x":
                    raise OSError("the echo session ended early")
                times.append(time.perf_counter() - started)
        finally:
            proc.stdin.close()
            proc.stdout.close()
            proc.wait(timeout=30)
        return times[1:]


def _grown(measure, seconds: float) -> tuple[int, float]:
    """(bytes, seconds) of a transfer grown from LINK_FIRST until it lasts ``seconds`` (or reaches LINK_MAX):
    aimed by the rate seen, but at most 8 times the last size (a short transfer's rate is a poor guess)."""
    size = LINK_FIRST
    while True:
        moved, elapsed = measure(size)
        if elapsed >= seconds or size >= LINK_MAX:
            return moved, elapsed
        rate = moved / max(elapsed, 1e-6)
        size = int(min(LINK_MAX, size * 8, max(size * 4, rate * seconds * 1.5)))


def measure_link(ssh: Ssh, seconds: float = LINK_SECONDS) -> Link:
    master = Master(ssh)
    try:
        rtt = statistics.median(master.round_trips(ECHOES))
        up_bytes, up_s = _grown(master.fetch, seconds)
        empty = min(master.send(0) for _ in range(3))  # opening a session, starting wc, its answer
        size, _ = _grown(lambda n: (n, max(master.send(n) - empty, 1e-6)), seconds)
        # The rate: the difference between sending size and a quarter of it. Less an empty session's time it read
        # 30% fast over a 40 ms link: ssh sends the bytes while the session's set-up is still under way.
        down_bytes, down_s = size - size // 4, max(master.send(size) - master.send(size // 4), 1e-6)
    finally:
        master.close()
    return Link(down=8 * down_bytes / down_s, up=8 * up_bytes / up_s, rtt=rtt, down_bytes=down_bytes,
                up_bytes=up_bytes)


def bench_devices(devices: list[Device], ssh_config: str | None, spec: BenchSpec,
                  memory: dict[str, int] | None = None) -> tuple[Compute, list[DeviceBench]]:
    """This machine's figure and each device's; ``memory``: bytes available, by host."""
    here = probe_here(spec)
    results = [DeviceBench(d.host, d.slots, memory=(memory or {}).get(d.host)) for d in devices]
    probes: list[Probe | None] = [None] * len(devices)
    try:
        for i, device in enumerate(devices):
            probes[i] = probe_there(device, ssh_config, spec, here)
        for result, probe in zip(results, probes):  # they start side by side; each is timed alone
            try:
                probe.ready(spec.batch_size)
            except OSError as err:
                result.problem = str(err)
                probe.close()
        timed = [here] + [p for p, r in zip(probes, results) if r.problem is None]
        for _ in range(WINDOWS):
            for probe in timed:
                try:
                    if probe.proc.poll() is None:
                        probe.window(spec.seconds)
                except OSError as err:
                    if probe is here:
                        raise BenchError(f"--bench: {err} on this machine") from None
        best_here = min(here.windows, key=lambda c: c.core_per_batch)
        for result, probe in zip(results, probes):
            if result.problem is None and probe.windows:
                result.compute = min(probe.windows, key=lambda c: c.per_batch)
            elif result.problem is None:
                result.problem = "the model's batches failed"
    finally:
        for probe in [here, *probes]:
            if probe is not None:
                probe.close()
    for result, device in zip(results, devices):  # the links one at a time: devices may share a network
        if result.problem is None:
            try:
                result.link = measure_link(Ssh(device, ssh_config))
            except (OSError, ValueError, subprocess.SubprocessError) as err:
                result.problem = str(err) or type(err).__name__
    return best_here, results


def profile_name(host: str, taken: set[str]) -> str:
    """The host as a fleet profile name: letters, digits, '.', '-', '_', at most 64, unique."""
    name = SAFE_NAME.sub("-", host).lstrip("._-")[:60] or "device"
    if name == "unconstrained":
        name = "device-unconstrained"
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}-{n}", n + 1
    taken.add(unique)
    return unique


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}ms"


def _commented(line: str, comment: str) -> str:
    return f"{line:<24}# {comment}"


def fleet_toml(benches: list[DeviceBench], here: Compute) -> str:
    """The fleet file: a [[profile]] per measured device; a device that failed is a comment."""
    shape = "x".join(str(n) for n in here.shape)
    lines = ["# measured by fl-launch --check --bench: cpu is a share of one core of this machine",
             f"# LeNet5 on {shape} images, {here.num_classes} classes, batches of {here.batch_size}, one torch "
             f"thread: {_ms(here.core_per_batch)} of CPU time per batch here"]
    taken: set[str] = set()
    for bench in benches:
        lines.append("")
        if bench.problem is not None or bench.compute is None or bench.link is None:
            lines.append(f"# {bench.host}: not measured: {' '.join((bench.problem or 'no result').split())}")
            continue
        there = bench.compute
        lines += ["[[profile]]", f'name = "{profile_name(bench.host, taken)}"', f"clients = {bench.slots}",
                  _commented(f"cpu = {bench.cpu(here):.3g}", f"{_ms(there.per_batch)} per batch there, "
                             f"{there.cpu / there.wall:.0%} of it on a CPU")]
        if bench.memory is not None:
            lines.append(_commented(f'memory = "{bench.memory // 2**20}MiB"', "available there"))
        lines += [f'down = "{format_rate(bench.link.down)}"', f'up = "{format_rate(bench.link.up)}"',
                  _commented(f'latency = "{_ms(bench.link.rtt / 2)}"', "half the round trip over SSH")]
    return "\n".join(lines) + "\n"


def run_bench(devices: list[Device], ssh_config: str | None, spec: BenchSpec, rows: list[dict]) -> tuple[str, bool]:
    """What --check --bench prints on stdout, and whether every device was measured; ``rows``: --check's."""
    ok = [d for d in devices if any(r["host"] == d.host and r.get("ok") for r in rows)]
    memory = {r["host"]: int(r["mem_free_mib"]) * 2**20 for r in rows if r.get("mem_free_mib") is not None}
    here, measured = bench_devices(ok, ssh_config, spec, memory)
    by_host = {b.host: b for b in measured}
    benches = [by_host.get(d.host) or DeviceBench(d.host, d.slots, problem="failed --check") for d in devices]
    return fleet_toml(benches, here), all(b.problem is None for b in benches)
