"""launcher.flower.task_worker: a forked worker runs a user app's tasks (one per task, or one after another).

The worker is real (forked from this test's process); the task is a stand-in for Flower's run_clientapp
that ends as Flower's does, through the module's ``flwr_exit`` after its exit handlers, and records the
PID that ran it. The built-in app's tasks run in its node's own process (tests/test_node_tasks.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from flwr.supercore.exit import add_exit_handler
from flwr.supernode.runtime import run_clientapp as run_clientapp_module

from launcher.flower import memory_growth, task_worker
from launcher.flower.task_worker import TaskWorker


def _task(record: Path):
    """A stand-in for run_clientapp: the token says what the task does."""

    def run_clientapp(runtime_api_address, token, insecure, runtime_dependency_install):
        with record.open("a") as out:
            out.write(f"{token} {os.getpid()}\n")
        add_exit_handler(lambda: record.with_suffix(".handlers").open("a").write(f"{token}\n"))
        if token.startswith("grow"):
            ballast = bytearray(int(token[4:]) * 2**20)
            ballast[::4096] = b"x" * len(ballast[::4096])
            _kept.append(ballast)
        if token == "threads":  # threads that outlive the task, as gRPC's do in a real one
            for _ in range(4):
                threading.Thread(target=_spin, daemon=True).start()
        if token == "sleep":
            time.sleep(30)
        if token == "sys-exit":
            raise SystemExit(3)
        run_clientapp_module.flwr_exit(7 if token == "fail" else 0)

    return run_clientapp


_kept: list = []


def _spin() -> None:
    while True:
        sum(range(10_000))


@pytest.fixture
def fake_task(tmp_path, monkeypatch):
    record = tmp_path / "tasks.txt"
    monkeypatch.setattr(run_clientapp_module, "run_clientapp", _task(record))
    monkeypatch.setattr(run_clientapp_module, "flwr_exit", run_clientapp_module.flwr_exit)  # restored after
    monkeypatch.setattr(task_worker, "log_app_tasks", lambda _dir: None)
    return record


def _pids(record: Path) -> list[int]:
    return [int(line.split()[1]) for line in record.read_text().splitlines()]


def test_the_tasks_of_a_client_run_one_after_another_in_one_worker(fake_task):
    worker = TaskWorker("127.0.0.1:1")
    ends = [worker.run(token) for token in ("a", "fail", "b")]
    assert [e.code for e in ends] == [0, 7, 0] and all(e.note == "" for e in ends)
    pids = _pids(fake_task)
    assert len(set(pids)) == 1 and pids[0] not in (os.getpid(), 0)  # one worker, not this process
    assert fake_task.with_suffix(".handlers").read_text().split() == ["a", "fail", "b"]  # each task's handlers ran
    assert psutil.Process(pids[0]).status() != psutil.STATUS_ZOMBIE  # still serving
    worker.stop()
    worker._reap()


def test_a_fresh_worker_per_task_when_asked_as_for_a_users_app(fake_task):
    worker = TaskWorker("127.0.0.1:1", tasks_per_worker=1)
    assert [worker.run(t).code for t in ("a", "b", "c")] == [0, 0, 0]
    pids = _pids(fake_task)
    assert len(set(pids)) == 3
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def test_a_worker_killed_mid_task_is_that_tasks_failure_and_the_next_task_gets_a_new_worker(fake_task):
    worker = TaskWorker("127.0.0.1:1")
    assert worker.run("a").code == 0
    first = worker.pid
    threading.Timer(1.0, os.kill, (first, signal.SIGKILL)).start()
    assert worker.run("sleep").code == -signal.SIGKILL
    assert worker.run("b").code == 0
    pids = _pids(fake_task)
    assert pids[0] == pids[1] == first and pids[2] != first
    worker.stop()
    worker._reap()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_worker_that_died_between_tasks_is_replaced_before_the_next_task(fake_task, sig):
    """The host has already acquired the next task when it hands it over: a worker found dead (the OOM killer,
    a stray signal) is replaced first, so the task runs. Found dying too: a killed worker with threads shows
    as a zombie before waitpid can collect it (its other threads still exit), and must not get the task."""
    worker = TaskWorker("127.0.0.1:1")
    for _ in range(5):
        assert worker.run("threads").code == 0
        first = worker.pid
        os.kill(first, sig)
        deadline = time.monotonic() + 10
        while psutil.Process(first).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.001)
        assert worker.run("b").code == 0
        assert _pids(fake_task)[-2:] == [first, worker.pid] and worker.pid != first
    worker.stop()
    worker._reap()


def test_a_task_that_exits_the_process_ends_its_worker_not_the_host(fake_task):
    worker = TaskWorker("127.0.0.1:1")
    end = worker.run("sys-exit")
    assert end.code == 3 and "worker ended" in end.note
    assert worker.pid == 0
    assert worker.run("a").code == 0
    assert len(set(_pids(fake_task))) == 2
    worker.stop()
    worker._reap()


def test_a_worker_whose_memory_grew_past_the_limit_is_replaced_after_its_task(fake_task, monkeypatch):
    monkeypatch.setattr(memory_growth, "GROWTH_LIMIT_MIB", 64)  # the rule's own module (MemoryGrowth)
    worker = TaskWorker("127.0.0.1:1")
    assert worker.run("a").code == 0
    grown = worker.run("grow120")
    assert grown.code == 0 and "memory grew" in grown.note
    assert worker.pid == 0  # reaped: the next task forks a fresh one
    assert worker.run("b").code == 0
    pids = _pids(fake_task)
    assert pids[0] == pids[1] != pids[2]
    worker.stop()
    worker._reap()
