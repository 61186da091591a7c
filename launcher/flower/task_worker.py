"""One child process of the task host that runs its ClientApp tasks one after another.

    worker = TaskWorker("127.0.0.1:9094", tasks_per_worker=0)   # 0: as many as it lives for
    end = worker.run(token)        # TaskEnd(code=0, cpu=0.21, ...) once the task's reply is with the SuperNode
    worker.stop()

The task host (launcher.flower.warm_clientapp) forks the worker from itself, so torch, the app and the
node's data are already loaded, and hands it each task's token over a pipe. The worker runs the task
with Flower's own ``run_clientapp`` and reports its exit code and CPU-seconds back. Forking once per
worker instead of once per task saves, on every task, the fork of a ~270 MB process, the copy-on-write
faults of a fresh child, its teardown, and the FAB's unzip; what the task leaves in memory (the
built-in app keeps its model and log open) serves the next one.

Flower ends ``run_clientapp`` with ``flwr_exit``, which runs the task's exit handlers (its last push,
the heartbeat stopped) and then exits the process, with a thread that forces the exit after a timeout.
In the worker, the same name in run_clientapp's module runs the same handlers and ends the task instead
(TaskEnded). A task stopped by a signal, or an app that calls ``sys.exit``, still ends the worker
(Flower's own ``flwr_exit`` from its signal handler); a worker that dies mid-task is reported as that
task's exit (its signal or code), and the next task starts a fresh worker. A worker whose memory grew by
more than GROWTH_LIMIT_MIB since its first task finishes that task and exits, saying so: a leak costs a
fork, not the client. ``tasks_per_worker=1`` is Flower's own model, a fresh process per task (a user's
``--app``, whose module state must not outlive a task). tests/test_flower_internals.py pins the shape of
``flwr_exit`` and ``run_clientapp`` this relies on.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil
from flwr.supercore import log
from flwr.supercore.constant import FORCE_EXIT_TIMEOUT_SECONDS
from flwr.supercore.exit import exit_handler
from flwr.supernode.runtime import run_clientapp as run_clientapp_module

from launcher.flower import object_batch, task_output
from launcher.flower.memory_growth import MemoryGrowth
from launcher.flower.task_log import log_app_tasks


@dataclass(frozen=True)
class TaskEnd:
    code: int  # the task's exit code (negative: its worker was killed by that signal)
    cpu: float  # CPU-seconds the task used (user + system)
    note: str = ""  # why the worker ended with this task, if it did


class TaskEnded(Exception):
    """Raised in a worker where Flower's run_clientapp would exit the process."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def end_task(code: int, message: str | None = None, event_type=None, event_details=None, *,
             emit_telemetry: bool = True) -> None:
    """``flwr_exit`` for a task in a worker: the task's exit handlers, its telemetry event, then TaskEnded. As
    Flower's, handlers that have not finished FORCE_EXIT_TIMEOUT_SECONDS after the first phase end the process
    (the worker: the host sees the task fail and starts another)."""
    if message and not 0 <= code < 100:
        log.log(40, "Exit Code: %s\n%s", code, message)
    exit_handler.trigger_exit_handlers(run_before_force_exit=True)
    force = threading.Timer(FORCE_EXIT_TIMEOUT_SECONDS, os._exit, (1 if not 0 <= code < 100 else 0,))
    force.daemon = True
    force.start()
    try:
        exit_handler.trigger_exit_handlers(run_before_force_exit=False)
    finally:
        force.cancel()
    if emit_telemetry and event_type is not None:
        run_clientapp_module.event(event_type, {**(event_details or {}), "exit_code": code})
    raise TaskEnded(code)


def install_once(install):
    """Flower's install_from_fab for a worker: a FAB this worker has installed (same bytes, same place, still
    there) is not unzipped again."""
    installed: dict[tuple, Path] = {}

    def install_from_fab(fab_file, install_dir=None, skip_prompt=False):
        key = (hashlib.sha256(fab_file).hexdigest() if isinstance(fab_file, bytes) else str(fab_file), install_dir)
        if key in installed and installed[key].is_dir():
            return installed[key]
        installed[key] = Path(install(fab_file, install_dir=install_dir, skip_prompt=skip_prompt))
        return installed[key]

    return install_from_fab


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _main_thread_ended(pid: int) -> bool:
    """Whether a worker's main thread has exited. A killed worker shows as a zombie while its other threads
    (gRPC's, a task's timer) still exit, and waitpid WNOHANG reports it only after them: such a worker cannot
    take a task, and one handed to it would be lost with it."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True


def _plain_signals() -> None:
    """SIGTERM and SIGINT end an idle worker at once (not the host's handler it was forked with, nor the last
    task's Flower handler, which would try to report a task that is over)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _serve(tokens, results, runtime_api: str, app_log_dir, tasks_per_worker: int) -> None:
    """The worker's loop: a token in, the task run, ``code cpu note`` out; exits when the host is gone."""
    _plain_signals()
    if app_log_dir is not None:
        log_app_tasks(app_log_dir)
    task_output.install()  # the task's last push survives a closed connection too
    object_batch.install_in_task_process()  # a message's objects in one exchange each way
    run_clientapp_module.flwr_exit = end_task
    run_clientapp_module.install_from_fab = install_once(run_clientapp_module.install_from_fab)
    growth = MemoryGrowth()
    served = 0
    for line in tokens:
        before = _cpu_seconds()
        try:
            run_clientapp_module.run_clientapp(runtime_api_address=runtime_api, token=line.strip(), insecure=True,
                                               runtime_dependency_install=False)
            code = 0
        except TaskEnded as ended:
            code = ended.code
        except SystemExit as exit_:  # a signal's graceful exit, or the app's own sys.exit: this worker ends
            code = exit_.code if isinstance(exit_.code, int) else 1
            results.write(f"{code} {_cpu_seconds() - before:.6f} worker ended by the task's exit\n")
            results.flush()
            return
        _plain_signals()
        served += 1
        grown = growth.after_task()
        note = ""
        if tasks_per_worker and served >= tasks_per_worker:
            note = "-"
        elif grown:
            note = f"worker replaced: {grown}"
        sys.stdout.flush()
        sys.stderr.flush()
        results.write(f"{code} {_cpu_seconds() - before:.6f} {note}\n")
        results.flush()
        if note:
            return


class TaskWorker:
    """The host's side of one worker at a time: started on the first task, replaced when it ends."""

    def __init__(self, runtime_api: str, app_log_dir=None, tasks_per_worker: int = 0, keep_out=()) -> None:
        self.runtime_api = runtime_api
        self.keep_out = list(keep_out)  # the host's sockets a worker must not hold (its bell: a successor binds it)
        self.app_log_dir = app_log_dir
        self.tasks_per_worker = tasks_per_worker
        self.pid = 0
        self._reported = 0.0  # CPU-seconds the live worker's finished tasks reported
        self._tokens = None
        self._results = None

    def _start(self) -> None:
        token_r, token_w = os.pipe()
        result_r, result_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(token_w)
            os.close(result_r)
            for sock in self.keep_out:
                sock.close()
            code = 0
            try:
                with os.fdopen(token_r) as tokens, os.fdopen(result_w, "w") as results:
                    _serve(tokens, results, self.runtime_api, self.app_log_dir, self.tasks_per_worker)
            except BaseException:  # noqa: BLE001 - whatever ends the worker, it must not return into the host's loop
                code = 1
            finally:
                os._exit(code)
        os.close(token_r)
        os.close(result_w)
        self.pid = pid
        self._tokens = os.fdopen(token_w, "w")
        self._results = os.fdopen(result_r)

    def ready(self) -> None:
        """Start a worker if none is alive (a worker that died between tasks is reaped and replaced, so the next
        task is not lost with it). Call it while this process holds no lock a worker must not keep (a compute
        slot's flock is held by every process that has its file open, the worker too)."""
        if self.pid:
            try:
                exited, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                exited = self.pid
            if exited:
                self._reap(exited=True)
            elif _main_thread_ended(self.pid):
                self._reap()  # dying: its status comes once its last threads are gone
        if not self.pid:
            self._start()

    def run(self, token: str) -> TaskEnd:
        """Run one task in the worker (``ready`` first, outside any lock); returns when it has ended."""
        self.ready()
        try:
            self._tokens.write(token + "\n")
            self._tokens.flush()
            line = self._read_line()
        except BrokenPipeError:
            line = ""
        if not line:  # the worker died before or during the task: its exit is the task's
            reported = self._reported
            code, cpu = self._reap()
            return TaskEnd(code, max(0.0, cpu - reported))
        code, cpu, note = (line.rstrip("\n").split(" ", 2) + ["", ""])[:3]
        end = TaskEnd(int(code), float(cpu), "" if note == "-" else note)
        self._reported += end.cpu
        if note:
            self._reap()
        return end

    def _read_line(self) -> str:
        while True:
            try:
                return self._results.readline()
            except InterruptedError:
                continue

    def _reap(self, exited: bool = False) -> tuple[int, float]:
        """Wait for the worker's exit: its exit code and the CPU-seconds of its whole life (``exited``: already
        reaped, nothing to wait for)."""
        pid, self.pid, self._reported = self.pid, 0, 0.0
        for stream in (self._tokens, self._results):
            try:
                stream.close()
            except OSError:
                pass
        if exited:
            return 1, 0.0
        while True:
            try:
                _, status, usage = os.wait4(pid, 0)
                return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
            except InterruptedError:
                continue
            except ChildProcessError:
                return 1, 0.0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the worker (and the task it runs); the host's SIGTERM handler calls this."""
        if self.pid:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
