"""One process that imports torch, Flower and the app once, then forks every client process (and the ServerApp).

    table.start_fork_server(run_dir, env)       # ProcessTable: logs to server/forkserver.log
    table.fork(Role.CLIENTAPP, "launcher.flower.warm_clientapp", [...], log=..., env=..., cwd=...)
    fork_task(PLAIN_LOGS, ["flwr-serverapp", ...])   # in the run's SuperExec (launcher.flower.forked_tasks)

A forked process runs ``python -m MODULE ARGS`` as if started fresh (its own session, its own cwd and
environment; stdout and stderr to its log, or the asker's own stdin, stdout and stderr where it sends them:
contract.fork_requests), but the interpreter, torch and Flower it would import are already there: their pages
are shared copy-on-write between all clients instead of loaded once per process, and nothing imports torch
twice. Each request is forked twice: the middle process exits at once, so the new process is re-parented to the
nearest child subreaper, the supervisor (or device agent), which reaps it and sees its exit status like any
child's. The server listens on an abstract Unix socket named after the run folder and serves only its own user
(the kernel's peer credentials: another user's request is closed unread); it answers one request at a time, each
within REQUEST_TIMEOUT_S, with the new PID, or PID 0 and why for a request it started nothing for (none where a
process may have started).
"""
from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import os
import runpy
import signal
import socket
import struct
import sys
import time
import traceback

from contract.fork_requests import address, read_request
from launcher.flower.imports_frozen import imports_frozen
from launcher.processes.entry_modules import BUILT_IN_PRELOAD, PLAIN_LOGS, QUICK_SUPERNODE, WARM_CLIENTAPP

PRELOAD = ("torch", "flwr.supernode.cli", "flwr.supernode.runtime.run_clientapp",
           QUICK_SUPERNODE, WARM_CLIENTAPP, BUILT_IN_PRELOAD.split(":")[0],
           # a ServerApp the run's SuperExec asks for (launcher.flower.forked_tasks): ~0.05 CPU-s more here
           PLAIN_LOGS, "flwr.superlink.cli.flwr_serverapp", "simulator.server_app")
# What a SuperNode imports only once it runs (its HTTP server; the OpenSSL backend its node key signs with, ~7 ms
# a client): shared too, when present.
PRELOAD_IF_PRESENT = ("flwr.supernode.main", "uvicorn", "uvicorn.loops.uvloop", "uvicorn.protocols.http.httptools_impl",
                      "uvicorn.protocols.http.auto", "uvicorn.protocols.websockets.auto", "uvicorn.lifespan.on",
                      "uvicorn.loops.auto", "uvloop", "httptools", "httpcore", "h11", "trio", "websockets",
                      "cryptography.hazmat.backends.openssl")
REQUEST_TIMEOUT_S = 5.0  # an asker that stalls mid-request does not hold the server
REFUSAL_DRAIN_S = 0.1  # after a refusal, how long the rest of the request is taken before the socket is closed
# Run once, in order, after the imports: state every forked process would otherwise build for itself.
WARM_UPS = ("simulator.training:warm_up", f"{QUICK_SUPERNODE}:prebuild_runtime_app")


def _name_process(name: str) -> None:
    """What ps, top and psutil's name() show (the command line stays the fork server's)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _become(request: dict, stdio: list[int], servers: list[socket.socket]) -> None:
    """In the grandchild: turn into ``python -m module args``; never returns."""
    code = 1
    try:
        for server_socket in servers:  # the listener and the request's connection are the server's, not its
            server_socket.close()
        os.setsid()
        _name_process(request.get("name") or request["module"].rsplit(".", 1)[-1])
        for signum in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, as a fresh Python has it
        # As a fresh Python has it: a write to a connection the peer closed raises BrokenPipeError, which
        # Flower's HTTP clients retry on a fresh connection, instead of killing the process.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        if len(stdio) == 3:  # the asker's own stdin, stdout and stderr, as a child it started would inherit them
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
            for fd in set(stdio) - {0, 1, 2}:
                os.close(fd)
        else:
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            os.close(null)
        os.chdir(request["cwd"])
        if request.get("exact_env"):  # it stands for a fresh Popen with this environment (a ServerApp)
            os.environ.clear()
            os.environ.update(request["env"])
            _threads_as_started(os.environ.get("OMP_NUM_THREADS", ""))
        else:
            os.environ.update(request["env"])
        sys.argv = [request["module"], *request["args"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 (the process's own log gets the traceback)
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _threads_as_started(omp_threads: str) -> None:
    """torch's threads as a fresh process with this environment would have them (the server keeps one)."""
    if omp_threads.isdigit() and int(omp_threads) > 0:
        sys.modules["torch"].set_num_threads(int(omp_threads))


class NothingForked(Exception):
    """A pipe or fork the kernel refused: no process was started."""


NOT_FORKED = b"0"  # what a middle process whose fork failed writes (no word at all: it may have forked)


def _fork_twice(request: dict, stdio: list[int], servers: list[socket.socket]) -> int:
    try:
        read_end, write_end = os.pipe()
    except OSError as err:
        raise NothingForked(repr(err)) from err
    try:
        middle = os.fork()
    except OSError as err:
        os.close(read_end)
        os.close(write_end)
        raise NothingForked(repr(err)) from err
    if middle == 0:
        try:
            os.close(read_end)
            try:
                pid = os.fork()
            except OSError:
                os.write(write_end, NOT_FORKED)
                raise
            if pid == 0:
                os.close(write_end)
                _become(request, stdio, servers)
            os.write(write_end, str(pid).encode())
        finally:
            os._exit(0)  # never back into the server's loop, whatever failed (the server then reads no PID)
    os.close(write_end)
    data = os.read(read_end, 32)
    os.close(read_end)
    if data == NOT_FORKED:
        raise NothingForked("the second fork failed")
    if not data:  # the middle ended (killed?) without a word: the process may run, so no answer is given
        raise ChildProcessError("the middle process ended without saying whether it forked")
    return int(data)  # the middle's exit (the unmapping of its copy) runs while the next request is served


def _reap_middles() -> None:
    """The middle processes that have exited (this server's only children)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve_forks(run_dir: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address(run_dir))  # after the imports: a connect that succeeds means ready
    listener.listen(64)
    print(f"fork server ready, pid {os.getpid()}", flush=True)
    while True:
        conn, _ = listener.accept()
        stdio: list[int] = []
        tell_refusal = True  # until the fork: nothing started, which the asker is told
        with conn:
            try:
                conn.settimeout(REQUEST_TIMEOUT_S)
                if (asker := _asker_uid(conn)) != os.getuid():  # the socket is visible to every local user
                    tell_refusal = False  # another user: closed at once, unread and unanswered
                    raise PermissionError(f"a request from uid {asker} refused")
                request, stdio = read_request(conn)
                if request is None:  # a readiness probe
                    continue
                if request.get("stdio") and len(stdio) != 3:
                    raise ValueError(f"{len(stdio)} descriptors came with a request for three")
                tell_refusal = False  # from here a failure may follow a fork: no answer (the asker reads it lost)
                pid = _fork_twice(request, stdio, [listener, conn])
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            except Exception as err:  # noqa: BLE001 (a bad request never ends the server)
                print(f"fork server: request failed: {err!r}", file=sys.stderr, flush=True)
                if tell_refusal or isinstance(err, NothingForked):  # the asker may start it another way
                    _refuse(conn, err)
            finally:
                for fd in stdio:
                    os.close(fd)
        _reap_middles()


def _refuse(conn: socket.socket, err: Exception) -> None:
    """Answer a request that started nothing (PID 0, and why), if the asker still listens; then take what it still
    sends, for a while: a Unix socket closed with unread bytes resets the other end, which may not have read the
    answer yet (the descriptors such bytes carry are closed by the kernel)."""
    deadline = time.monotonic() + REFUSAL_DRAIN_S
    try:
        conn.sendall(json.dumps({"pid": 0, "error": repr(err)}).encode() + b"\n")
        conn.shutdown(socket.SHUT_WR)
        while (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            if not conn.recv(65536):
                return
    except OSError:
        pass


def _asker_uid(conn: socket.socket) -> int:
    """The user id of the process at the other end (the kernel's SO_PEERCRED: pid, uid, gid)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    # The collector stays off what is imported (launcher.flower.imports_frozen): a collection writes to every
    # object it scans, and each written page would stop being shared with the forked processes.
    with imports_frozen():
        for module in PRELOAD:
            importlib.import_module(module)
        for module in PRELOAD_IF_PRESENT:
            try:
                importlib.import_module(module)
            except ImportError:
                pass
        torch = sys.modules["torch"]
        torch.set_num_threads(1)  # no thread pool exists to be lost across fork
        for warm_up in WARM_UPS:
            module, function = warm_up.split(":")
            getattr(importlib.import_module(module), function)()
    serve_forks(args.run_dir)


if __name__ == "__main__":
    main()
