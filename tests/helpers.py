"""Run the real commands as a user would, and look at what they leave."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from launcher.tagged import tagged_processes

BIN = Path(sys.executable).parent


def command(name: str) -> list[str]:
    script = BIN / name
    if script.exists():
        return [str(script)]
    module = {"fl-launch": "launch_cli", "fl-stats": "stats_cli", "fl-finish": "finish_cli"}[name]
    return [sys.executable, "-m", f"launcher.{module}"]


def run(name: str, *args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([*command(name), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def start(name: str, *args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([*command(name), *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)


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
