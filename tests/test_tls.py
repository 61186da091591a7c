"""--tls: the SuperLink serves a certificate from a CA made for the run; only nodes holding that CA join."""

import subprocess
import sys
from pathlib import Path

from launcher.devices.tls import make_run_certificates
from launcher.processes.ports import free_ports
from tests.helpers import run, run_json, runs, wait_until_nothing_tagged

BIN = Path(sys.executable).parent


def test_tls_run_and_a_node_without_the_ca_cannot_join(tmp_path):
    tag = "tls-test-1"
    result = run("fl-launch", "--client-num", "2", "--rounds", "50", "--tls", "--detach", "--kill-tag", tag,
                 "--log-dir", str(tmp_path / "logs"), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = runs(tmp_path / "logs")[0]
    info = run_json(run_dir)
    assert info["status"] == "running"  # both TLS nodes joined: round 1 started
    assert (run_dir / "tls" / "ca.key").stat().st_mode & 0o077 == 0
    superlink = next(p for p in info["processes"] if p["role"] == "superlink")
    assert "--insecure" not in (run_dir / "server" / "superlink.log").read_text()
    other_ca = make_run_certificates(tmp_path / "other", hosts=["127.0.0.1"]).ca
    try:
        for security in (["--root-certificates", str(other_ca)], ["--insecure"]):
            intruder = subprocess.run(
                [str(BIN / "flower-supernode"), *security, "--superlink", f"127.0.0.1:{superlink['port']}",
                 "--isolation", "process", "--port", str(free_ports(1)[0]),
                 "--max-retries", "2", "--max-wait-time", "10"],
                capture_output=True, text=True, timeout=60)
            assert intruder.returncode != 0
            assert "could not establish a connection to the SuperLink" in intruder.stdout + intruder.stderr
        registered = (run_dir / "server" / "superlink.log").read_text().count("Fleet.ActivateNode")
        assert registered == 2  # only the run's own nodes
    finally:
        done = run("fl-finish", "--kill-tag", tag, "--log-dir", str(tmp_path / "logs"), "--grace", "5")
    assert done.returncode == 0, done.stdout
    assert wait_until_nothing_tagged(tag) == []
