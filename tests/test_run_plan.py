"""run.json's "plan" (the launch's facts) read into a RunPlan, with the options, and written back is the very
dict prepare_run wrote; the fields it leaves out are the options'."""

import json
import socket

from launcher.devices.hosts import Device, DevicePlacement
from launcher.run.plan import LaunchOptions, prepare_run
from launcher.run.record import RunRecord
from launcher.run.run_plan import NodePlacement, RunPlan

HOSTS = """
[defaults]
python = "/opt/fl/bin/python"
[[device]]
host = "pi-01"
slots = 1
env = { OMP_NUM_THREADS = "1" }
[[device]]
host = "pi-02"
slots = 2
node-config = { dataset-path = "/data/part_{i}" }
"""


def _round_trip(opts: LaunchOptions) -> RunPlan:
    data = prepare_run(opts).read()
    written = data["plan"]
    plan = RunRecord.from_json(data).plan
    assert plan.facts_json() == written
    assert json.dumps(plan.facts_json()) == json.dumps(written)  # the same keys in the same order
    assert (plan.grace, plan.max_restarts, plan.torch_threads, plan.startup_timeout) == \
           (opts.grace, opts.max_restarts, opts.torch_threads, opts.startup_deadline())
    return plan


def test_local_run_plan_round_trips(tmp_path):
    plan = _round_trip(LaunchOptions(client_num=3, log_dir=str(tmp_path), node_config='color="blue"'))
    assert [n.client for n in plan.local_nodes()] == [0, 1, 2] and plan.devices == () and plan.tls is None
    assert plan.nodes[1].node_config == "client_1/node_config.toml" and plan.node_config == {"color": "blue"}


def test_device_tls_and_virtual_plans_round_trip(tmp_path):
    (tmp_path / "hosts.toml").write_text(HOSTS)
    plan = _round_trip(LaunchOptions(client_num=3, log_dir=str(tmp_path / "logs"), hosts=str(tmp_path / "hosts.toml"),
                                     tls=True, remote_data_dir="/data", max_restarts=1))
    assert [(p.device.host, p.clients) for p in plan.devices] == [("pi-01", (0,)), ("pi-02", (1, 2))]
    assert plan.local_nodes() == [] and str(plan.tls.ca) == "tls/ca.pem"
    plan = _round_trip(LaunchOptions(client_num=3, log_dir=str(tmp_path / "logs"), mode="virtual", workers=2))
    assert plan.virtual.workers == 2 and plan.local_nodes() == []


def test_a_ray_cluster_plan_round_trips(tmp_path):
    with socket.socket() as head:  # something that answers at the address, as a Ray head would
        head.bind(("127.0.0.1", 0))
        head.listen()
        address = f"127.0.0.1:{head.getsockname()[1]}"
        plan = _round_trip(LaunchOptions(client_num=3, log_dir=str(tmp_path), mode="virtual", ray_address=address))
    assert plan.virtual.ray_address == address


def test_an_older_plan_reads_with_defaults():
    plan = RunPlan.from_json({"app_dir": "app", "nodes": [{"client": 0, "host": "localhost", "node_config": None}],
                              "startup_timeout": 63.0, "grace": 10.0, "torch_threads": 1})
    assert plan.nodes == (NodePlacement(0, samples=0),) and plan.max_restarts == 0 and not plan.user_app
    assert plan.devices == () and plan.virtual is None and plan.node_config == {}
    placed = DevicePlacement(Device("pi-01"), (2, 3))
    assert DevicePlacement.from_json(placed.to_json()) == placed
