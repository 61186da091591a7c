"""Issue 18's fleet benchmark: each mechanism as a measured ratio beside its bound, as one markdown table.

    python3 -m benchmarks.fleet_emulation                 # CPU, link, availability: about 1 minute
    python3 -m benchmarks.fleet_emulation --runs          # also the rows measured by fl-launch runs (~12 minutes):
                                                # process vs virtual, deadline, over-commit, memory, W1 without
                                                # --fleet against the compute floor

CPU: a fixed amount of single-threaded CPU work in a child process held by launcher.fleet.limits (cgroups
here, else the duty-cycle fallback) to a 0.25 share: its wall time over its own CPU time (what the work takes
at a whole core; a throttled core may clock down, so its CPU time, not another run's wall time, is the
baseline), and beside it the wall time of the same work unlimited. Link: a loopback transfer through
launcher.fleet.link at 1 Mbit/s each way, timed at the receiving socket, and a small request/reply through a
100 ms link. Availability: contract.fleet_record's draw over 40 rounds, twice with one seed. The run rows start
fl-launch and read its server.log, client logs and run.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.performance_page import write_section
from contract.fleet_record import Fleet, Profile
from contract.loglines import timed_events
from launcher.fleet.limits import ClientLimits, Limiter
from launcher.fleet.link import LinkSpec, start_link

WORK = "import time\nt=time.process_time()\nx=0\nfor i in range(12_000_000):\n    x+=i*i\n"


def _cpu_seconds(limiter: Limiter | None, share: float) -> tuple[float, float]:
    """(wall seconds, the child's own CPU seconds) of the fixed work, at ``share`` when limited."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read(1)\n" + WORK],
                             stdin=subprocess.PIPE)
    handle = None
    if limiter is not None:
        handle = limiter.limit(f"bench-{child.pid}", ClientLimits(cpu=share), profile="bench")
        handle.add(child.pid)
    start = time.monotonic()
    child.stdin.write(b"g")
    child.stdin.close()
    _, _, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - start
    if handle is not None:
        handle.close()
    return wall, usage.ru_utime + usage.ru_stime


def cpu_row() -> tuple:
    limiter = Limiter.choose()
    full = min(_cpu_seconds(None, 1.0)[0] for _ in range(2))
    wall, cpu = _cpu_seconds(limiter, 0.25)
    limiter.close()
    ratio = wall / cpu
    return ("CPU 0.25: fixed work's wall time over its CPU time at a whole core",
            f"{ratio:.2f}x ({wall:.2f} s / {cpu:.2f} s CPU; {limiter.backend.value}; the same work unlimited: "
            f"{full:.2f} s wall, {wall / full:.2f}x)", "4.0x within 15%", abs(ratio / 4 - 1) <= 0.15)


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


# --- rows measured by fl-launch runs ---------------------------------------------------------------------------

def _fl_launch() -> list[str]:
    script = Path(sys.executable).parent / "fl-launch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "launcher.cli.launch"]


def _launch(tmp: Path, name: str, fleet: str | None, *args: str) -> tuple[Path, int]:
    """fl-launch to its end (folder TMP/NAME); (its run folder, its exit code)."""
    log_dir = tmp / name
    extra = []
    if fleet is not None:
        (tmp / f"{name}.toml").write_text(fleet)
        extra = ["--fleet", str(tmp / f"{name}.toml")]
    print(f"[fleet] {name}: fl-launch {' '.join(args + tuple(extra))}", flush=True)
    done = subprocess.run([*_fl_launch(), *args, *extra, "--log-dir", str(log_dir), "--kill-tag", f"bench-{name}"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    runs = sorted(p for p in log_dir.iterdir() if p.is_dir())
    return runs[-1], done.returncode


def _events(path: Path) -> list[tuple[float, str, dict]]:
    """(wall time from the line's stamp, event, values) of each fl-launch line of a log."""
    return [(e.time.timestamp(), e.kind, e.values) for e in timed_events(path.read_text())]


def _clocks(run_dir: Path) -> dict[int, dict]:
    return {v["round"]: v for _, k, v in _events(run_dir / "server" / "server.log") if k == "server_round_clock"}


PV_FLEET = """[[profile]]
name = "pi"
clients = 2
cpu = 0.3
down = "8Mbit"
up = "2Mbit"
latency = "40ms"

[[profile]]
name = "phone"
clients = "rest"
cpu = 0.5
down = "4Mbit"
up = "1Mbit"
latency = "80ms"
"""


def process_vs_virtual_row(tmp: Path) -> tuple:
    """The same fleet and seed in both modes; rounds 2.. compared (round 1 also starts every client up)."""
    args = ("--client-num", "4", "--rounds", "6", "--seed", "7", "--round-timeout", "300")
    process, code_p = _launch(tmp, "pv-process", PV_FLEET, *args, "--mode", "process")
    virtual, code_v = _launch(tmp, "pv-virtual", PV_FLEET, *args, "--mode", "virtual")
    real = {r: v["seconds"] for r, v in _clocks(process).items()}
    emulated = {r: v["emulated_s"] for r, v in _clocks(virtual).items()}
    rounds = sorted(r for r in set(real) & set(emulated) if r >= 2)
    if code_p or code_v or not rounds:
        return ("Process vs virtual: round times", f"runs failed ({code_p}, {code_v}): {process}, {virtual}",
                "within 20%", False)
    ratio = statistics.mean(real[r] for r in rounds) / statistics.mean(emulated[r] for r in rounds)
    worst = max(abs(real[r] / emulated[r] - 1) for r in rounds)
    return ("Process vs virtual, 4 clients (2 x cpu 0.3, 8/2 Mbit, 40 ms; 2 x cpu 0.5, 4/1 Mbit, 80 ms), "
            "seed 7: process real / virtual emulated round time",
            f"{ratio:.2f} (rounds 2-{rounds[-1]}: {statistics.mean(real[r] for r in rounds):.2f} s / "
            f"{statistics.mean(emulated[r] for r in rounds):.2f} s; worst round {worst:.0%} off; round 1, with "
            f"start-up: {real.get(1, 0):.2f} s / {emulated.get(1, 0):.2f} s)", "within 20%", abs(ratio - 1) <= 0.2)


SLOW_FLEET = """[[profile]]
name = "fast"
clients = 3
cpu = 0.4
down = "1Mbit"
up = "1Mbit"

[[profile]]
name = "slow"
clients = "rest"
cpu = 0.1
down = "250kbit"
up = "250kbit"
"""


def _ready(run_dir: Path, client: int) -> list[float]:
    """Per round, seconds from the round's start to the client's reply being ready (its waiting + its task)."""
    return [v["waiting_s"] + v["seconds"] for _, k, v in _events(run_dir / f"client_{client}" / "client.log")
            if k == "round_end_fleet"]


def deadline_row(tmp: Path) -> tuple:
    """3 clients at cpu 0.4 and 1 Mbit/s, one 4x slower (cpu 0.1, 250 kbit/s); a 10 s deadline."""
    run_dir, code = _launch(tmp, "deadline", SLOW_FLEET, "--client-num", "4", "--rounds", "4",
                            "--round-deadline", "10", "--min-clients", "2", "--mode", "process")
    clocks = _clocks(run_dir)
    times = [v["seconds"] for r, v in clocks.items() if r >= 2]  # round 1 also learns the nodes' partitions
    slow = _ready(run_dir, 3)
    cut = len(clocks) == 4 and all(v["stragglers"] == [3] and v["replies"] == 3 for v in clocks.values())
    ok = code == 0 and len(times) == 3 and cut and all(10.0 <= t <= 11.0 for t in times)
    return ("Deadline 10 s, one profile 4x slower (cpu 0.1 vs 0.4, 250 kbit/s vs 1 Mbit/s): round time",
            f"rounds 2-4: {statistics.mean(times):.2f} s mean ({min(times):.2f}-{max(times):.2f}; round 1, which "
            f"also asks each node its partition over its link: {clocks.get(1, {}).get('seconds', 0):.2f} s); slow "
            f"client cut in every round: {cut}" + (f"; its reply ready after {min(slow):.1f} s at the soonest"
                                                    if slow else "")
            if times else f"run failed ({code}): {run_dir}", "ends at the deadline (+10%), slow cut", ok)


def overcommit_row(tmp: Path) -> tuple:
    """K = 3, over-commit 1.3: 4 sampled of 4, the round ends at the 3rd reply (the slow one is cut)."""
    run_dir, code = _launch(tmp, "overcommit", SLOW_FLEET, "--client-num", "4", "--rounds", "4",
                            "--clients-per-round", "3", "--overcommit", "1.3", "--mode", "process")
    clocks = _clocks(run_dir)
    times = [v["seconds"] for v in clocks.values()]
    slow = _ready(run_dir, 3)
    shape = all(v["sampled"] == 4 and v["replies"] == 3 and v["stragglers"] == [3] for v in clocks.values())
    ok = code == 0 and len(times) == 4 and shape and (not slow or max(times) < min(slow))
    return ("Over-commit 1.3, K = 3 (process mode, the fleet above): round ends at K replies",
            f"sampled 4, taken 3, slow one cut in every round: {shape}; rounds {statistics.mean(times):.2f} s mean, "
            f"{max(times):.2f} s at most" + (f"; the slow reply ready after {min(slow):.1f} s at the soonest"
                                             if slow else "") if times else f"run failed ({code}): {run_dir}",
            "ends at the K-th reply", ok)


def memory_row(tmp: Path) -> tuple:
    fleet = '[[profile]]\nname = "tiny"\nclients = 1\nmemory = "150MiB"\n'
    run_dir, code = _launch(tmp, "memory", fleet, "--client-num", "3", "--rounds", "2", "--min-clients", "2",
                            "--max-restarts", "1", "--mode", "process")
    info = json.loads((run_dir / "run.json").read_text())
    restarts = [(r["cause"], r["restarted"]) for r in info.get("restarts", []) if r["client"] == 0]
    logged = [(k, v["cause"]) for _, k, v in _events(run_dir / "client_0" / "client.log")
              if k in ("client_restart", "client_lost")]
    want = "out of memory (profile tiny)"
    ok = restarts == [(want, True), (want, False)] and [c for _, c in logged] == [want, want]
    return ("Memory 150 MiB below the client's need, --max-restarts 1", f"run.json: {restarts}; client.log: "
            f"{[k for k, _ in logged]}; run {info.get('status')}", "killed, cause in run.json and log, "
            "restarted per --max-restarts", ok)


BEFORE_FLEET = "00411e5"  # the last commit before --fleet (issue 17's tree)


def _w1_ratio(tree: Path, out: Path) -> tuple[float, float] | None:
    """(fl-launch's s/round, the floor's) for W1, measured by benchmarks.report run from ``tree``."""
    subprocess.run([sys.executable, "-m", "benchmarks.report", "--workloads", "W1", "--variants", "floor,fl-launch",
                    "--out", str(out)], cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)),
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=900)
    try:
        speed = json.loads((out / "report.json").read_text())["speed"]["W1"]
        return speed["fl-launch"]["per_round_s"], speed["floor"]["per_round_s"]
    except (OSError, KeyError, TypeError, ValueError):
        return None


def no_fleet_row(tmp: Path) -> tuple:
    """W1 against its compute floor, now and at the commit before --fleet existed, back to back on this
    machine (a ratio recorded on another day is not a fair baseline: this machine's speed drifts)."""
    root = Path(__file__).resolve().parent.parent
    base = tmp / "before-fleet"
    subprocess.run(["git", "worktree", "add", "--detach", str(base), BEFORE_FLEET], cwd=root,
                   capture_output=True, check=False)
    try:
        before = _w1_ratio(base, tmp / "w1-before") if base.exists() else None
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=root, capture_output=True)
    now = _w1_ratio(root, tmp / "w1-now")
    if now is None or before is None or not all(now + before):
        return ("Without --fleet: W1 per round / compute floor", f"runs failed: now {now}, before {before}",
                "unchanged", False)
    ratio, was = now[0] / now[1], before[0] / before[1]
    return ("Without --fleet: W1 per round / compute floor", f"{ratio:.2f}x ({now[0]:.2f} s / {now[1]:.2f} s); "
            f"at {BEFORE_FLEET}, before --fleet, run just before: {was:.2f}x ({before[0]:.2f} s / {before[1]:.2f} s)",
            "unchanged (within 10%)", ratio <= was * 1.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", action="store_true", help="also the rows that need fl-launch runs (minutes)")
    parser.add_argument("--write-page", action="store_true",
                        help="also rewrite docs/performance.md's fleet_emulation table with these rows")
    args = parser.parse_args()
    rows = [cpu_row()]
    with tempfile.TemporaryDirectory() as tmp:
        rows += link_rows(Path(tmp))
    rows.append(availability_row())
    if args.runs:
        with tempfile.TemporaryDirectory() as tmp:
            for row in (process_vs_virtual_row, deadline_row, overcommit_row, memory_row, no_fleet_row):
                try:
                    rows.append(row(Path(tmp)))
                except Exception as err:  # noqa: BLE001 (one failed run must not lose the rows measured)
                    rows.append((row.__name__, f"failed: {type(err).__name__}: {err}", "-", False))
    table = "\n".join(["| measure | measured | bound | ok |", "|---|---|---|---|",
                       *(f"| {name} | {measured} | {bound} | {'yes' if ok else 'NO'} |"
                         for name, measured, bound, ok in rows)])
    print(table)
    if args.write_page:
        write_section("fleet_emulation", table)


if __name__ == "__main__":
    main()
