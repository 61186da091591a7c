"""A ServerApp the SuperExec starts, forked by the run's fork server (launcher.flower.forked_tasks).

The oracles are the kernel's: what the forked process itself wrote to the descriptors it was handed, the
environment and torch threads it saw, its name in /proc, its command line (the fork server's: forked, not run
fresh); the wall clock only where no fork server can answer.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from contract.fork_requests import (
    FORK_SERVER_ENV,
    ForkServer,
    NotStarted,
    RequestLost,
    address,
    read_request,
    request_fork,
    wait_ready,
)
from launcher.flower.forked_tasks import fork_task

REPO = Path(__file__).resolve().parent.parent

PROBE = '''"""Forked as a flwr-serverapp would be: says what it was given."""
import json
import os
import sys

warm = "torch" in sys.modules  # already there: forked from the fork server, not started fresh
import torch

told = {"warm": warm, "name": open("/proc/self/comm").read().strip(),
        "cmdline": open("/proc/self/cmdline").read().replace("\\0", " "), "argv": sys.argv[1:],
        "env": dict(os.environ), "threads": torch.get_num_threads(), "cwd": os.getcwd(),
        "streams": [os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)]}
print("to stdout", flush=True)
print("to stderr", file=sys.stderr, flush=True)
with open(os.environ["PROBE_OUT"] + ".part", "w") as out:
    json.dump(told, out)
os.rename(os.environ["PROBE_OUT"] + ".part", os.environ["PROBE_OUT"])
'''


@pytest.fixture(scope="module")
def fork_server(tmp_path_factory):
    """A real fork server for a run folder, the probe module importable by it."""
    root = tmp_path_factory.mktemp("forks")
    (root / "serverapp_probe.py").write_text(PROBE)
    run_dir = root / "run"
    (run_dir / "server").mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(root), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", ONLY_IN_THE_SERVER="yes")
    server = subprocess.Popen([sys.executable, "-m", "launcher.processes.fork_server", "--run-dir", str(run_dir)],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_ready(run_dir, timeout=180, alive=lambda: server.poll() is None)
        yield ForkServer(server.pid, run_dir)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _open_descriptors_settle_at(fds: Path, count: int, timeout: float = 10) -> bool:
    """Whether the server's open descriptors come back to ``count`` (it closes its end of a refused request once
    the asker has closed its own)."""
    deadline = time.monotonic() + timeout
    while len(list(fds.iterdir())) != count and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(list(fds.iterdir())) == count


def _told(path: Path, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_a_serverapp_is_forked_with_the_superexecs_environment_folder_and_streams(fork_server, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setenv(FORK_SERVER_ENV, fork_server.to_env())
    monkeypatch.setenv("ONLY_IN_THE_SUPEREXEC", "here")
    monkeypatch.delenv("ONLY_IN_THE_SERVER", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the server keeps torch at one thread; a fresh process: two
    monkeypatch.setenv("PROBE_OUT", str(tmp_path / "told.json"))
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "superexec.log"
    args = ["flwr-serverapp", "--serverappio-api-address", "127.0.0.1:1", "--token", "t"]
    with open(log, "ab") as stdout:
        task = fork_task("serverapp_probe", args, stdout=stdout, stderr=stdout)
    assert task is not None and task.args == args
    told = _told(tmp_path / "told.json")
    assert told["argv"] == args  # what plain_logs is given: the command, then its arguments
    assert told["env"] == dict(os.environ)  # the SuperExec's, exactly: nothing of the server's own
    assert told["threads"] == 2
    assert Path(told["cwd"]) == tmp_path
    assert told["streams"][1:] == [str(log)] * 2 and told["streams"][0] == os.readlink("/proc/self/fd/0")
    assert log.read_text().splitlines() == ["to stdout", "to stderr"]
    assert told["warm"] and "launcher.processes.fork_server" in told["cmdline"]  # forked, not run fresh
    assert told["name"] == "flwr-serverapp"  # what ps and psutil's name() show


def test_a_serverapp_whose_output_flower_suppresses_writes_to_dev_null(fork_server, tmp_path, monkeypatch):
    monkeypatch.setenv(FORK_SERVER_ENV, fork_server.to_env())
    monkeypatch.setenv("PROBE_OUT", str(tmp_path / "told.json"))
    task = fork_task("serverapp_probe", ["flwr-serverapp", "--token", "t"], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    assert task is not None
    assert _told(tmp_path / "told.json")["streams"][1:] == [os.devnull] * 2


@pytest.mark.parametrize("command, kwargs", [
    (["flwr-simulation", "--token", "t"], {}),  # Ray's runtime: started fresh
    (["flwr-serverapp", "--token", "t"], {"stdout": subprocess.PIPE}),  # a pipe back to the SuperExec
    (["flwr-serverapp", "--token", "t"], {"env": {}}),  # anything more than the three streams
])
def test_what_is_not_a_plain_serverapp_start_is_left_to_popen(command, kwargs, monkeypatch):
    monkeypatch.setenv(FORK_SERVER_ENV, f"{os.getpid()} /nonexistent")  # alive, but would never answer
    started = time.monotonic()
    assert fork_task("serverapp_probe", command, **kwargs) is None
    assert time.monotonic() - started < 1


def test_without_a_fork_server_or_with_a_dead_one_the_serverapp_starts_fresh_at_once(monkeypatch, tmp_path):
    monkeypatch.delenv(FORK_SERVER_ENV, raising=False)
    assert fork_task("serverapp_probe", ["flwr-serverapp"]) is None
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    monkeypatch.setenv(FORK_SERVER_ENV, ForkServer(gone.pid, tmp_path).to_env())
    started = time.monotonic()
    assert fork_task("serverapp_probe", ["flwr-serverapp"]) is None
    assert time.monotonic() - started < 1  # not READY_TIMEOUT_S: the server's PID is gone


def test_a_fork_server_that_never_answers_is_waited_for_once_then_not_asked_again(monkeypatch, tmp_path):
    """Flower voids a claimed ServerApp task after 30 s: the wait is bounded, and paid once."""
    import launcher.flower.forked_tasks as forked_tasks

    monkeypatch.setattr(forked_tasks, "READY_TIMEOUT_S", 0.5)
    monkeypatch.setenv(FORK_SERVER_ENV, ForkServer(os.getpid(), tmp_path).to_env())  # alive, never listening
    started = time.monotonic()
    assert fork_task("serverapp_probe", ["flwr-serverapp"]) is None
    first = time.monotonic() - started
    started = time.monotonic()
    assert fork_task("serverapp_probe", ["flwr-serverapp"]) is None
    assert 0.5 <= first < 3 and time.monotonic() - started < 0.1


@contextmanager
def fake_fork_server(run_dir: Path, answer: bytes | None):
    """A listener at the run's fork-server address that reads each request as the server does and records its
    args (readiness probes aside), then sends ``answer``, or closes without one (None); closed on exit."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address(run_dir))
    listener.listen(8)
    asked: list[list[str]] = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                request, fds = read_request(conn)
                for fd in fds:
                    os.close(fd)
                if request is not None:
                    asked.append(request["args"])
                    if answer is not None:
                        conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield asked
    finally:
        listener.close()


def test_a_request_taken_and_not_answered_starts_nothing_fresh(monkeypatch, tmp_path):
    """The fork server took the request and its answer was lost: the ServerApp may be running, and a second one
    would find the task taken and fail the run, so the caller gets a handle without a PID, not None (Popen)."""
    monkeypatch.setenv(FORK_SERVER_ENV, ForkServer(os.getpid(), tmp_path).to_env())
    with fake_fork_server(tmp_path, answer=None) as asked:
        task = fork_task("serverapp_probe", ["flwr-serverapp", "--token", "t"])
    assert task is not None and task.pid is None
    assert asked == [["flwr-serverapp", "--token", "t"]]


def test_a_fork_server_that_answers_it_started_nothing_leaves_the_serverapp_to_start_fresh(monkeypatch, tmp_path):
    """An answer of PID 0 (and why): request_fork raises NotStarted, not RequestLost; fork_task returns None (the
    caller starts it fresh) and the server is asked again next time (it answered)."""
    monkeypatch.setenv(FORK_SERVER_ENV, ForkServer(os.getpid(), tmp_path).to_env())
    refusal = b'{"pid": 0, "error": "OSError(11, \'Resource temporarily unavailable\')"}\n'
    with fake_fork_server(tmp_path, answer=refusal) as asked:
        with pytest.raises(NotStarted, match="Resource temporarily unavailable") as refused:
            request_fork(tmp_path, "serverapp_probe", [], log=os.devnull, env={}, cwd="/", timeout=30)
        assert not isinstance(refused.value, RequestLost)
        assert fork_task("serverapp_probe", ["flwr-serverapp", "--token", "a"]) is None
        assert fork_task("serverapp_probe", ["flwr-serverapp", "--token", "b"]) is None
    assert asked == [[], ["flwr-serverapp", "--token", "a"], ["flwr-serverapp", "--token", "b"]]


def test_an_answer_without_a_pid_or_a_reason_is_read_as_lost(monkeypatch, tmp_path):
    """{"pid": 0} without why: the server could not tell whether the process started (its middle process ended
    without a word), so the caller must not start a second one."""
    monkeypatch.setenv(FORK_SERVER_ENV, ForkServer(os.getpid(), tmp_path).to_env())
    with fake_fork_server(tmp_path, answer=b'{"pid": 0}\n') as asked:
        with pytest.raises(RequestLost):
            request_fork(tmp_path, "serverapp_probe", [], log=os.devnull, env={}, cwd="/", timeout=30)
        task = fork_task("serverapp_probe", ["flwr-serverapp", "--token", "t"])
    assert task is not None and task.pid is None
    assert asked == [[], ["flwr-serverapp", "--token", "t"]]


PIDS_CGROUP = Path("/sys/fs/cgroup/pids")


@pytest.fixture
def pids_group(fork_server, tmp_path):
    """A pids cgroup (v1) of its own for the fork server; on the way out the server goes back where it was and the
    group is removed once the middle process a refused fork left in it is reaped (the server reaps its middles
    after each request it serves: one is asked for here)."""
    if os.getuid() != 0 or not (PIDS_CGROUP / "cgroup.procs").exists():
        pytest.skip("needs root and the pids cgroup (v1) to limit the server's forks")
    home = PIDS_CGROUP / next(line.split(":", 2)[2].strip().lstrip("/")
                              for line in Path(f"/proc/{fork_server.pid}/cgroup").read_text().splitlines()
                              if line.split(":", 2)[1] == "pids")
    group = PIDS_CGROUP / f"fl-launch-test-{os.getpid()}"
    try:
        group.mkdir()
    except OSError as err:
        pytest.skip(f"cannot make a pids cgroup here: {err}")
    try:
        yield group
    finally:
        (home / "cgroup.procs").write_text(str(fork_server.pid))
        (group / "pids.max").write_text("max")
        deadline = time.monotonic() + 30
        while (group / "cgroup.procs").read_text().split() and time.monotonic() < deadline:
            request_fork(fork_server.run_dir, "serverapp_probe", ["reap"], log=os.devnull,
                         env={"PROBE_OUT": str(tmp_path / "reaped.json")}, cwd="/", timeout=30)
            time.sleep(0.2)
        group.rmdir()


@pytest.mark.parametrize("room, said", [(0, "Resource temporarily unavailable"), (1, "the second fork failed")])
def test_a_fork_the_kernel_refuses_is_answered_started_nothing_and_the_server_goes_on(fork_server, pids_group,
                                                                                     tmp_path, room, said):
    """The fork server in a pids cgroup with room for no more tasks (its own fork refused: EAGAIN) or for one (its
    middle process's fork refused): the request is answered NotStarted and why, no descriptor is left open in the
    server, and once the limit is gone the next request is forked."""
    fds = Path(f"/proc/{fork_server.pid}/fd")
    before = len(list(fds.iterdir()))
    (pids_group / "cgroup.procs").write_text(str(fork_server.pid))
    (pids_group / "pids.max").write_text(str(int((pids_group / "pids.current").read_text()) + room))
    with pytest.raises(NotStarted, match=said):
        request_fork(fork_server.run_dir, "serverapp_probe", [], log=str(tmp_path / "log"),
                     env={"PROBE_OUT": str(tmp_path / "told.json")}, cwd="/", timeout=30)
    assert _open_descriptors_settle_at(fds, before)  # the pipe made for the fork closed too
    assert not (tmp_path / "told.json").exists()
    (pids_group / "pids.max").write_text("max")
    request_fork(fork_server.run_dir, "serverapp_probe", ["again"], log=str(tmp_path / "log"),
                 env={"PROBE_OUT": str(tmp_path / "told.json")}, cwd="/", timeout=30)
    assert _told(tmp_path / "told.json")["argv"] == ["again"]


def test_the_fork_server_refuses_another_users_request(fork_server, tmp_path):
    """Its socket is in the abstract namespace, reachable by every local user: only its own user's requests are
    served (the kernel's peer credentials)."""
    if os.getuid() != 0:
        pytest.skip("needs root to ask as another user")
    out = tmp_path / "told.json"
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # as user nobody: what any other local user could send
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            try:
                request_fork(fork_server.run_dir, "serverapp_probe", [], log=os.devnull,
                             env={"PROBE_OUT": str(out)}, cwd="/", timeout=30)
                os.write(write_end, b"started")
            except OSError as err:
                os.write(write_end, f"refused {type(err).__name__}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as said:
        answer = said.read().decode()
    os.waitpid(child, 0)
    time.sleep(1.0)
    assert answer.startswith("refused"), answer  # closed unread: nothing runs as the server's user
    assert not out.exists()


def test_the_fork_server_closes_every_descriptor_it_is_sent(fork_server, tmp_path, monkeypatch):
    """A request with three descriptors, one with two, one whose line is not JSON, one that is not a JSON object:
    the last three are answered "nothing started" (PID 0, and why), and none leaves a descriptor open in the
    server."""
    fds = Path(f"/proc/{fork_server.pid}/fd")
    before = len(list(fds.iterdir()))
    monkeypatch.setenv("PROBE_OUT", str(tmp_path / "told.json"))
    with open(os.devnull, "r+b") as null:
        request_fork(fork_server.run_dir, "serverapp_probe", [], log=str(tmp_path / "log"), env=dict(os.environ),
                     cwd=str(tmp_path), stdio=(null.fileno(),) * 3)
        for line, sent in ((json.dumps({"module": "serverapp_probe", "args": [], "log": "", "env": {},
                                        "cwd": "/", "stdio": True}), 2), ("not json", 3), ("[1, 2]", 3)):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(30)
                sock.connect(address(fork_server.run_dir))
                socket.send_fds(sock, [line.encode() + b"\n"], [null.fileno()] * sent)
                answer = json.loads(sock.makefile("rb").readline())
                assert answer["pid"] == 0 and answer["error"], answer  # refused, and said why
    assert _told(tmp_path / "told.json")["argv"] == []
    assert _open_descriptors_settle_at(fds, before)
