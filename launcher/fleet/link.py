"""A user-space link emulator: a TCP proxy between one client's SuperNode and the SuperLink.

    link = start_link(0, "127.0.0.1:8000", LinkSpec(down=8e6, up=2e6, latency=0.04, loss=0.01),
                      counters=Path("client_3/link.json"), log=Path("client_3/link.log"), seed=3)
    # flower-supernode --superlink 127.0.0.1:{link.port} ...
    link.set_online(False)          # cuts the open connections, refuses new ones
    link.set_online(True)
    link.counters()["bytes_up"]     # bytes delivered to the SuperLink so far
    link.stop()

    python -m launcher.fleet.link --listen PORT --upstream HOST:PORT --down 8Mbit --up 2Mbit \
        --latency 40ms --loss 0.01 --seed N --counters FILE [--offline] [--exchange-gap 0.5s]

Why: this machine's kernel has no netem qdisc. Flower speaks gRPC over HTTP/2 on one long-lived TCP
connection, so the proxy shapes bytes, not messages. It listens on 127.0.0.1:PORT (0: a free port, written
to the counters file) and opens a connection to the upstream for each connection it accepts.

The model, per direction (down = upstream -> client, up = client -> upstream):
- rate: a token bucket two chunks deep (a chunk is about 10 ms of the rate, 1 KiB to 64 KiB): a chunk of
  n bytes read at t leaves the link at max(t - depth, when the link is free) + n * 8 / rate; the proxy reads
  no faster than the link sends, so the sender is held back by TCP's own flow control. The rate is the
  link's, not a connection's: connections open at once share it (chunks leave in the order they were read).
- latency: each chunk is delivered one latency after it left the link: a pipe, not stop-and-wait (a chunk
  sent at t arrives at t + latency + its transmission time; chunks in flight overlap), order kept.
- loss: an exchange is a burst of client -> upstream bytes that begins after the connection was idle in
  both directions for --exchange-gap (default 0.5 s), or the connection's first bytes. At the start of
  each exchange, with probability loss (seeded), the connection is dropped: both sides are reset and the
  burst never arrives. (One gRPC call of the SuperNode's, a pull or a push, is one exchange.)
- shape switch: SIGHUP takes the shape --spec-file holds (a schedule's next row; LinkSpec.to_json).
- online switch: SIGUSR1 takes the link offline (open connections reset, new ones accepted and reset at
  once), SIGUSR2 brings it online. The counters file is rewritten at once on a switch.
- counters: a JSON file rewritten every second (atomically) and at exit: bytes delivered each way,
  connections accepted, dropped (by loss), cut (by going offline), refused (while offline), online;
  also at once on a drop.

SIGTERM or SIGINT ends it (counters written last). One asyncio thread; about 20 MB resident.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from launcher.fleet.units import UnitError, format_rate, parse_duration, parse_rate
from launcher.processes.entry_modules import FLEET_LINK

EXCHANGE_GAP = 0.5
COUNTERS_EVERY = 1.0


@dataclass(frozen=True)
class LinkSpec:
    """A link's shape in SI units; None or 0: not limited."""

    down: float | None = None   # bits per second, upstream -> client
    up: float | None = None     # bits per second, client -> upstream
    latency: float = 0.0        # seconds, one way
    loss: float = 0.0           # chance that an exchange drops its connection

    @classmethod
    def of(cls, profile) -> LinkSpec:
        """From anything with down, up, latency and loss (a launcher.fleet.profiles.Profile)."""
        return cls(down=profile.down, up=profile.up, latency=profile.latency or 0.0, loss=profile.loss or 0.0)

    def describe(self) -> str:
        return (f"down {format_rate(self.down) if self.down else 'unlimited'}, up "
                f"{format_rate(self.up) if self.up else 'unlimited'}, latency {self.latency * 1000:g} ms, "
                f"loss {self.loss:g} per exchange")

    def to_json(self) -> str:
        return json.dumps({"down": self.down, "up": self.up, "latency": self.latency, "loss": self.loss})

    @classmethod
    def from_json(cls, text: str) -> LinkSpec:
        data = json.loads(text)
        return cls(down=data["down"], up=data["up"], latency=float(data["latency"]), loss=float(data["loss"]))

    def args(self) -> list[str]:
        out = []
        if self.down:
            out += ["--down", format_rate(self.down)]
        if self.up:
            out += ["--up", format_rate(self.up)]
        return out + ["--latency", f"{self.latency!r}s", "--loss", repr(self.loss)]


def _chunk_size(rate: float | None) -> int:
    if not rate:
        return 65536
    return int(min(65536, max(1024, rate / 8 * 0.01)))


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped link looks to the peer."""
    if writer is None:
        return
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


class Direction:
    """One way of the link: its rate and latency, the time it is next free, and the bytes it delivered."""

    def __init__(self, rate: float | None, latency: float) -> None:
        self.rate = rate or None
        self.latency = latency
        self.free_at = 0.0
        self.chunk = _chunk_size(self.rate)

    def schedule(self, now: float, size: int) -> tuple[float, float]:
        """(when the chunk has left the link, when it arrives). The bucket holds two chunks' worth of
        time, so a reader that wakes late does not lose its turn (the rate holds on a loaded machine)."""
        if not self.rate:
            return now, now + self.latency
        depth = 2 * self.chunk * 8 / self.rate
        left = max(now - depth, self.free_at) + size * 8 / self.rate
        self.free_at = left
        return left, max(left, now) + self.latency


class Link:
    def __init__(self, upstream: tuple[str, int], spec: LinkSpec, seed: int, counters: Path | None,
                 online: bool = True, exchange_gap: float = EXCHANGE_GAP) -> None:
        self.upstream = upstream
        self.spec = spec
        self.random = random.Random(seed)
        self.counters_path = counters
        self.online = online
        self.exchange_gap = exchange_gap
        self.port = 0
        # one device, one network interface: every connection of the client shares each way's rate
        # (Flower's SuperNode pulls and pushes objects over two connections at once)
        self.up = Direction(spec.up, spec.latency)
        self.down = Direction(spec.down, spec.latency)
        self.open: set[Connection] = set()
        self.count = {"bytes_down": 0, "bytes_up": 0, "connections": 0, "dropped": 0, "cut": 0, "refused": 0}

    def set_spec(self, spec: LinkSpec) -> None:
        """From now on, this shape (a schedule's next row): chunks already scheduled keep their times."""
        self.spec = spec
        for way, rate in ((self.up, spec.up), (self.down, spec.down)):
            way.rate, way.latency, way.chunk = rate or None, spec.latency, _chunk_size(rate or None)
        print(f"link shape: {spec.describe()}", flush=True)

    def reload_spec(self, path: Path) -> None:
        """SIGHUP: the shape in ``path`` (LinkSpec.to_json); an unreadable file leaves the shape as it was."""
        try:
            self.set_spec(LinkSpec.from_json(path.read_text()))
        except (OSError, ValueError, KeyError) as err:
            print(f"link shape: {path} unreadable, the shape stays ({err})", flush=True)
        self.write_counters()

    def set_online(self, online: bool) -> None:
        self.online = online
        if not online:
            for conn in list(self.open):
                self.count["cut"] += 1
                conn.close(reset=True)
        self.write_counters()
        print(f"link {'online' if online else 'offline'}", flush=True)

    def write_counters(self) -> None:
        if self.counters_path is None:
            return
        record = {**self.count, "online": self.online, "open": len(self.open), "port": self.port,
                  "pid": os.getpid(), "updated": time.time(), "shape": json.loads(self.spec.to_json())}
        tmp = self.counters_path.with_name(self.counters_path.name + ".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.counters_path)

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.online:
            self.count["refused"] += 1
            _reset(writer)
            return
        self.count["connections"] += 1
        conn = Connection(self, reader, writer)
        self.open.add(conn)
        try:
            await conn.run()
        finally:
            self.open.discard(conn)

    async def serve(self, listen: int, spec_file: Path | None = None) -> None:
        loop = asyncio.get_running_loop()
        if spec_file is not None:
            loop.add_signal_handler(signal.SIGHUP, self.reload_spec, spec_file)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self.set_online, False)
        loop.add_signal_handler(signal.SIGUSR2, self.set_online, True)
        server = await asyncio.start_server(self.accept, "127.0.0.1", listen, reuse_address=True, backlog=64)
        self.port = server.sockets[0].getsockname()[1]
        self.write_counters()
        print(f"link 127.0.0.1:{self.port} -> {self.upstream[0]}:{self.upstream[1]}: {self.spec.describe()}, "
              f"{'online' if self.online else 'offline'}", flush=True)
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), COUNTERS_EVERY)
                except asyncio.TimeoutError:
                    pass
                self.write_counters()
        finally:
            server.close()
            for conn in list(self.open):
                conn.close(reset=False)
            self.write_counters()


class Connection:
    """One accepted connection and its upstream twin, pumped both ways through a Direction each."""

    def __init__(self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.link = link
        self.client = (reader, writer)
        self.up_writer: asyncio.StreamWriter | None = None
        self.last_activity = -1.0  # monotonic time of the last bytes either way; <0: none yet
        self.tasks: list[asyncio.Task] = []
        self.closed = False

    async def run(self) -> None:
        reader, writer = self.client
        try:
            up_reader, self.up_writer = await asyncio.open_connection(*self.link.upstream)
        except OSError as err:
            print(f"link: cannot reach the upstream {self.link.upstream[0]}:{self.link.upstream[1]}: {err}",
                  flush=True)
            self.close(reset=True)
            return
        if self.closed:  # went offline while connecting
            _reset(self.up_writer)
            return
        _no_delay(writer)  # the link paces the bytes itself: Nagle would hold its small chunks for ACKs
        _no_delay(self.up_writer)
        self.tasks = [asyncio.ensure_future(self.pump(reader, self.up_writer, self.link.up, "bytes_up")),
                      asyncio.ensure_future(self.pump(up_reader, writer, self.link.down, "bytes_down"))]
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.close(reset=False)

    def exchange_starts(self, now: float) -> bool:
        """True when this client -> upstream read begins an exchange (see the module's docstring)."""
        return self.last_activity < 0 or now - self.last_activity >= self.link.exchange_gap

    async def pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, way: Direction, key: str) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        deliver = asyncio.ensure_future(self.deliver(queue, sink, key))
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    data = await source.read(way.chunk)
                except (ConnectionError, OSError):
                    data = b""
                now = loop.time()
                if data and key == "bytes_up" and self.exchange_starts(now) and self.link.spec.loss > 0:
                    if self.link.random.random() < self.link.spec.loss:
                        self.link.count["dropped"] += 1
                        self.close(reset=True)
                        self.link.write_counters()
                        return
                if data:
                    self.last_activity = now
                left, arrive = way.schedule(now, len(data))
                queue.put_nowait((arrive, data))
                if not data:
                    break
                if left > now:  # read no faster than the link sends
                    await asyncio.sleep(left - now)
            await deliver
        finally:
            if not deliver.done():
                deliver.cancel()

    async def deliver(self, queue: asyncio.Queue, sink: asyncio.StreamWriter, key: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            arrive, data = await queue.get()
            wait = arrive - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if not data:
                    if sink.can_write_eof():
                        sink.write_eof()
                    return
                sink.write(data)
                await sink.drain()
            except (ConnectionError, OSError, RuntimeError):
                self.close(reset=True)
                return
            self.link.count[key] += len(data)
            self.last_activity = loop.time()

    def close(self, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client[1], self.up_writer):
            if writer is None:
                continue
            if reset:
                _reset(writer)
            else:
                writer.close()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.link.open.discard(self)


class LinkProcess:
    """A link emulator running as its own process (start_link), switched and read from here."""

    def __init__(self, proc: subprocess.Popen, counters: Path) -> None:
        self.proc = proc
        self.counters_path = counters
        self.port = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def counters(self) -> dict:
        return json.loads(self.counters_path.read_text())

    def set_online(self, online: bool, timeout: float = 5.0) -> None:
        """Switch it, and return once the process says it switched."""
        os.kill(self.proc.pid, signal.SIGUSR2 if online else signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.counters()["online"] == online:
                    return
            except (OSError, ValueError, KeyError):
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"the link emulator (pid {self.proc.pid}) did not go {'online' if online else 'offline'}")

    def stop(self, timeout: float = 5.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_link(listen: int, upstream: str, spec: LinkSpec, *, counters: Path, seed: int = 0,
               log: Path | None = None, online: bool = True, exchange_gap: float = EXCHANGE_GAP,
               env: dict | None = None, timeout: float = 10.0) -> LinkProcess:
    """Start `python -m launcher.fleet.link` in its own session; return once it listens (its port known)."""
    counters = Path(counters)
    counters.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", FLEET_LINK, "--listen", str(listen), "--upstream", upstream,
           *spec.args(), "--seed", str(seed), "--counters", str(counters), "--exchange-gap", f"{exchange_gap!r}s",
           *([] if online else ["--offline"])]
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    finally:
        if log:
            out.close()
    link = LinkProcess(proc, counters)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            link.port = link.counters()["port"]
            return link
        except (OSError, ValueError, KeyError):
            time.sleep(0.02)
    link.stop()
    raise RuntimeError(f"the link emulator did not start (exit {proc.returncode}; see {log or 'its output'})")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m launcher.fleet.link", description=__doc__.split("\n\n")[2])
    parser.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the SuperLink")
    parser.add_argument("--down", help="rate upstream -> client, e.g. 8Mbit (default: unlimited)")
    parser.add_argument("--up", help="rate client -> upstream, e.g. 2Mbit (default: unlimited)")
    parser.add_argument("--latency", default="0s", help="one-way latency, e.g. 40ms")
    parser.add_argument("--loss", type=float, default=0.0, help="chance an exchange drops its connection")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--counters", type=Path, help="JSON file rewritten every second")
    parser.add_argument("--exchange-gap", default=f"{EXCHANGE_GAP}s", help="idle time that ends an exchange")
    parser.add_argument("--offline", action="store_true", help="start offline (SIGUSR2 brings it online)")
    parser.add_argument("--spec-file", type=Path, help="on SIGHUP, take the shape this JSON file holds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    try:
        spec = LinkSpec(down=parse_rate(args.down) if args.down else None,
                        up=parse_rate(args.up) if args.up else None,
                        latency=parse_duration(args.latency), loss=args.loss)
        gap = parse_duration(args.exchange_gap)
        if not host or not port.isdigit() or not 0 <= spec.loss <= 1 or spec.latency < 0:
            raise UnitError(f"--upstream {args.upstream!r} must be HOST:PORT, --loss 0..1, --latency >= 0")
    except UnitError as err:
        print(f"link: error: {err}", file=sys.stderr)
        return 2
    link = Link((host, int(port)), spec, args.seed, args.counters, online=not args.offline, exchange_gap=gap)
    asyncio.run(link.serve(args.listen, args.spec_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
