"""--node-config and hosts.toml's node-config reach every client's node config, as Flower's SuperNode takes them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import devices as lab_devices
from tests.helpers import run, run_json, runs, wait_until_nothing_tagged
from tests.test_app_outcomes import make_app

READ = ("    print('read:', open(context.node_config['dataset-path']).read().strip(), "
        "'| label:', context.node_config['label'], '| partition', context.node_config['partition-id'])\n")


def reader_app(root: Path) -> Path:
    """An app whose ClientApp reads the file its node config names, as Flower's embedded-devices example does."""
    return make_app(root, "reader", client_train=READ)


def data_files(root: Path, prefix: str, clients: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(clients):
        (root / f"{prefix}_{i}.txt").write_text(f"{prefix} file of client {i} ({i * 7 + 3})\n")


def reads(run_dir: Path, client: int) -> list[str]:
    return re.findall(r"<FLClient> read: (.*)$", (run_dir / f"client_{client}" / "client.log").read_text(), re.M)


def test_each_client_reads_the_file_its_node_config_names(tmp_path):
    data_files(tmp_path / "data", "part", 3)
    app = reader_app(tmp_path)
    result = run("fl-launch", "--app", str(app), "--client-num", "3", "--run-config", "num-server-rounds=2 min-nodes=3",
                 "--node-config", f"dataset-path=\"{tmp_path}/data/part_{{i}}.txt\" label='one of {{n}}'",
                 "--log-dir", str(tmp_path / "logs"), "--kill-tag", "test-node-config", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    [run_dir] = runs(tmp_path / "logs")
    assert run_json(run_dir)["status"] == "finished"
    for i in range(3):
        expected = f"part file of client {i} ({i * 7 + 3}) | label: one of 3 | partition {i}"
        assert reads(run_dir, i) == [expected, expected]  # one per round
    assert wait_until_nothing_tagged("test-node-config") == []


@pytest.mark.parametrize("value, message", [
    ("dataset-path=data/x", "no TOML value"),                 # a string without quotes
    ("just-a-word", "expected key=value pairs"),
    ("partition-id=7", "partition-id is set by fl-launch"),
    ('num-partitions=2 x="a"', "num-partitions is set by fl-launch"),
])
def test_a_bad_node_config_is_one_line_before_anything_starts(tmp_path, value, message):
    app = reader_app(tmp_path)
    result = run("fl-launch", "--app", str(app), "--client-num", "2", "--node-config", value,
                 "--log-dir", str(tmp_path / "logs"), timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and runs(tmp_path / "logs") == []


def test_a_bad_node_config_in_the_hosts_file_names_its_line(tmp_path):
    hosts = tmp_path / "devices.toml"
    hosts.write_text('[[device]]\nhost = "pi-01"\nslots = 2\nnode-config = { partition-id = 4 }\n')
    result = run("fl-launch", "--hosts", str(hosts), "--app", str(reader_app(tmp_path)), "--client-num", "2",
                 "--log-dir", str(tmp_path / "logs"), timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{hosts}:4:" in result.stderr and "partition-id is set by fl-launch" in result.stderr
    assert runs(tmp_path / "logs") == []


@pytest.mark.slow
@pytest.mark.skipif(lab_devices.available() is not None, reason=str(lab_devices.available()))
def test_a_devices_node_config_wins_for_its_clients(tmp_path):
    data_files(tmp_path / "data", "dev0", 2)
    data_files(tmp_path / "data", "cli", 2)
    app = reader_app(tmp_path)
    with lab_devices.make_devices(tmp_path / "lab", 2) as lab:
        # the devices run this checkout's launcher (the one under test), as the launcher here does
        hosts = lab.hosts_file(slots=1, extra=f'env = {{ PYTHONPATH = "{Path(__file__).parents[1]}" }}')
        text = hosts.read_text().replace(
            'host = "dev0"\n', f'host = "dev0"\nnode-config = {{ dataset-path = "{tmp_path}/data/dev0_{{i}}.txt" }}\n')
        hosts.write_text(text)
        tag = "test-node-config-devices"
        result = run("fl-launch", "--hosts", str(hosts), "--ssh-config", str(lab.ssh_config), "--app", str(app),
                     "--client-num", "2", "--run-config", "num-server-rounds=1 min-nodes=2",
                     "--node-config", f"dataset-path=\"{tmp_path}/data/cli_{{i}}.txt\" label=\"{{i}}/{{n}}\"",
                     "--log-dir", str(tmp_path / "logs"), "--kill-tag", tag, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        [run_dir] = runs(tmp_path / "logs")
        hosts_of = {p["client"]: p["host"] for p in run_json(run_dir)["processes"] if p["role"] == "clientapp"}
        assert hosts_of == {0: "dev0", 1: "dev1"}
        assert reads(run_dir, 0) == ["dev0 file of client 0 (3) | label: 0/2 | partition 0"]  # the device's value
        assert reads(run_dir, 1) == ["cli file of client 1 (10) | label: 1/2 | partition 1"]   # the option's
        for device in lab.devices:
            assert device.tagged_pids(tag) == []
