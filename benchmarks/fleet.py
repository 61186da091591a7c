"""Issue 18's fleet benchmark: each mechanism as a measured ratio beside its bound, as one markdown table.

    python3 -m benchmarks.fleet                 # CPU, link, availability: about 1 minute
    python3 -m benchmarks.fleet --runs          # also the process-mode rows (memory, deadline, over-commit,
                                                # process vs virtual, no-fleet): several fl-launch runs, ~6 min

CPU: a fixed amount of single-threaded CPU work in a child process, timed at a whole core and held by
launcher.fleet.limits (cgroups here, else the duty-cycle fallback) to a 0.25 share. Link: a loopback
transfer through launcher.fleet.link at 1 Mbit/s each way, timed at the receiving socket, and a small
request/reply through a 100 ms link. Availability: contract.fleet's draw over 40 rounds, twice with one seed.
The run rows start fl-launch and read its server.log clock lines and run.json.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from contract.fleet import Fleet, Profile
from launcher.fleet.limits import ClientLimits, Limiter
from launcher.fleet.link import LinkSpec, start_link

WORK = "import time\nt=time.process_time()\nx=0\nfor i in range(12_000_000):\n    x+=i*i\n"


def _cpu_seconds(limiter: Limiter | None, share: float) -> float:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read(1)\n" + WORK],
                             stdin=subprocess.PIPE)
    handle = None
    if limiter is not None:
        handle = limiter.limit(f"bench-{child.pid}", ClientLimits(cpu=share), profile="bench")
        handle.add(child.pid)
    start = time.monotonic()
    child.stdin.write(b"g")
    child.stdin.close()
    child.wait()
    wall = time.monotonic() - start
    if handle is not None:
        handle.close()
    return wall


def cpu_row() -> tuple:
    limiter = Limiter.choose()
    full = min(_cpu_seconds(None, 1.0) for _ in range(2))
    quarter = _cpu_seconds(limiter, 0.25)
    limiter.close()
    ratio = quarter / full
    return ("CPU 0.25 vs 1.0 (fixed work)", f"{ratio:.2f}x ({quarter:.2f} s / {full:.2f} s; "
            f"{limiter.backend.value})", "4.0x within 15%", abs(ratio / 4 - 1) <= 0.15)


def _sink(server: socket.socket, got: dict) -> None:
    conn, _ = server.accept()
    total = 0
    while chunk := conn.recv(65536):
        total += len(chunk)
        if total >= got["want"]:
            got["at"] = time.monotonic()
            conn.sendall(b"k")
    conn.close()


def link_rows(tmp: Path) -> list[tuple]:
    rows = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    got = {"want": 250_000}
    threading.Thread(target=_sink, args=(server, got), daemon=True).start()
    link = start_link(0, f"127.0.0.1:{server.getsockname()[1]}", LinkSpec(down=1e6, up=1e6),
                      counters=tmp / "rate.json")
    with socket.create_connection(("127.0.0.1", link.port)) as sock:
        start = time.monotonic()
        sock.sendall(b"x" * got["want"])
        sock.recv(1)
    link.stop()
    seconds, ideal = got["at"] - start, got["want"] * 8 / 1e6
    rows.append(("Link 1 Mbit/s: 250 kB transfer time vs bytes x 8 / rate", f"{seconds / ideal:.3f} "
                 f"({seconds:.2f} s / {ideal:.2f} s)", "within 20%", abs(seconds / ideal - 1) <= 0.2))

    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen(1)

    def serve() -> None:
        conn, _ = echo.accept()
        while data := conn.recv(100):
            conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    link = start_link(0, f"127.0.0.1:{echo.getsockname()[1]}", LinkSpec(latency=0.1), counters=tmp / "lat.json")
    times = []
    with socket.create_connection(("127.0.0.1", link.port)) as sock:
        for _ in range(5):
            start = time.monotonic()
            sock.sendall(b"ping")
            sock.recv(100)
            times.append(time.monotonic() - start)
            time.sleep(0.6)
    link.stop()
    rows.append(("Link latency 100 ms: one exchange's added time", f"{min(times) * 1000:.0f} ms (min of 5)",
                 ">= 200 ms (2 one-way latencies)", min(times) >= 0.2))
    return rows


def availability_row() -> tuple:
    fleet = Fleet.of("bench.toml", 1000, (Profile("half", clients=range(1000), availability=0.5),))
    share = [sum(fleet.online(c, r, seed=7) for c in range(1000)) / 1000 for r in range(1, 41)]
    again = [sum(fleet.online(c, r, seed=7) for c in range(1000)) / 1000 for r in range(1, 41)]
    other = [sum(fleet.online(c, r, seed=8) for c in range(1000)) / 1000 for r in range(1, 41)]
    mean = sum(share) / len(share)
    return ("Availability 0.5, 40 rounds x 1000 clients: participation", f"{mean:.1%} (per round "
            f"{min(share):.0%}..{max(share):.0%}); same seed identical: {share == again}; other seed differs: "
            f"{share != other}", "40-60%, identical per seed", 0.4 <= mean <= 0.6 and share == again)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", action="store_true", help="also the rows that need fl-launch runs (minutes)")
    args = parser.parse_args()
    rows = [cpu_row()]
    with tempfile.TemporaryDirectory() as tmp:
        rows += link_rows(Path(tmp))
    rows.append(availability_row())
    if args.runs:  # the process-mode rows are measured by these real runs; -s prints their figures
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                        "tests/test_fleet_process.py"], check=False)
    print("| measure | measured | bound | ok |\n|---|---|---|---|")
    for name, measured, bound, ok in rows:
        print(f"| {name} | {measured} | {bound} | {'yes' if ok else 'NO'} |")


if __name__ == "__main__":
    main()
