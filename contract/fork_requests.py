"""Asking a run's fork server (launcher.processes.fork_server) for a process: where it listens, what a request says.

    ref = ForkServer(pid=4120, run_dir=Path("logs/20261207-1830-ab12"))
    env[FORK_SERVER_ENV] = ref.to_env()            # the supervisor, for the SuperLink and so its SuperExec
    ref = ForkServer.from_env(os.environ)          # in the SuperExec: None where the run has none
    if wait_ready(ref.run_dir, 60, alive=ref.alive):
        pid = request_fork(ref.run_dir, "launcher.flower.plain_logs", ["flwr-serverapp", ...], log="",
                           env=dict(os.environ), cwd=os.getcwd(), stdio=(0, 1, 2), name="flwr-serverapp",
                           exact_env=True)

The server listens on a Linux abstract Unix socket named after the run folder. A request is one JSON line; with
``stdio`` it carries three open file descriptors (SCM_RIGHTS) that become the new process's stdin, stdout and
stderr, as a child started by ``subprocess.Popen`` would inherit its parent's. The reply is the new PID.
Here, not in the server's module, so a process that imports nothing heavy (the SuperExec) can ask too.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

FORK_SERVER_ENV = "FL_LAUNCH_FORK_SERVER"  # "PID RUN_DIR" of the run's fork server, for its SuperExec
MAX_REQUEST = 1 << 20  # bytes of one request line (an environment is a few KiB)


def address(run_dir: str | Path) -> bytes:
    key = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:24]
    return b"\0fl-launch-forks-" + key.encode()


@dataclass(frozen=True)
class ForkServer:
    """A run's fork server as another process of the run finds it."""

    pid: int
    run_dir: Path

    def to_env(self) -> str:
        return f"{self.pid} {self.run_dir}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ForkServer | None:
        pid, _, run_dir = environ.get(FORK_SERVER_ENV, "").partition(" ")
        return cls(int(pid), Path(run_dir)) if pid.isdigit() and run_dir else None

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class RequestLost(OSError):
    """The request went out but no answer came back: the process may have started."""


class NotStarted(OSError):
    """The fork server answered that it started nothing (and why): the asker may start it another way."""


def request_fork(run_dir: str | Path, module: str, args: list[str], log: str, env: dict[str, str],
                 cwd: str, timeout: float = 30.0, stdio: tuple[int, int, int] | None = None,
                 name: str | None = None, exact_env: bool = False) -> int:
    """Ask the run's fork server for ``python -m module args``; returns its PID. OSError when no server took the
    request, NotStarted when it said it started nothing, RequestLost when it took the request and its answer was
    lost.

    ``log``: the file its stdout and stderr append to, unless ``stdio`` gives three descriptors of this process
    for its stdin, stdout and stderr. ``env``: added to the server's environment, or with ``exact_env`` the whole
    environment, and torch's threads set as a fresh process with it would have them. ``name``: what ps shows
    (else the module's last part)."""
    request = {"module": module, "args": args, "log": log, "env": env, "cwd": cwd, "name": name,
               "exact_env": exact_env, "stdio": stdio is not None}
    line = json.dumps(request).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address(run_dir))
        try:
            if stdio is None:
                sock.sendall(line)
            else:
                sent = socket.send_fds(sock, [line], list(stdio))
                if sent < len(line):  # a send of nothing to a server that has answered and closed fails (EPIPE)
                    sock.sendall(line[sent:])
            reply = json.loads(sock.makefile("rb").readline() or b"null")
        except (OSError, ValueError) as err:
            raise RequestLost(f"the fork server took the request for {module} and did not answer: {err}") from err
    pid = reply.get("pid") if isinstance(reply, dict) else None
    if pid == 0 and reply.get("error"):
        raise NotStarted(f"the fork server did not start {module}: {reply['error']}")
    if not isinstance(pid, int) or pid <= 0:
        raise RequestLost(f"the fork server gave no PID for {module}: {reply!r}")
    return pid


def read_request(conn: socket.socket) -> tuple[dict | None, list[int]]:
    """The server's side: one request and the descriptors it carried (None for a readiness probe). Raises
    ValueError or OSError for a request it cannot read, its descriptors closed."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    try:
        while data and not data.endswith(b"\n"):
            if len(data) > MAX_REQUEST:
                raise ValueError(f"a request of over {MAX_REQUEST} bytes")
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        request = json.loads(data) if data.strip() else None
        if request is not None and not isinstance(request, dict):
            raise ValueError("a request that is not a JSON object")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def wait_ready(run_dir: str | Path, timeout: float, alive: Callable[[], bool] = lambda: True) -> bool:
    """True once the run's fork server accepts connections (it binds only after its imports)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            try:
                sock.connect(address(run_dir))
                return True
            except OSError:
                pass
        time.sleep(0.1)
    return False
