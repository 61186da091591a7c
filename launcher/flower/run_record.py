"""How a Flower run ended, as the SuperLink records it (not as ``flwr run --stream`` exits).

    run = flower_run(env)            # `flwr ls local --format json` with the run's own FLWR_HOME
    run.status, run.sub_status, run.details
    # ('finished', 'failed', 'ServerApp failed with exception: No module named ...')
    last_exception("logs/latest/server/serverapp.log")
    # "ModuleNotFoundError: No module named 'torchvision'"
    describe_failure(run, Path("logs/latest/server/serverapp.log"))
    # "the ServerApp failed: ModuleNotFoundError: No module named 'torchvision' (see .../serverapp.log)"

``flwr run --stream`` exits 0 whatever the ServerApp did (Flower prints "Exit Code: N" into
the stream). The SuperLink keeps each run's status and sub-status: ``finished:completed``
is the only success. A run is read while its SuperLink still lives (the supervisor stops
``flwr run`` before the SuperLink), through Flower's own CLI against the run's connection
``local`` in its FLWR_HOME (launcher.run.supervisor.Supervisor.write_flwr_config).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from launcher.flower.release import flwr_bin

COMPLETED = "completed"
FINISHED = "finished"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXIT_CODE = re.compile(r"Exit Code: (\d+)")


@dataclass(frozen=True)
class FlowerRun:
    """One run as ``flwr ls`` shows it."""

    run_id: str
    status: str  # pending, starting, running, finished
    sub_status: str  # completed, failed, stopped ("" until finished)
    details: str  # Flower's words on a failure ("" or "N/A" otherwise)

    @property
    def ended(self) -> bool:
        return self.status == FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == FINISHED and self.sub_status == COMPLETED


def parse_ls(text: str) -> list[FlowerRun]:
    """``flwr ls --format json``'s answer -> its runs, oldest first; [] when it is no such answer."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return []
    runs = []
    for row in data.get("runs", []) if isinstance(data, dict) else []:
        status, _, sub_status = str(row.get("status", "")).partition(":")
        details = str(row.get("status-details") or "")
        runs.append(FlowerRun(str(row.get("run-id", "")), status, sub_status, "" if details == "N/A" else details))
    return sorted(runs, key=lambda r: int(r.run_id) if r.run_id.isdigit() else 0)


CALL_TIMEOUT = 10.0  # one `flwr ls` (a Python start and one request) on a loaded machine
ASK_FOR = 30.0  # how long a SuperLink that does not answer `flwr ls` is asked again


def flower_run(env: dict[str, str], wait: float = 10.0) -> FlowerRun | None:
    """The newest run on the run's SuperLink, once it has ended (or as it is after ``wait`` seconds of answers);
    None when the SuperLink knows no run (``flwr run`` failed before submitting) or cannot be asked for ASK_FOR
    seconds (a ``flwr ls`` that hangs or fails is tried again, each at most CALL_TIMEOUT seconds)."""
    started = time.monotonic()
    while True:
        try:
            done = subprocess.run([flwr_bin("flwr"), "ls", "local", "--format", "json"], env=env,
                                  capture_output=True, text=True, timeout=CALL_TIMEOUT, stdin=subprocess.DEVNULL)
            runs = parse_ls(done.stdout) if done.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            runs = None
        waited = time.monotonic() - started
        if runs is None:
            if waited >= ASK_FOR:
                return None
        else:
            newest = runs[-1] if runs else None
            if (newest is not None and newest.ended) or waited >= wait:
                return newest
        time.sleep(0.5)


def last_exception(log: Path) -> str | None:
    """The last line of the last Python traceback in a log (``ValueError: bad thing``), else None."""
    try:
        lines = _ANSI.sub("", log.read_text(errors="replace")).splitlines()
    except OSError:
        return None
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last):")]
    if not starts:
        return None
    for line in lines[starts[-1] + 1:]:
        if line.strip() and not line[0].isspace():
            return line.strip()
    return None


def exit_code_in(log: Path) -> int | None:
    """Flower's ``Exit Code: N`` in the streamed log, the last one."""
    try:
        found = _EXIT_CODE.findall(_ANSI.sub("", log.read_text(errors="replace")))
    except OSError:
        return None
    return int(found[-1]) if found else None


def describe_failure(run: FlowerRun | None, log: Path, run_exit: int | None = None) -> str:
    """One line: why a run that did not complete ended, and where its traceback is."""
    if run is None:
        code = f" with exit code {run_exit}" if run_exit else ""
        return f"flwr run ended{code} before the SuperLink had a run (see {log})"
    if run.sub_status == "stopped":
        return f"the Flower run was stopped (see {log})"
    if not run.ended:
        return f"the Flower run is still {run.status} on the SuperLink after flwr run ended (see {log})"
    what = last_exception(log) or run.details or "no reason given"
    code = exit_code_in(log)
    return f"the ServerApp failed{f' (exit code {code})' if code else ''}: {what} (see {log})"
