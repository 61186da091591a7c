"""Run the real commands as a user would, and look at what they leave."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from launcher.processes.tagged import tagged_processes

BIN = Path(sys.executable).parent


def command(name: str) -> list[str]:
    script = BIN / name
    if script.exists():
        return [str(script)]
    module = {"fl-launch": "launch", "fl-stats": "stats", "fl-finish": "finish"}[name]
    return [sys.executable, "-m", f"launcher.cli.{module}"]


@dataclass
class _Launch:
    """One fl-launch of this test: its log dir and the run folders that were there before it (or the folder it
    resumes, ``before`` None), and its process if started in the background."""

    where: Path
    before: frozenset[str] | None
    proc: subprocess.Popen | None = None

    def folders(self) -> list[Path]:
        if self.before is None:
            return [self.where]
        return [self.where / name for name in _run_names(self.where) - self.before]


def _run_names(log_dir: Path) -> frozenset[str]:
    try:
        return frozenset(p.name for p in runs(log_dir))
    except (OSError, ValueError):  # a test's --log-dir that fl-launch refuses (a file, a NUL)
        return frozenset()


_launched: list[_Launch] = []  # stopped after the test (stop_runs_left)


def run(name: str, *args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    _note_launch(name, args, cwd, None)
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [*command(name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def start(name: str, *args: str, cwd: Path | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*command(name), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    _note_launch(name, args, cwd, proc)
    return proc


def _note_launch(name: str, args: tuple[str, ...], cwd: Path | None, proc: subprocess.Popen | None) -> None:
    """Remember an fl-launch's log dir (and --resume's folder): stop_runs_left stops what its runs leave."""
    if name != "fl-launch":
        return
    base = Path.cwd() if cwd is None else Path(cwd)
    given = dict(zip(args, args[1:]))
    log_dir = base / given.get("--log-dir", "logs")
    _launched.append(_Launch(log_dir, _run_names(log_dir), proc))
    if "--resume" in given and (base / given["--resume"] / "run.json").is_file():
        _launched.append(_Launch(base / given["--resume"], None))


def stop_runs_left() -> list[str]:
    """After a test (tests/conftest.py): stop the whole run of each fl-launch it started that left a process
    (a test that failed between its start and its own stop) with fl-finish --kill-tag, the product's own stop,
    and end its fl-launch; the tags stopped."""
    launched = list(_launched)
    _launched.clear()
    stopped = _finish_tags([folder for launch in launched for folder in launch.folders()])
    for launch in launched:
        if launch.proc is not None and launch.proc.poll() is None:  # still preparing, no run folder yet
            launch.proc.kill()
            launch.proc.wait()
    return stopped + _finish_tags([folder for launch in launched for folder in launch.folders()])


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def runs(log_dir: Path) -> list[Path]:
    return sorted(p for p in log_dir.iterdir() if p.is_dir() and not p.is_symlink()) if log_dir.exists() else []


def superlink_log_of_a_run(log_dir: Path, monkeypatch, clients: int, rounds: int) -> str:
    """The SuperLink's log of a finished built-in run with Flower's DEBUG lines on (its access lines, its handlers'
    lines): what the request-counting tests read."""
    monkeypatch.setenv("FLWR_LOG_LEVEL", "DEBUG")
    done = run("fl-launch", "--client-num", str(clients), "--task", "train", "--rounds", str(rounds), "--log-dir",
               str(log_dir), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "status: finished" in done.stdout
    return (runs(log_dir)[-1] / "server" / "superlink.log").read_text()


def wait_for_status(run_dir: Path, statuses: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        try:
            status = run_json(run_dir).get("status", "")
        except (FileNotFoundError, json.JSONDecodeError):
            status = ""
        if status in statuses:
            return status
        time.sleep(0.2)
    raise AssertionError(f"run {run_dir.name} stayed {status!r}, wanted one of {statuses}")


def wait_until_nothing_tagged(tag: str, timeout: float = 15) -> list:
    deadline = time.monotonic() + timeout
    left = tagged_processes(tag)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = tagged_processes(tag)
    return left


@contextmanager
def running(*args: str, log_dir: Path, timeout: float = 180):
    """fl-launch in the foreground, handed over once its first round runs; killed if the test leaves it so.

    with running("--client-num", "3", log_dir=tmp_path) as (proc, run_dir):
        ...                                   # do harm
        out, _ = proc.communicate(timeout=300)
    """
    proc = start("fl-launch", *args, "--log-dir", str(log_dir))
    try:
        while not runs(log_dir):
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
        run_dir = runs(log_dir)[0]
        wait_for_status(run_dir, {"running"}, timeout=timeout)
        yield proc, run_dir
    finally:
        if proc.poll() is None:  # a test that failed mid-run: its run's processes must not outlive it
            stop_runs_left()


def _finish_tags(folders: list[Path]) -> list[str]:
    """fl-finish --kill-tag for each of these runs with a process left: one of its tag, or its supervisor; the
    tags stopped."""
    import psutil

    stopped: list[str] = []
    for run_dir in sorted(set(folders)):
        try:
            info = run_json(run_dir)
            tag, supervisor = info["kill_tag"], info.get("supervisor") or {}
        except (OSError, ValueError, KeyError):
            continue
        try:
            supervised = abs(psutil.Process(supervisor["pid"]).create_time() - supervisor["created"]) < 1.0
        except (KeyError, TypeError, psutil.Error):
            supervised = False
        if tag not in stopped and (supervised or tagged_processes(tag)):
            run("fl-finish", "--kill-tag", tag, "--log-dir", str(run_dir.parent), "--grace", "3", timeout=120)
            stopped.append(tag)
    return stopped


class Seen:
    """The oracle of "nothing left running": every process (pid and start time) seen under a root process
    or recorded in run.json while the run lived, checked gone by pid and start time (never by tag).

        seen = Seen()
        seen.watch(proc.pid, seconds=2, run_dir=run_dir)     # snapshots while the run lives
        ...                                                  # stop it
        assert seen.alive() == []
    """

    def __init__(self) -> None:
        self.procs: dict[tuple[int, float], str] = {}

    def snapshot(self, root_pid: int | None = None, run_dir: Path | None = None) -> int:
        import psutil

        found = []
        if root_pid is not None:
            try:
                root = psutil.Process(root_pid)
                found += [root, *root.children(recursive=True)]
            except psutil.Error:
                pass
        if run_dir is not None:
            info = run_json(run_dir)
            for rec in [*info.get("processes", []), info.get("supervisor") or {}]:
                if rec.get("pid") and rec.get("host", "localhost") == "localhost":
                    try:
                        found.append(psutil.Process(rec["pid"]))
                    except psutil.Error:
                        pass
        for proc in found:
            try:
                self.procs.setdefault((proc.pid, proc.create_time()), " ".join(proc.cmdline())[:120])
            except psutil.Error:
                continue
        return len(self.procs)

    def watch(self, root_pid: int | None, seconds: float, run_dir: Path | None = None) -> int:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.snapshot(root_pid, run_dir)
            time.sleep(0.2)
        return len(self.procs)

    def alive(self) -> list[str]:
        import psutil

        left = []
        for (pid, created), command in self.procs.items():
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - created) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{pid} {command}")
            except psutil.Error:
                continue
        return left
