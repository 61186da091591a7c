"""Devices that reach the SuperLink directly (fl-launch --server-address HOST): TLS, a registered key per node,
no SSH tunnel. The device is a network namespace with its own sshd (tests/devices.py); HOST is this machine's
end of its link, the one address of this machine the device can reach."""

import os
import re
import shlex
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests import devices as lab_devices
from tests.helpers import BIN, Seen, run, run_json, runs, start, wait_for_status

THIS_CHECKOUT = f'env = {{ PYTHONPATH = "{Path(__file__).resolve().parents[1]}" }}'  # the agent runs this code
pytestmark = [pytest.mark.skipif(lab_devices.available() is not None, reason=str(lab_devices.available())),
              pytest.mark.slow]
# the SuperLink's access log: who (peer address) called which Fleet API path, and the answer's status
FLEET_CALL = re.compile(r'(\d+\.\d+\.\d+\.\d+):\d+ - "POST /v1/fleet/([a-z-]+) HTTP/1\.1" (\d+)')


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_devices.make_devices(tmp_path_factory.mktemp("lab"), 1) as lab:
        yield lab


def this_side(lab) -> str:
    """This machine's address on the device's link (the device's is .2 of the same /24)."""
    return lab.devices[0].address.rsplit(".", 1)[0] + ".1"


def launch_args(lab, log_dir: Path, *args: str) -> list[str]:
    return ["--hosts", str(lab.hosts_file(slots=2, extra=THIS_CHECKOUT)), "--ssh-config", str(lab.ssh_config),
            "--log-dir", str(log_dir), "--client-num", "2", "--server-address", this_side(lab), *args]


def fleet_calls(run_dir: Path) -> Counter:
    return Counter(FLEET_CALL.findall((run_dir / "server" / "superlink.log").read_text(errors="replace")))


def test_a_run_over_direct_connections(lab, tmp_path):
    """The nodes call the SuperLink from the device's own address; no ssh -R is ever started; each private key
    is on its device only, mode 0600."""
    proc = start("fl-launch", *launch_args(lab, tmp_path, "--rounds", "1", "--max-restarts", "1"))
    seen = Seen()
    while proc.poll() is None:  # every process under fl-launch, while it runs
        seen.snapshot(proc.pid)
        time.sleep(0.1)
    out = proc.stdout.read()
    assert proc.returncode == 0, out
    run_dir = runs(tmp_path)[0]
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == 1, out
    ssh_calls = [c for c in seen.procs.values() if re.match(r"\S*ssh ", c)]
    assert ssh_calls, seen.procs  # the oracle sees the launcher's ssh calls (staging, the agent, pulls) ...
    assert not [c for c in ssh_calls if " -R " in f"{c} "], ssh_calls  # ... and no tunnel among them
    assert "tunnel" not in [p["role"] for p in info["processes"]]
    device = lab.devices[0]
    calls = fleet_calls(run_dir)
    activated = [(peer, status) for (peer, path, status), n in calls.items() if path == "activate-node"
                 for _ in range(n)]
    assert activated == [(device.address, "200")] * 2, calls  # both nodes, straight from the device
    assert {peer for peer, _, _ in calls} == {device.address}, calls  # no Fleet call through a loopback
    assert info["fleet_api"].startswith(f"{this_side(lab)}:")
    for client in (0, 1):
        assert (run_dir / f"client_{client}" / "client.log").read_text().count("evaluate acc:") == 1
    keys = device.root / "runs" / run_dir.name / "tls" / "nodes"
    assert sorted(p.name for p in keys.iterdir()) == [f"client_{c}.{k}.key" for c in (0, 1) for k in (0, 1)]
    assert {oct(p.stat().st_mode & 0o777) for p in keys.iterdir()} == {"0o600"}
    assert not (device.root / "runs" / run_dir.name / "tls" / "ca.key").exists()


def supernode_command(fleet_api: str, *flags: str, seconds: float) -> str:
    """A SuperNode of our own, to run on the device against the run's Fleet API; it says how it ended."""
    env = "FLWR_HOME=/tmp/probe-home FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1"
    command = shlex.join(["timeout", "-s", "INT", str(seconds), str(BIN / "flower-supernode"), "--superlink", fleet_api,
                          "--isolation", "process", "--port", "9194", "--max-retries", "1", "--max-wait-time", "5",
                          *flags])
    return f"cd /tmp && env {env} {command} 2>&1; echo exit=$?"


def probe(lab, fleet_api: str, *flags: str, seconds: float) -> str:
    """What such a SuperNode said, once it ended."""
    return lab.devices[0].ssh(supernode_command(fleet_api, *flags, seconds=seconds), timeout=seconds + 30).stdout


def test_a_node_without_a_registered_key_or_without_the_ca_cannot_join(lab, tmp_path):
    """Flower's SuperNode run by hand on the device against a live direct run: a key the SuperLink never
    registered, no key, and a registered key without the run's CA are all kept out; the same key with the CA
    joins. Then a client killed there rejoins as a new node, with its next key."""
    args = launch_args(lab, tmp_path / "logs", "--rounds", "200", "--detach", "--max-restarts", "1")
    result = run("fl-launch", *args, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = runs(tmp_path / "logs")[0]
    try:
        wait_for_status(run_dir, {"running"}, timeout=30)
        device, fleet_api = lab.devices[0], run_json(run_dir)["fleet_api"]
        ca = device.root / "runs" / run_dir.name / "tls" / "ca.pem"
        stranger = tmp_path / "stranger.key"  # a well-formed key the SuperLink never registered
        subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-f", str(stranger)], check=True)
        spare = tmp_path / "spare.key"  # registered, unused: client 1's key for a restart that never comes
        shutil.copyfile(run_dir / "tls" / "nodes" / "client_1.1.key", spare)
        os.chmod(spare, 0o600)
        joined = fleet_calls(run_dir)[(device.address, "activate-node", "200")]
        assert joined == 2

        said = probe(lab, fleet_api, "--root-certificates", str(ca), "--auth-supernode-private-key", str(stranger),
                     seconds=30)
        calls = fleet_calls(run_dir)
        assert "exit=0" not in said and calls[(device.address, "activate-node", "412")] == 1, said
        said = probe(lab, fleet_api, "--root-certificates", str(ca), seconds=30)  # no key: it would register one
        calls = fleet_calls(run_dir)
        assert "exit=0" not in said and calls[(device.address, "register-node", "412")] == 1, said
        assert calls[(device.address, "activate-node", "200")] == 2

        before = sum(fleet_calls(run_dir).values())
        said = probe(lab, fleet_api, "--auth-supernode-private-key", str(spare), seconds=30)  # the system's CAs
        assert "exit=0" not in said and "CERTIFICATE_VERIFY_FAILED" in said, said
        assert sum(fleet_calls(run_dir).values()) - before < 10  # the nodes' own polls only: nothing of the probe's
        assert fleet_calls(run_dir)[(device.address, "activate-node", "200")] == 2
        # the same key with the run's CA joins: what kept it out was the CA
        joining = subprocess.Popen(["ssh", "-F", str(lab.ssh_config), device.name, "--", supernode_command(
            fleet_api, "--root-certificates", str(ca), "--auth-supernode-private-key", str(spare), seconds=30)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while fleet_calls(run_dir)[(device.address, "activate-node", "200")] < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        joining.kill()
        joining.wait()
        assert fleet_calls(run_dir)[(device.address, "activate-node", "200")] == 3

        # a client killed on the device comes back as a new node: its next key, a new node id
        victim = next(p for p in run_json(run_dir)["processes"] if p["role"] == "client" and p["client"] == 0)
        assert device.ssh(f"kill -9 {victim['pid']}").returncode == 0
        deadline = time.monotonic() + 90
        while not run_json(run_dir).get("restarts") and time.monotonic() < deadline:
            time.sleep(0.5)
        (restart,) = run_json(run_dir)["restarts"]
        old, ids = str(restart["node_id"]), []
        while time.monotonic() < deadline and (not ids or ids[-1] == old):
            ids = re.findall(r"SuperNode ID: (\d+)", (run_dir / "client_0" / "supernode.log").read_text())
            time.sleep(0.5)
        assert ids[-1] != old and fleet_calls(run_dir)[(device.address, "activate-node", "200")] == 4, ids
    finally:
        run("fl-finish", "--kill-tag", run_json(run_dir)["kill_tag"], "--log-dir", str(tmp_path / "logs"),
            "--grace", "3", "--ssh-config", str(lab.ssh_config), timeout=120)
