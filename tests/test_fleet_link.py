"""The link emulator (launcher.fleet.link), judged at the receiving sockets and by wall clocks."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from launcher.fleet.link import LinkSpec, start_link
from launcher.processes.ports import free_ports, wait_for_port

BIN = Path(sys.executable).parent
MB = 1_000_000


class Upstream:
    """A TCP server on 127.0.0.1 in a thread: echo, or send `send` bytes at once; counts what it receives."""

    def __init__(self, send: int = 0, echo: bool = False) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.send, self.echo = send, echo
        self.accepted = 0
        self.received = 0
        self.last_byte_at = 0.0
        self.send_started = 0.0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            if self.send:
                threading.Thread(target=self._send, args=(conn,), daemon=True).start()
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                self.received += len(data)
                self.last_byte_at = time.monotonic()
                if self.echo:
                    try:
                        conn.sendall(data)
                    except OSError:
                        return

    def _send(self, conn: socket.socket) -> None:
        self.send_started = time.monotonic()
        try:
            conn.sendall(b"d" * self.send)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def links():
    started = []
    yield started
    for link in started:
        link.stop()


def _start(links, tmp_path, upstream, spec, **kw):
    link = start_link(0, f"127.0.0.1:{upstream.port}", spec, counters=tmp_path / f"link{len(links)}.json",
                      log=tmp_path / f"link{len(links)}.log", **kw)
    links.append(link)
    return link


def _roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        data = sock.recv(65536)
        if not data:
            break
        got += data
    return got


def _closed(sock: socket.socket, timeout: float = 3.0) -> bool:
    """True when the peer closed or reset the connection (a send or a read says so)."""
    sock.settimeout(timeout)
    try:
        sock.sendall(b"ping")
        return sock.recv(16) == b""
    except (ConnectionError, OSError):
        return True


def test_rate_each_way_and_counters(tmp_path, links):
    rate = 4e6
    upstream = Upstream(send=MB)
    link = _start(links, tmp_path, upstream, LinkSpec(down=rate, up=rate))
    client = socket.create_connection(("127.0.0.1", link.port))
    got, last_down = 0, 0.0

    def read_down():
        nonlocal got, last_down
        while got < MB:
            data = client.recv(65536)
            if not data:
                return
            got += len(data)
            last_down = time.monotonic()

    reader = threading.Thread(target=read_down)
    reader.start()
    up_started = time.monotonic()
    client.sendall(b"u" * MB)
    reader.join(20)
    deadline = time.monotonic() + 10
    while upstream.received < MB and time.monotonic() < deadline:
        time.sleep(0.01)
    expected = MB * 8 / rate  # 2.0 s
    up_took = upstream.last_byte_at - up_started
    down_took = last_down - upstream.send_started
    print(f"1 MB at 4 Mbit/s: up {up_took:.3f} s, down {down_took:.3f} s, expected {expected:.3f} s")
    assert upstream.received == MB and got == MB
    assert abs(up_took - expected) <= 0.2 * expected
    assert abs(down_took - expected) <= 0.2 * expected
    client.close()
    link.stop()
    counters = json.loads((tmp_path / "link0.json").read_text())
    assert counters["bytes_up"] == MB and counters["bytes_down"] == MB
    assert counters["connections"] == 1 and counters["dropped"] == 0
    upstream.close()


def test_connections_open_at_once_share_the_rate(tmp_path, links):
    """Flower's SuperNode moves objects over two connections at once: together they get the link's rate,
    not each its own (a per-connection bucket would finish in half the time)."""
    rate, each = 4e6, MB // 2
    upstream = Upstream()
    link = _start(links, tmp_path, upstream, LinkSpec(up=rate))
    clients = [socket.create_connection(("127.0.0.1", link.port)) for _ in range(2)]
    started = time.monotonic()
    senders = [threading.Thread(target=c.sendall, args=(b"s" * each,)) for c in clients]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(20)
    deadline = time.monotonic() + 10
    while upstream.received < 2 * each and time.monotonic() < deadline:
        time.sleep(0.01)
    took, expected = upstream.last_byte_at - started, 2 * each * 8 / rate  # 2.0 s for both together
    print(f"2 x 500 kB at once at 4 Mbit/s: {took:.3f} s, expected {expected:.3f} s")
    assert upstream.received == 2 * each
    assert abs(took - expected) <= 0.15 * expected
    for client in clients:
        client.close()
    upstream.close()


def test_latency_is_added_each_way_without_waiting_for_bandwidth(tmp_path, links):
    upstream = Upstream(echo=True)
    link = _start(links, tmp_path, upstream, LinkSpec(down=8e6, up=8e6, latency=0.1))
    with socket.create_connection(("127.0.0.1", link.port)) as client:
        _roundtrip(client, b"warm")
        times = []
        for _ in range(3):
            started = time.monotonic()
            assert _roundtrip(client, b"x" * 100) == b"x" * 100
            times.append(time.monotonic() - started)
        print(f"round trips at 100 ms one way: {[round(t, 3) for t in times]}")
        assert min(times) >= 0.2 and max(times) < 0.2 + 0.15
        # a pipe, not stop-and-wait: 100 kB each way at 8 Mbit/s (after the bucket's two 10 kB chunks: 80 ms)
        # and 100 ms each way overlap to about 0.28 s; waiting out latency per chunk would take over 1 s
        started = time.monotonic()
        assert len(_roundtrip(client, b"y" * 100_000)) == 100_000
        took = time.monotonic() - started
        print(f"100 kB echoed: {took:.3f} s (0.1 s each way + 0.08 s transmission)")
        assert 0.27 <= took < 0.28 + 0.25
    upstream.close()


def test_offline_cuts_and_refuses_online_restores(tmp_path, links):
    upstream = Upstream(echo=True)
    link = _start(links, tmp_path, upstream, LinkSpec())
    before = socket.create_connection(("127.0.0.1", link.port))
    assert _roundtrip(before, b"hello") == b"hello"
    link.set_online(False)
    assert _closed(before)
    accepted = upstream.accepted
    refused = socket.create_connection(("127.0.0.1", link.port))
    assert _closed(refused)
    time.sleep(0.2)
    assert upstream.accepted == accepted  # nothing reached the upstream while offline
    link.set_online(True)
    with socket.create_connection(("127.0.0.1", link.port)) as after:
        after.settimeout(3)
        assert _roundtrip(after, b"again") == b"again"
    counters = link.counters()
    assert counters["cut"] == 1 and counters["refused"] == 1 and counters["online"] is True
    before.close()
    refused.close()
    upstream.close()


def test_start_offline_and_switch_by_signal(tmp_path, links):
    upstream = Upstream(echo=True)
    link = _start(links, tmp_path, upstream, LinkSpec(), online=False)
    with socket.create_connection(("127.0.0.1", link.port)) as sock:
        assert _closed(sock)
    os.kill(link.pid, signal.SIGUSR2)  # the control channel itself, as another process would use it
    deadline = time.monotonic() + 5
    while not link.counters()["online"] and time.monotonic() < deadline:
        time.sleep(0.02)
    with socket.create_connection(("127.0.0.1", link.port)) as sock:
        sock.settimeout(3)
        assert _roundtrip(sock, b"up") == b"up"
    upstream.close()


def test_loss_one_drops_every_exchange_and_zero_none(tmp_path, links):
    upstream = Upstream(echo=True)
    lossy = _start(links, tmp_path, upstream, LinkSpec(loss=1.0), exchange_gap=0.05)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", lossy.port)) as sock:
            sock.settimeout(3)
            sock.sendall(b"request")
            try:
                assert sock.recv(16) == b""
            except ConnectionError:
                pass
    time.sleep(0.2)
    assert upstream.received == 0
    assert lossy.counters()["dropped"] == 3
    clean = _start(links, tmp_path, upstream, LinkSpec(loss=0.0), exchange_gap=0.05)
    with socket.create_connection(("127.0.0.1", clean.port)) as sock:
        sock.settimeout(3)
        for i in range(20):
            assert _roundtrip(sock, b"req%02d" % i) == b"req%02d" % i
            time.sleep(0.06)  # each its own exchange
    assert upstream.received == 20 * 5
    assert clean.counters()["dropped"] == 0
    upstream.close()


def test_loss_half_drops_some_exchanges_reproducibly(tmp_path, links):
    upstream = Upstream(echo=True)

    def dropped_pattern(seed: int) -> list[bool]:
        link = _start(links, tmp_path, upstream, LinkSpec(loss=0.5), exchange_gap=0.05, seed=seed)
        pattern = []
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", link.port)) as sock:
                sock.settimeout(3)
                try:
                    pattern.append(_roundtrip(sock, b"q") != b"q")
                except ConnectionError:
                    pattern.append(True)
        link.stop()
        return pattern

    first, again = dropped_pattern(7), dropped_pattern(7)
    assert first == again and 3 <= sum(first) <= 17
    upstream.close()


def _flower_env(tmp_path: Path) -> dict:
    home = tmp_path / "flwr_home"
    home.mkdir(exist_ok=True)
    return dict(os.environ, FLWR_HOME=str(home), FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1",
                FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1")


def _stop_session(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def test_a_flower_supernode_registers_through_the_link(tmp_path, links):
    env = _flower_env(tmp_path)
    link_port, node_port = free_ports(2)
    (tmp_path / "flwr_home" / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n[superlink.local]\naddress = "127.0.0.1:{link_port}"\ninsecure = true\n')
    started = []
    try:
        with open(tmp_path / "superlink.log", "wb") as log:
            superlink = subprocess.Popen(
                [str(BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(link_port),
                 "--disable-runtime-dependency-installation"], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, cwd=tmp_path, start_new_session=True)
        started.append(superlink)
        assert wait_for_port("127.0.0.1", link_port, 30, alive=lambda: superlink.poll() is None)
        link = start_link(0, f"127.0.0.1:{link_port}", LinkSpec(down=8e6, up=2e6, latency=0.02),
                          counters=tmp_path / "link.json", log=tmp_path / "link.log", env=env)
        links.append(link)
        with open(tmp_path / "supernode.log", "wb") as log:
            node = subprocess.Popen(
                [str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link.port}",
                 "--isolation", "process", "--port", str(node_port)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, cwd=tmp_path, start_new_session=True)
        started.append(node)
        node_id, deadline = None, time.monotonic() + 25
        while node_id is None and time.monotonic() < deadline and node.poll() is None:
            found = re.findall(r"SuperNode ID: (\d+)", (tmp_path / "supernode.log").read_text(errors="replace"))
            node_id = int(found[-1]) if found else None
            time.sleep(0.2)
        assert node_id is not None, (tmp_path / "supernode.log").read_text()
        # the SuperNode's own TCP connection goes to the link, not to the SuperLink
        peers = {c.raddr.port for c in psutil.Process(node.pid).net_connections("tcp") if c.raddr}
        assert link.port in peers and link_port not in peers
        listed = subprocess.run([str(BIN / "flwr"), "supernode", "ls", "local", "--format", "json"],
                                capture_output=True, text=True, env=env, timeout=30)
        assert str(node_id) in listed.stdout, listed.stdout + listed.stderr
        counters = link.counters()
        print(f"through the link: {counters}")
        assert counters["bytes_up"] > 0 and counters["bytes_down"] > 0 and counters["connections"] >= 1
    finally:
        for proc in reversed(started):  # the SuperNode first, then the SuperLink
            _stop_session(proc)
