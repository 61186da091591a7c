"""No ANSI colour codes in a run's log files (Flower colours its level names); still colour on a terminal.

The scan runs on real runs other tests make: test_run_end_to_end (process mode), test_fleet_stats (virtual).
"""

import os
import pty
import subprocess
import sys

ESC = b"\x1b"
SAY = ("from launcher.flower.plain_logs import colour_only_on_a_terminal; colour_only_on_a_terminal(); "
       "from flwr.supercore import log; log(20, 'hello')")


def coloured_logs(run_dir, process_mode: bool) -> list[str]:
    """The run's *.log files holding an escape code (after checking the logs a run writes are there)."""
    logs = sorted(run_dir.rglob("*.log"))
    names = {p.name for p in logs}
    assert {"superlink.log", "serverapp.log", "server.log", "client.log"} <= names, names
    if process_mode:
        assert {"supernode.log", "worker.log", "forkserver.log"} <= names, names
    # Flower's INFO lines are there, only plain
    assert b"INFO" in (run_dir / "server" / "serverapp.log").read_bytes()
    assert b"INFO" in (run_dir / "server" / "superlink.log").read_bytes()
    return [str(p.relative_to(run_dir)) for p in logs if ESC in p.read_bytes()]


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
