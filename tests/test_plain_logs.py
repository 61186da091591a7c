"""No ANSI colour codes in a run's log files (Flower colours its level names); still colour on a terminal."""

import os
import pty
import subprocess
import sys

import pytest

from tests.helpers import run, runs

ESC = b"\x1b"
SAY = ("from launcher.flower.plain_logs import colour_only_on_a_terminal; colour_only_on_a_terminal(); "
       "from flwr.supercore import log; log(20, 'hello')")


@pytest.mark.parametrize("mode", ["process", "virtual"])
def test_no_escape_codes_in_any_log_file_of_a_run(tmp_path, mode):
    result = run("fl-launch", "--client-num", "2", "--rounds", "1", "--mode", mode, "--log-dir", str(tmp_path),
                 "--seed", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = runs(tmp_path)
    logs = sorted(run_dir.rglob("*.log"))
    names = {p.name for p in logs}
    assert {"superlink.log", "serverapp.log", "server.log", "client.log"} <= names, names
    if mode == "process":
        assert {"supernode.log", "worker.log"} <= names, names
    # Flower's INFO lines are there, only plain
    assert b"INFO" in (run_dir / "server" / "serverapp.log").read_bytes()
    assert b"INFO" in (run_dir / "server" / "superlink.log").read_bytes()
    coloured = [str(p.relative_to(run_dir)) for p in logs if ESC in p.read_bytes()]
    assert coloured == []


def test_flower_still_colours_a_terminal(tmp_path):
    env = dict(os.environ)
    plain_file = tmp_path / "err.log"
    with plain_file.open("wb") as err:
        subprocess.run([sys.executable, "-c", SAY], stderr=err, env=env, check=True, timeout=60)
    assert b"hello" in plain_file.read_bytes() and ESC not in plain_file.read_bytes()
    leader, follower = pty.openpty()
    subprocess.run([sys.executable, "-c", SAY], stderr=follower, env=env, check=True, timeout=60)
    os.close(follower)
    seen = b""
    while b"hello" not in seen:
        seen += os.read(leader, 4096)
    os.close(leader)
    assert ESC + b"[92mINFO" in seen
