"""fl-launch started by its absolute path under a bare PATH (cron, systemd): every helper still comes from
the interpreter's own environment."""

import os
import subprocess
import sys
import time
from importlib.metadata import distribution
from pathlib import Path

from launcher.processes.nodes import flower_env
from launcher.processes.table import ProcessTable
from tests.helpers import command, run_json, runs

BARE_PATH = "/usr/bin:/bin"  # what cron gives; the interpreter's bin folder is not on it
OWN_BIN = Path(sys.executable).parent


def flower_scripts() -> list[str]:
    """Every console script flwr installs: the SuperLink, SuperExec and the app runners start them by name."""
    return sorted(ep.name for ep in distribution("flwr").entry_points if ep.group == "console_scripts")


def test_what_a_run_starts_is_found_in_this_environment_under_a_bare_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", BARE_PATH)
    names = flower_scripts()
    assert {"flower-superexec", "flwr-serverapp", "flwr-clientapp"} <= set(names)
    table = ProcessTable(tag=f"own-env-{os.getpid()}")
    log = tmp_path / "which.log"
    # a child started as the run starts its processes resolves each name the way Flower's Popen does
    proc = table.spawn("probe", ["/bin/sh", "-c", 'for n in "$@"; do command -v "$n" || echo "missing $n"; done',
                                 "sh", *names], log=log, env=flower_env(tmp_path, 1))
    deadline = time.monotonic() + 30
    while proc.alive and time.monotonic() < deadline:
        table.reap()
        time.sleep(0.05)
    assert proc.exit_code == 0
    assert log.read_text().split() == [str(OWN_BIN / n) for n in names]


def test_a_real_run_by_absolute_path_with_a_bare_path(tmp_path):
    argv = [*command("fl-launch"), "--client-num", "2", "--rounds", "1", "--dataset", "digits",
            "--log-dir", str(tmp_path)]
    assert Path(argv[0]).is_absolute()
    env = dict(os.environ, PATH=BARE_PATH, COLUMNS="200")
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = runs(tmp_path)
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == 1
