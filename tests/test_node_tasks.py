"""launcher.flower.node_tasks: the built-in app's client is one process, its SuperNode running its own tasks.

The unit tests run NodeTasks on a thread of this process with a stand-in for Flower's run_clientapp that registers
its exit handler as Flower's does (register_signal_handlers) and ends through the module's ``flwr_exit``; a handler
registered beforehand with Flower's global registry stands for the SuperNode's own (it stops its HTTP server). The
last test is a real run, judged by the processes the test sees while it runs.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from flwr.clientapp import ClientApp
from flwr.supercore.exit import exit_handler
from flwr.supercore.inflatable import inflatable_utils
from flwr.supernode.runtime import run_clientapp as run_clientapp_module

from launcher.flower import memory_growth, node_tasks
from launcher.flower.node_tasks import NodeTasks
from tests.helpers import run, run_json, runs, start

_kept: list = []


def _task(done: list, thread_ids: list):
    """A stand-in for run_clientapp: the token says what the task does."""

    def run_clientapp(runtime_api_address, token, insecure, runtime_dependency_install):
        thread_ids.append(threading.get_ident())
        run_clientapp_module.register_signal_handlers(event_type=None, exit_handlers=[lambda: done.append(token)])
        if token.startswith("grow"):
            ballast = bytearray(int(token[4:]) * 2**20)
            ballast[::4096] = b"x" * len(ballast[::4096])
            _kept.append(ballast)
        ClientApp.__call__(None, SimpleNamespace(metadata=SimpleNamespace(dst_node_id=4242)), None)  # the app's call
        if token == "sys-exit":
            raise SystemExit(3)
        if token == "raise":
            raise RuntimeError("not Flower's way, but a task may")
        run_clientapp_module.flwr_exit(7 if token == "fail" else 0)

    return run_clientapp


@pytest.fixture
def tasks(tmp_path, monkeypatch):
    """NodeTasks installed as a node installs it (Flower's names restored after the test)."""
    for name in ("RuntimeHttpClient", "register_signal_handlers", "flwr_exit", "install_from_fab", "push_task_output"):
        monkeypatch.setattr(run_clientapp_module, name, getattr(run_clientapp_module, name))
    monkeypatch.setattr(ClientApp, "__call__", lambda self, message, context: "the app's reply")
    monkeypatch.setattr(NodeTasks, "_route_logs", lambda self, thread: None)
    monkeypatch.setattr(inflatable_utils, "concurrent", inflatable_utils.concurrent)  # inline_moves' swap undone
    runner = NodeTasks(tmp_path / "worker.log", "127.0.0.1:1")
    runner.install(app=None, thread=threading.current_thread())
    done: list = []
    threads: list = []
    monkeypatch.setattr(run_clientapp_module, "run_clientapp", _task(done, threads))
    node_handler: list = []
    exit_handler.add_exit_handler(lambda: node_handler.append("the SuperNode's own exit handler ran"))
    yield runner, done, threads, node_handler
    exit_handler.registered_exit_handlers.clear()


def test_a_nodes_tasks_run_on_its_own_thread_with_only_their_own_exit_handlers(tasks):
    runner, done, threads, node_handler = tasks
    ends = [runner.run(token) for token in ("a", "fail", "b")]
    assert [e.code for e in ends] == [0, 7, 0] and all(e.note == "" for e in ends)
    assert threads == [threading.get_ident()] * 3  # in this process, on the calling thread
    assert done == ["a", "fail", "b"]  # each task's own exit handler ran once
    assert node_handler == []  # the SuperNode's were left alone (Flower's flwr_exit would have run them and exited)


def test_a_task_that_exits_or_raises_ends_the_task_not_the_node(tasks):
    runner, done, _, node_handler = tasks
    assert runner.run("sys-exit").code == 3
    assert runner.run("raise").code == 1  # Flower's run_clientapp catches an app's exception; anything else fails
    assert runner.run("a").code == 0 and done[-1] == "a"
    assert node_handler == []


def test_a_node_whose_memory_grew_past_the_limit_leaves_after_the_reply(tasks, monkeypatch):
    runner, done, *_ = tasks
    monkeypatch.setattr(memory_growth, "GROWTH_LIMIT_MIB", 64)  # the rule's own module (MemoryGrowth)
    told: list = []
    runner.on_leaving = lambda node: told.append((node, len(done)))
    assert runner.run("a").note == ""
    runner.leave_if_grown()  # nothing grew: the node stays
    grown = runner.run("grow120")
    assert grown.code == 0 and "memory grew" in grown.note and runner.leave_note == grown.note
    assert told == [(4242, 1)]  # its node id, told once its app replied, before the task's end (its exit handler)
    left = []
    monkeypatch.setattr(node_tasks.os, "_exit", left.append)
    runner.leave_if_grown()
    assert left == [node_tasks.EXIT_GREW]


def test_a_node_keeps_its_tasks_freed_heap_until_it_idles(tasks, monkeypatch):
    runner, *_ = tasks
    given_back: list = []
    monkeypatch.setattr(node_tasks, "give_back_task_heap", lambda: given_back.append(len(given_back)))
    monkeypatch.setattr(memory_growth, "give_back_freed_memory", lambda: given_back.append("after a task"))
    runner.idle()
    assert given_back == []  # nothing ran: nothing to give back
    runner.run("a")
    runner.run("b")
    assert given_back == []  # kept between tasks (MemoryGrowth measures with it kept)
    runner.idle()
    runner.idle()
    assert given_back == [0]  # once the node idled, once


_HEAP_CHURN = """
import resource, sys, threading
from launcher.flower.memory_growth import give_back_task_heap, keep_task_heap
keep_task_heap()
def task():  # a task's buffers, written, then freed: 8 MB in blocks of 256 kB (training steps'), or one 10 MB block
    size = int(sys.argv[2]) * 1024
    blocks = [bytearray(size) for _ in range(max(1, 8 * 2**20 // size))]
    for b in blocks:
        b[::4096] = b"x" * len(b[::4096])
def node():  # a node's tasks' thread: a task, then (idle) the heap given back or not, then the next task
    task()
    if sys.argv[1] == "idled":
        give_back_task_heap()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    task()
    print(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
thread = threading.Thread(target=node)
thread.start()
thread.join()
"""


@pytest.mark.skipif(not platform.libc_ver()[0] == "glibc", reason="glibc's malloc settings")
@pytest.mark.parametrize("block_kb", [256, 10 * 1024])
def test_a_kept_heap_spares_the_next_task_its_page_faults_until_the_node_idles(block_kb):
    """The kernel's count of a thread's minor faults (getrusage) in a task's second run on the thread of the
    first: 8 MB of buffers in blocks of 256 kB, or one of 10 MB (as an evaluation batch of 512 CIFAR images
    makes: a block a 4 MiB mapping threshold left to a mapping made anew every time). Kept (keep_task_heap),
    nearly none fault again; after an idle's give back, every page does (2,048 or 2,560 pages). glibc's settings
    from the environment are left out."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env["PYTHONPATH"] = str(root)
    faults = {how: int(subprocess.run([sys.executable, "-c", _HEAP_CHURN, how, str(block_kb)], cwd=root, env=env,
                                      capture_output=True, text=True, timeout=60, check=True).stdout)
              for how in ("kept", "idled")}
    assert faults["kept"] < 200, faults
    assert faults["idled"] > 1500, faults


def test_a_built_in_apps_client_is_one_process_that_runs_its_tasks(tmp_path):
    """A real run: every process of a client the test sees while the run goes on (run.json's records, their
    children) is one per client, with no children, where a task host shows a host and its worker; each client's
    worker.log has its tasks' lines (3 train tasks and the final evaluation)."""
    seen: dict[int, set[int]] = {}
    proc = start("fl-launch", "--client-num", "2", "--rounds", "3", "--log-dir", str(tmp_path))
    try:
        while proc.poll() is None:
            records = []
            for run_dir in runs(tmp_path):
                try:
                    records = [p for p in run_json(run_dir).get("processes", []) if p["client"] is not None]
                except (OSError, ValueError, KeyError):
                    pass
            for record in records:
                try:
                    pids = {record["pid"], *(c.pid for c in psutil.Process(record["pid"]).children(recursive=True))}
                except psutil.Error:
                    continue
                seen.setdefault(record["client"], set()).update(pids)
            time.sleep(0.05)
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "status: finished" in out, out
    assert sorted(seen) == [0, 1] and all(len(pids) == 1 for pids in seen.values()), seen
    info = run_json(runs(tmp_path)[0])
    assert sorted((p["role"], p["client"]) for p in info["processes"] if p["client"] is not None) == [
        ("client", 0), ("client", 1)]
    logs = [(runs(tmp_path)[0] / f"client_{i}" / "worker.log").read_text() for i in range(2)]
    assert [len(re.findall(r" task \d+: .* using [\d.]+ CPU-s", log)) for log in logs] == [4, 4], logs


EXITING_NET = '''
import os
import sys

from simulator.model import LeNet5


class ExitingNet(LeNet5):
    """LeNet5 whose first training step in client 0's process calls sys.exit(5), once (a file marks it)."""

    def forward(self, x):
        marker = os.path.join(os.path.dirname(__file__), "exited-once")  # the test's folder, where this file is
        if self.training and os.path.basename(os.getcwd()) == "client_0" and not os.path.exists(marker):
            open(marker, "w").close()
            sys.exit(5)
        return super().forward(x)
'''
ROUND_END = re.compile(r"\[round\] iteration:(\d+)/2 end replies:(\d+) failures:(\d+) .* time:([\d.]+)s")


def test_a_task_that_calls_sys_exit_is_its_failed_reply_and_the_client_goes_on(tmp_path):
    """A real run whose one training task calls sys.exit: that task's reply is its error at once (not a silence the
    round waits out: the round timeout is 60 s), and the same client replies in round 2, no restart."""
    (tmp_path / "exiting.py").write_text(EXITING_NET)
    done = run("fl-launch", "--client-num", "2", "--rounds", "2", "--local-epochs", "1", "--min-clients", "1",
               "--round-timeout", "60", "--model", "exiting:ExitingNet", "--log-dir", "logs", cwd=tmp_path,
               timeout=400)
    assert (tmp_path / "exited-once").exists(), done.stdout[-2000:] + done.stderr[-2000:]
    run_dir = runs(tmp_path / "logs")[0]
    ends = [(int(r), int(n), int(f), float(t)) for r, n, f, t in
            ROUND_END.findall((run_dir / "server" / "server.log").read_text())]
    assert [(r, n, f) for r, n, f, _ in ends] == [(1, 1, 1), (2, 2, 0)], ends
    assert ends[0][3] < 30, ends  # the error came back: nobody waited for the round timeout
    info = run_json(run_dir)
    assert done.returncode == 0 and info["status"] == "finished", done.stdout[-2000:] + done.stderr[-2000:]
    assert not info.get("restarts")
    logs = "".join((run_dir / f"client_{i}" / "worker.log").read_text() for i in range(2))
    assert "the ClientApp called sys.exit(5)" in logs


def test_the_tasks_loop_calls_idle_once_no_task_came_for_idle_poll_seconds(tmp_path, monkeypatch):
    """serve_tasks calls ``idle()`` on its own thread at a wake IDLE_POLL s or more after the last task ended (the
    bell bound or not), never right after a task. Judged by the clock at each call."""
    from contextlib import nullcontext

    from flwr.proto.runtime_pb2 import AcquireTaskResponse

    from launcher.flower import warm_clientapp
    from launcher.flower.task_worker import TaskEnd

    monkeypatch.setattr(warm_clientapp, "IDLE_POLL", 0.3)
    monkeypatch.setattr(warm_clientapp, "UNRUNG_POLL", 0.05)
    events: list = []
    tasks_at = {0, 12}  # the loop's calls that get a task

    class Client:
        calls = 0

        def AcquireTask(self, request):  # noqa: N802 - Flower's name
            Client.calls += 1
            if Client.calls - 1 in tasks_at:
                res = AcquireTaskResponse(token="t")
                res.task.task_id = Client.calls
                return res
            return AcquireTaskResponse()

    class Runner:
        def ready(self):
            pass

        def run(self, token):
            events.append(("task", time.monotonic(), threading.current_thread()))
            return TaskEnd(code=0, cpu=0.0)

    for bound in (True, False):
        events.clear()
        Client.calls = 0
        bell = SimpleNamespace(bound=bound, wait=lambda timeout: time.sleep(timeout / (6 if bound else 1)))
        slots = SimpleNamespace(held=nullcontext)
        monkeypatch.setattr(warm_clientapp, "kept_claimed", lambda client, token: nullcontext())
        warm_clientapp.serve_tasks(Client(), Runner(), bell, slots, tmp_path, out=open(os.devnull, "w"),
                                   stopping=lambda: Client.calls >= 30,
                                   idle=lambda: events.append(("idle", time.monotonic(), threading.current_thread())))
        kinds = [kind for kind, _, _ in events]
        assert kinds[0] == "task" and "idle" in kinds and kinds.count("task") == 2, kinds
        assert {thread for _, _, thread in events} == {threading.current_thread()}
        last_task = None
        for kind, at, _ in events:
            if kind == "task":
                last_task = at
            else:
                assert at - last_task >= 0.3  # IDLE_POLL since the last task, not before


def test_a_task_lines_ran_is_the_time_its_compute_slot_was_held_not_until_the_line_was_written(tmp_path, monkeypatch):
    """worker.log's "ran" ends when the slot is freed: ringing the node afterwards (slow here: 0.3 s) is not in it.
    Judged by the clock the slot itself records as it is taken and freed (tests/test_gpu_clients reads these spans
    to show two clients on one GPU never compute at once)."""
    import io
    from contextlib import contextmanager, nullcontext

    from flwr.proto.runtime_pb2 import AcquireTaskResponse

    from launcher.flower import warm_clientapp
    from launcher.flower.task_worker import TaskEnd

    held: list[tuple[float, float]] = []

    @contextmanager
    def slot_held():
        taken = time.time()
        try:
            yield
        finally:
            held.append((taken, time.time()))

    class Client:
        calls = 0

        def AcquireTask(self, request):  # noqa: N802 - Flower's name
            Client.calls += 1
            res = AcquireTaskResponse(token="t")
            res.task.task_id = Client.calls
            return res

    class Runner:
        def ready(self):
            pass

        def run(self, token):
            time.sleep(0.2)
            return TaskEnd(code=0, cpu=0.0)

    monkeypatch.setattr(warm_clientapp, "kept_claimed", lambda client, token: nullcontext())
    monkeypatch.setattr(warm_clientapp, "wake", lambda folder, name: time.sleep(0.3))
    out = io.StringIO()
    warm_clientapp.serve_tasks(Client(), Runner(), SimpleNamespace(bound=True, wait=lambda timeout: None),
                               SimpleNamespace(held=slot_held), tmp_path, out=out, stopping=lambda: Client.calls >= 2)
    ran = [float(x) for x in re.findall(r"ran ([\d.]+) s", out.getvalue())]
    assert len(ran) == len(held) == 2
    for line_ran, (taken, freed) in zip(ran, held):
        assert abs(line_ran - (freed - taken)) < 0.1, (ran, held)  # the ring's 0.3 s is not in it
