"""A connection its peer closes kills no process of a run: a write to it raises, and Flower's clients retry.

The fork server starts every local client process; those keep Python's own SIGPIPE handling (ignored, so a
write to a closed connection raises BrokenPipeError) instead of the default action (death). Oracles: a file
the forked probe writes, /proc/PID/status of a run's live processes, and a real run in which the test
closes a client's connection to its SuperNode from the server's side, the way a server's keep-alive timeout
closes an idle one, just as the client writes its reply: the connection state and its killed socket as
``ss`` lists them, run.json's processes and restarts, and the logs' lines read with this file's regexes.
Those runs are of a user's app (``--app``, written here): its task host and task workers talk HTTP to their
SuperNode's Runtime API; the built-in app's client is one process whose tasks' calls stay in it.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contract import fork_requests
from tests.helpers import command, run, run_json, runs, start, wait_for_status, wait_until_nothing_tagged

REPO = Path(__file__).resolve().parent.parent
SIGPIPE_BIT = 1 << (signal.SIGPIPE - 1)
ROUND_END = re.compile(r"\[round\] iteration:(\d+)/\d+ end replies:(\d+) failures:(\d+) aggregated:(\w+)", re.M)
TASK_EXIT = re.compile(r"task \S+ exited with code (-?\d+)")

PROBE = '''"""Forked by a fork server: writes to a connection whose peer closed it, as HTTP does to a stale one."""
import socket
import sys
import time
from pathlib import Path

listener = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
server.close()  # FIN: the client's end is half closed, as a keep-alive connection the server timed out
time.sleep(0.1)
outcome = "wrote"
try:
    for _ in range(3):  # the first write draws the peer's reset; the next one meets the broken pipe
        client.sendall(b"x" * 1000)
        time.sleep(0.1)
except OSError as err:
    outcome = type(err).__name__
Path(sys.argv[1]).write_text(outcome)
'''


def _sig_ignored(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    return bool(int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.M).group(1), 16) & SIGPIPE_BIT)


def test_a_process_the_fork_server_starts_gets_broken_pipe_errors_not_sigpipe(tmp_path):
    (tmp_path / "sigpipe_probe.py").write_text(PROBE)
    run_dir = tmp_path / "run"
    (run_dir / "server").mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen([sys.executable, "-m", "launcher.processes.fork_server", "--run-dir", str(run_dir)],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert fork_requests.wait_ready(run_dir, timeout=180, alive=lambda: server.poll() is None)
        out = tmp_path / "outcome"
        pid = fork_requests.request_fork(run_dir, "sigpipe_probe", [str(out)], str(tmp_path / "probe.log"), {},
                                       str(tmp_path))
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                break  # dead (nobody here reaps it)
            time.sleep(0.05)
        time.sleep(0.2)
        assert out.exists(), f"the probe died without a word: {(tmp_path / 'probe.log').read_text()!r}"
        assert out.read_text() == "BrokenPipeError"
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- a real run: the server side closes a client's connection while the client writes its reply -----------

HELD_CLIENT = '''"""A ClientApp whose first training task in client 0 waits for the test (the files in HERE: `hold` asks
it to, `training` says it does, `go` lets it on); its replies carry every array it got, each changed."""
import time
from pathlib import Path

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

HERE = Path({here!r})
app = ClientApp()


def _hold(context: Context) -> None:
    hold = HERE / "hold"
    if int(context.node_config["partition-id"]) == 0 and hold.exists():
        hold.unlink()
        (HERE / "training").touch()
        deadline = time.time() + 120
        while not (HERE / "go").exists() and time.time() < deadline:
            time.sleep(0.05)


@app.train()
def train(msg: Message, context: Context) -> Message:
    _hold(context)
    step = 1.0 + int(context.node_config["partition-id"])  # no array of a reply is one the SuperNode holds
    arrays = ArrayRecord({{k: Array(a.numpy() + step) for k, a in msg.content["arrays"].items()}})
    metrics = MetricRecord({{"num-examples": 10, "step": step}})  # a metric: a round Flower logs as aggregated
    return Message(RecordDict({{"arrays": arrays, "metrics": metrics}}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return Message(RecordDict({{"metrics": MetricRecord({{"num-examples": 10}})}}), reply_to=msg)
'''

HELD_SERVER = '''"""FedAvg over every client each round, on 6 weights and `ballast` more."""
import numpy as np
from flwr.app import Array, ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    arrays = {"w": Array(np.zeros(6, dtype=np.float32))}
    if int(context.run_config["ballast"]):
        arrays["ballast"] = Array(np.zeros(int(context.run_config["ballast"]), dtype=np.float32))
    FedAvg(min_available_nodes=2, min_train_nodes=2, min_evaluate_nodes=2).start(
        grid=grid, initial_arrays=ArrayRecord(arrays), num_rounds=int(context.run_config["num-server-rounds"]))
'''

HELD_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "heldapp"
version = "1.0.0"
description = "A Flower app of the tests whose client 0 waits for the test in its first training task"
license = "Apache-2.0"
dependencies = ["numpy"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "tests"

[tool.flwr.app.components]
serverapp = "heldapp.server_app:app"
clientapp = "heldapp.client_app:app"

[tool.flwr.app.config]
num-server-rounds = 1
ballast = 0
"""

# Aggregated rounds as Flower's FedAvg logs them in the ServerApp's log: (results, failures) of each train phase.
TRAIN_AGGREGATED = re.compile(r"aggregate_train: Received (\d+) results and (\d+) failures")


def held_app(root: Path) -> Path:
    """A user's Flower app (``fl-launch --app``) whose client 0 holds its first training task until the test
    touches ``root/go`` (``root/hold`` asks it to, ``root/training`` says it does): a task host and a task worker
    per task talk HTTP to their SuperNode's Runtime API, the connections these tests close. Its run config
    ``ballast`` adds that many float32 weights (4 bytes each) to the model and so to every reply."""
    folder = root / "heldapp"
    (folder / "heldapp").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(HELD_PYPROJECT)
    (folder / "heldapp" / "__init__.py").write_text("")
    (folder / "heldapp" / "server_app.py").write_text(HELD_SERVER)
    (folder / "heldapp" / "client_app.py").write_text(HELD_CLIENT.format(here=str(root)))
    return folder


SS_LINE = re.compile(r"^(?P<recvq>\d+)\s+(?P<sendq>\d+)\s+\S+:(?P<lport>\d+)\s+\S+:(?P<rport>\d+)", re.M)


def _ss(*args: str) -> str:
    return subprocess.run(["ss", "-tnH", *args], capture_output=True, text=True, check=False).stdout


def _wait(what, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    return None


def _pidfd_getfd(pid: int, fd: int) -> int:
    """A copy of another process's file descriptor (pidfd_getfd(2), Linux 5.6; root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        got = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd, the same number on every architecture
        if got < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
        return got
    finally:
        os.close(pidfd)


def _socket_fd(pid: int, *ss_filter: str) -> int:
    """The fd of ``pid``'s TCP socket that ``ss`` finds with the filter."""
    inode = re.search(r"\bino:(\d+)", _ss("-e", *ss_filter)).group(1)
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                return int(fd)
        except OSError:
            continue
    raise AssertionError(f"no fd of {pid} is socket {inode}")


def _small_receive_buffers(pid: int, port: int) -> None:
    """The SuperNode's connections get a small receive buffer that does not grow (set on its listening
    socket, which they inherit, and on those it accepted before: a task host quick to connect, its receive
    buffer grown, drains a 12 MB reply in the 1 ms slices _stop_mid_reply gives it): a client's large write
    to it stays queued on the client's end."""
    assert _wait(lambda: _ss("-l", f"( sport = :{port} )"), 120), "the SuperNode never listened"
    with socket.socket(fileno=_pidfd_getfd(pid, _socket_fd(pid, "-l", f"( sport = :{port} )"))) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    for inode in re.findall(r"\bino:(\d+)", _ss("-e", "state", "established", f"( sport = :{port} )")):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != f"socket:[{inode}]":
                    continue
                with socket.socket(fileno=_pidfd_getfd(pid, int(fd))) as accepted:
                    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            except OSError:  # closed meanwhile
                continue


def _why_connections_cannot_be_broken() -> str | None:
    """What this machine lacks for the tests that close a run's connections (None: nothing): root (another
    process's descriptors), pidfd_getfd(2) (Linux 5.6), and ``ss -K`` (a kernel with INET_DIAG_DESTROY)."""
    if os.geteuid() != 0:
        return "needs root (to take a run's sockets and destroy them)"
    if not hasattr(os, "pidfd_open"):
        return "needs os.pidfd_open (Linux 5.3, Python 3.9)"
    if shutil.which("ss") is None:
        return "needs ss (iproute2)"
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as client:
        server, _ = listener.accept()
        with server:
            try:
                os.close(_pidfd_getfd(os.getpid(), server.fileno()))
            except OSError as err:
                return f"needs pidfd_getfd(2) (Linux 5.6): {err}"
            port, peer = listener.getsockname()[1], client.getsockname()[1]
            killed = subprocess.run(["ss", "-K", "-tnH", f"( sport = :{port} and dport = :{peer} )"],
                                    capture_output=True, text=True, check=False).stdout
            if killed.strip():  # it lists what it destroyed
                return None
            return "needs ss -K (a kernel built with CONFIG_INET_DIAG_DESTROY)"


@pytest.fixture(scope="module")
def breakable():
    """Skips the test where this machine cannot close a run's connections as the test needs."""
    why = _why_connections_cannot_be_broken()
    if why:
        pytest.skip(why)


def _processes(log_dir: Path) -> list[dict]:
    """The processes run.json lists, once it is there."""
    try:
        return run_json(runs(log_dir)[0]).get("processes", [])
    except (IndexError, OSError, ValueError):
        return []


def _written(port: int) -> dict[int, tuple[int, int]]:
    """Each client connection to ``port`` by the client's port: (bytes queued on it, bytes the client wrote
    to it in all: those its peer acknowledged and those queued)."""
    text, out = _ss("-i", "state", "established", f"( dport = :{port} )"), {}
    for m in SS_LINE.finditer(text):
        acked = re.search(r"\bbytes_acked:(\d+)", text[m.end():].split("\n", 2)[1] if "\n" in text[m.end():] else "")
        out[int(m["lport"])] = (int(m["sendq"]), int(m["sendq"]) + (int(acked.group(1)) if acked else 0))
    return out


def _stop_mid_reply(pid: int, port: int, timeout: float) -> int:
    """Let the SuperNode ``pid`` run 1 ms in every 20 until a client is blocked writing to it: more than 1 MB
    queued on the connection (its buffer full), and less of its 12 MB reply written than the reply (the
    rest waits in its write). Leaves it stopped; returns the client's port."""
    deadline, seen = time.monotonic() + timeout, []
    try:
        while time.monotonic() < deadline:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.02)
            written = _written(port)
            seen.append(max(written.values(), default=(0, 0)))
            blocked = [lport for lport, (queued, total) in written.items() if queued > 1_000_000 and total < 11e6]
            if blocked:
                return blocked[0]
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.001)
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass
    except BaseException:
        os.kill(pid, signal.SIGCONT)
        raise
    raise AssertionError(f"no client's write to its SuperNode was ever blocked; largest queues seen: "
                         f"{sorted(seen)[-10:]} in {len(seen)} looks")


def _close_from_the_server_side(pid: int, port: int, peer: int) -> str:
    """What a server's keep-alive timeout does to a connection, at the moment the client writes on it: a FIN
    from the server's end (the client's end is then half closed), then the server's reset when the client's
    data reaches it. ``ss -K`` (a socket destroyed) stands for the reset of the stopped server. Returns what
    ``ss -K`` listed as killed."""
    fd = _pidfd_getfd(pid, _socket_fd(pid, "state", "established", f"( sport = :{port} and dport = :{peer} )"))
    with socket.socket(fileno=fd) as sock:
        sock.shutdown(socket.SHUT_WR)
    assert _wait(lambda: _ss("state", "close-wait", f"( sport = :{peer} and dport = :{port} )"), 10), \
        "the client's end did not see the server's FIN"
    killed = subprocess.run(["ss", "-K", "-tnH", f"( sport = :{port} and dport = :{peer} )"], capture_output=True,
                            text=True, check=False).stdout
    return killed


@pytest.mark.slow
def test_a_client_whose_connection_the_server_closes_mid_reply_lives_and_its_round_is_aggregated(tmp_path,
                                                                                                 monkeypatch,
                                                                                                 breakable):
    """Client 0's task writes its 12 MB reply to its SuperNode, which the test has stopped (its buffers fill);
    the server's end then closes the connection, and the client's next write meets the broken pipe. The
    client retries on a fresh connection once the SuperNode goes on: it lives, the round is aggregated, no
    restart is recorded. Before the fix the task process died of SIGPIPE and the round went without it."""
    monkeypatch.setenv("FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE", str(64 << 20))  # the 12 MB array in one object
    app = held_app(tmp_path)  # 3M more weights (12 MB): a reply is larger than a connection's socket buffers
    (tmp_path / "hold").touch()
    log_dir, tag = tmp_path / "logs", "t-broken-pipe"
    proc = start("fl-launch", "--app", str(app), "--client-num", "2", "--run-config",
                 "num-server-rounds=1 ballast=3000000", "--round-timeout", "60", "--kill-tag", tag,
                 "--log-dir", str(log_dir), cwd=tmp_path)
    supernode = None
    try:
        [node] = _wait(lambda: proc.poll() is None and [p for p in _processes(log_dir)
                                                        if p["role"] == "supernode" and p["client"] == 0],
                       240, every=0.05) or [None]
        assert node, proc.stdout.read()
        _small_receive_buffers(node["pid"], node["port"])
        assert _wait(lambda: (tmp_path / "training").exists() or proc.poll() is not None, 240, every=0.05)
        assert proc.poll() is None, proc.stdout.read()
        [run_dir] = runs(log_dir)
        procs = run_json(run_dir)["processes"]
        [worker] = [p for p in procs if p["role"] == "clientapp" and p["client"] == 0]
        supernode, port = node["pid"], node["port"]
        (tmp_path / "go").touch()
        peer = _stop_mid_reply(supernode, port, timeout=90)
        killed = _close_from_the_server_side(supernode, port, peer)
        assert re.search(rf":{port}\s+\S+:{peer}\b", killed), killed
        os.kill(supernode, signal.SIGCONT)
        supernode = None
        out, _ = proc.communicate(timeout=300)
    finally:
        if supernode is not None and Path(f"/proc/{supernode}").exists():
            os.kill(supernode, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            run("fl-finish", "--kill-tag", tag, timeout=60)
    info = run_json(run_dir)
    server = (run_dir / "server" / "serverapp.log").read_text()
    worker_log = (run_dir / "client_0" / "worker.log").read_text()
    assert proc.returncode == 0 and info["status"] == "finished", out[-3000:] + worker_log[-3000:]
    assert info["rounds_done"] == 1 and TRAIN_AGGREGATED.findall(server) == [("2", "0")], server[-3000:]
    assert not info.get("restarts"), info.get("restarts")
    assert TASK_EXIT.findall(worker_log) == []  # no task process of client 0 died
    now = {(p["role"], p["client"]): p["pid"] for p in info["processes"] if p.get("client") is not None}
    assert now[("clientapp", 0)] == worker["pid"] and now[("supernode", 0)] == node["pid"]
    assert wait_until_nothing_tagged(tag) == []


def test_the_processes_of_a_run_ignore_sigpipe_as_python_does(tmp_path):
    """Every local process of a live run (the fork server's children included) has SIGPIPE ignored."""
    log_dir, tag = tmp_path / "logs", "t-sigign"
    proc = start("fl-launch", "--client-num", "2", "--rounds", "2", "--local-epochs", "1", "--kill-tag", tag,
                 "--log-dir", str(log_dir), cwd=tmp_path)
    try:
        assert _wait(lambda: runs(log_dir) or proc.poll() is not None, 60)
        [run_dir] = runs(log_dir)
        wait_for_status(run_dir, {"running"}, timeout=240)
        procs = [p for p in run_json(run_dir)["processes"] if p.get("exit_code") is None]
        roles = {p["role"] for p in procs}
        assert {"client"} <= roles, roles
        ignored = {(p["role"], p.get("client")): _sig_ignored(p["pid"]) for p in procs
                   if Path(f"/proc/{p['pid']}").exists()}
        assert ignored and all(ignored.values()), ignored
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert wait_until_nothing_tagged(tag) == []


def test_a_foreground_run_whose_output_reader_goes_away_goes_on_and_finishes(tmp_path):
    """`fl-launch ... | head -1`: the reader of its output leaves after the first line; the run does not die
    of the broken pipe (it failed with an empty reason before): it finishes, every round aggregated."""
    log_dir, tag = tmp_path / "logs", "t-head"
    with open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen([*command("fl-launch"), "--client-num", "2", "--rounds", "2", "--local-epochs", "1",
                                 "--kill-tag", tag, "--log-dir", str(log_dir)], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=err, stdin=subprocess.DEVNULL)
        try:
            first = proc.stdout.readline()
            proc.stdout.close()  # as head does once it has its line
            code = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                run("fl-finish", "--kill-tag", tag, timeout=60)
    assert first.startswith(b"run ") and b"starting" in first, first
    [run_dir] = runs(log_dir)
    info = run_json(run_dir)
    server = (run_dir / "server" / "server.log").read_text()
    assert code == 0 and info["status"] == "finished", (info.get("reason"), (tmp_path / "stderr.txt").read_text())
    assert [(int(r), a) for r, _, _, a in ROUND_END.findall(server)] == [(1, "yes"), (2, "yes")]
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
    assert wait_until_nothing_tagged(tag) == []


QUIET_PROBE = '''import sys
import time
import click
from launcher.cli.live_view import make_console

console = make_console()
console.print("first line")
time.sleep(float(sys.argv[1]))  # the reader goes away meanwhile
console.print("unread on stdout")
print("unread on stderr", file=sys.stderr, flush=True)
click.echo("unread through click", err=True)
sys.exit(7)
'''


def test_a_command_s_stderr_goes_quiet_too_when_its_reader_goes_away(tmp_path):
    """`fl-launch ... 2>&1 | head -1`: stdout and stderr on one pipe whose reader leaves after the first line;
    neither stream's later writes end the process (a BrokenPipeError at a stderr write did): it ends with its own
    exit code and nothing reaches the (gone) reader after the first line."""
    read_end, write_end = os.pipe()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", QUIET_PROBE, "2"], stdout=write_end, stderr=write_end, env=env,
                            cwd=REPO, stdin=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        first = reader.readline()
    code = proc.wait(timeout=60)
    assert first == b"first line\n"
    assert code == 7


# --- a real run: every connection to a client's SuperNode closed by the server side while they sit idle ------

def _peer_ports(port: int) -> set[int]:
    """The client ports of the established connections to ``port`` (seen from the client's end)."""
    return {int(m["lport"]) for m in SS_LINE.finditer(_ss("state", "established", f"( dport = :{port} )"))}


@pytest.mark.slow
def test_a_client_whose_idle_connections_the_server_closes_lives_and_its_rounds_are_aggregated(tmp_path, breakable):
    """While client 0's task trains, every connection to its SuperNode's Runtime API sits idle: the task host's
    (its AcquireTask connection, kept alive across the task) and the task's own. The test closes them all from
    the SuperNode's side (``ss -K``: the server's end destroyed, a reset to the client), as a keep-alive timeout
    or a dropped link does. The next calls (the task's reply, its output, the next AcquireTask) go on fresh
    connections: the client lives, both rounds are aggregated with 2 replies, no restart is recorded."""
    app = held_app(tmp_path)
    (tmp_path / "hold").touch()
    log_dir, tag = tmp_path / "logs", "t-idle-close"
    proc = start("fl-launch", "--app", str(app), "--client-num", "2", "--run-config", "num-server-rounds=2",
                 "--round-timeout", "90", "--kill-tag", tag, "--log-dir", str(log_dir), cwd=tmp_path)
    try:
        assert _wait(lambda: (tmp_path / "training").exists() or proc.poll() is not None, 240, every=0.05)
        assert proc.poll() is None, proc.stdout.read()
        [run_dir] = runs(log_dir)
        procs = run_json(run_dir)["processes"]
        [node] = [p for p in procs if p["role"] == "supernode" and p["client"] == 0]
        [worker] = [p for p in procs if p["role"] == "clientapp" and p["client"] == 0]
        port = node["port"]
        time.sleep(1.0)  # the host's last AcquireTask and the task's first calls are answered: all idle
        before = _peer_ports(port)
        assert before, "no connection to the SuperNode's Runtime API to close"
        killed = subprocess.run(["ss", "-K", "-tnH", "state", "established", f"( sport = :{port} )"],
                                capture_output=True, text=True, check=False).stdout
        assert {int(p) for p in re.findall(rf":{port}\s+\S+:(\d+)", killed)} >= before, (killed, before)
        assert not _peer_ports(port) & before  # the client's ends are reset: none of them is usable
        (tmp_path / "go").touch()
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            run("fl-finish", "--kill-tag", tag, timeout=60)
    info = run_json(run_dir)
    server = (run_dir / "server" / "serverapp.log").read_text()
    worker_log = (run_dir / "client_0" / "worker.log").read_text()
    assert proc.returncode == 0 and info["status"] == "finished", out[-3000:] + worker_log[-3000:]
    assert info["rounds_done"] == 2 and TRAIN_AGGREGATED.findall(server) == [("2", "0")] * 2, server[-3000:]
    assert not info.get("restarts"), info.get("restarts")
    assert TASK_EXIT.findall(worker_log) == []  # no task process of client 0 died
    assert "Failed to push" not in worker_log  # the task's reply and its output reached the SuperNode
    now = {(p["role"], p["client"]): p["pid"] for p in info["processes"] if p.get("client") is not None}
    assert now[("clientapp", 0)] == worker["pid"] and now[("supernode", 0)] == node["pid"]
    assert wait_until_nothing_tagged(tag) == []
