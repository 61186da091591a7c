"""Run the real commands as a user would, and look at what they leave."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from launcher.processes.tagged import tagged_processes

BIN = Path(sys.executable).parent


def command(name: str) -> list[str]:
    script = BIN / name
    if script.exists():
        return [str(script)]
    module = {"fl-launch": "launch", "fl-stats": "stats", "fl-finish": "finish"}[name]
    return [sys.executable, "-m", f"launcher.cli.{module}"]


def run(name: str, *args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
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
    return subprocess.Popen(
        [*command(name), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def runs(log_dir: Path) -> list[Path]:
    return sorted(p for p in log_dir.iterdir() if p.is_dir() and not p.is_symlink()) if log_dir.exists() else []


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
            proc.kill()
            proc.wait()
            _finish_tags(log_dir)


def _finish_tags(log_dir: Path) -> None:
    """Stop what the runs in ``log_dir`` left (fl-finish by each run's tag)."""
    for run_dir in runs(log_dir):
        try:
            tag = run_json(run_dir)["kill_tag"]
        except (OSError, ValueError, KeyError):
            continue
        run("fl-finish", "--kill-tag", tag, "--log-dir", str(log_dir), "--grace", "3", timeout=120)


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
