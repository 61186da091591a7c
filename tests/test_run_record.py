"""One run record, built once: options checked once (the fleet file read once, the resources checked once),
the app's settings derived from them, and a run.json of today's format still read by everything that reads one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from launcher.cli.config_file import read_config
from launcher.cli.launch import OPTION_NAMES
from launcher.run.folder import RunFolder
from launcher.run.options import LaunchOptions
from launcher.run.plan import prepare_run
from launcher.run.supervisor import Supervisor
from tests.helpers import runs
from tests.test_app_requirements import with_dependencies

ROOT = Path(__file__).resolve().parents[1]

# fl-launch in a process whose interpreter counts each open() of the files named (Python's audit events)
COUNTING = """
import atexit, json, runpy, sys
out, watched = sys.argv[1], sys.argv[2:4]
counts = {w: 0 for w in watched}
def hook(event, args):
    if event == "open" and args and str(args[0]) in counts:
        counts[str(args[0])] += 1
atexit.register(lambda: open(out, "w").write(json.dumps(counts)))
sys.addaudithook(hook)
sys.argv = ["fl-launch", *sys.argv[4:]]
runpy.run_module("launcher.cli.launch", run_name="__main__")
"""


def test_a_launch_reads_the_fleet_file_and_checks_the_memory_once(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[profile]]\nname = "a"\nclients = 2\ncpu = 0.5\n')
    app = with_dependencies(tmp_path, "not-a-dist-anyone-has>=2.1")  # refused once the run is planned
    counts = tmp_path / "counts.json"
    done = subprocess.run([sys.executable, "-c", COUNTING, str(counts), str(fleet), "/proc/meminfo",
                           "--client-num", "2", "--app", str(app), "--fleet", str(fleet),
                           "--log-dir", str(tmp_path / "logs")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "not-a-dist-anyone-has" in done.stderr, done.stdout + done.stderr
    assert json.loads(counts.read_text()) == {str(fleet): 1, "/proc/meminfo": 1}
    assert runs(tmp_path / "logs") == []


def todays_run_json(log_dir: Path) -> dict:
    """run.json's options, settings and plan as fl-launch wrote them before the run record was one
    (prepare_run of LaunchOptions(client_num=2, rounds=2, local_epochs=1, samples_per_client=40,
    round_deadline=30, round_timeout=60) at bdfd3ae)."""
    options = {
        "client_num": 2, "task": "train", "rounds": 2, "local_epochs": 1, "batch_size": 32, "lr": 0.001,
        "fraction_fit": None, "clients_per_round": None, "min_clients": None, "round_timeout": 60.0, "seed": 0,
        "log_dir": str(log_dir), "kill_tag": "h10-record", "dataset": "digits", "data_dir": None, "partition": None,
        "alpha": 0.5, "samples_per_client": 40, "num_classes": 10, "detach": False, "run": None, "torch_threads": 1,
        "startup_timeout": None, "grace": 10.0, "hosts": None, "ssh_config": None, "tls": False, "max_restarts": 3,
        "remote_data_dir": None, "mode": "auto", "workers": None, "ray_address": None, "model": "",
        "strategy": "fedavg", "proximal_mu": 0.01, "server_lr": 0.0, "beta_1": 0.9, "beta_2": 0.99, "tau": 0.001,
        "app": None, "run_config": None, "node_config": None, "fleet": None, "round_deadline": 30.0,
        "overcommit": 1.0}
    settings = {
        "task": "train", "rounds": 2, "local-epochs": 1, "batch-size": 32, "lr": 0.001, "clients-per-round": 0,
        "min-clients": 0, "round-timeout": 60.0, "seed": 0, "num-clients": 2, "channels": 1, "num-classes": 10,
        "run-dir": ".", "checkpoint": "", "torch-threads": 1, "start-round": 1, "model": "", "model-path": "",
        "strategy": "fedavg", "proximal-mu": 0.01, "server-lr": 0.0, "beta-1": 0.9, "beta-2": 0.99, "tau": 0.001,
        "virtual": False, "round-deadline": 30.0, "overcommit": 1.0}
    plan = {
        "app_dir": "app", "nodes": [
            {"client": 0, "host": "localhost", "node_config": "client_0/node_config.toml", "samples": 899},
            {"client": 1, "host": "localhost", "node_config": "client_1/node_config.toml", "samples": 898}],
        "startup_timeout": 66.0, "grace": 10.0, "torch_threads": 1, "devices": [], "ssh_config": None, "tls": None,
        "remote_data_dir": None, "max_restarts": 3, "virtual": None, "user_app": False, "run_config": None,
        "node_config": {}}
    return {"options": options, "settings": settings, "plan": plan}


OPTIONS = {"client_num": 2, "rounds": 2, "local_epochs": 1, "samples_per_client": 40, "round_deadline": 30.0,
           "round_timeout": 60.0}


# What options added since bdfd3ae record (their defaults here): --server-address (issue 28), --device and
# --gpus-per-client (issue 30)
ADDED_SINCE = {"options": {"server_address": None, "device": "auto", "gpus_per_client": None},
               "settings": {"device": "auto", "gpus-per-client": 0.0}, "plan": {"server_address": None}}


def test_a_new_run_records_what_todays_fl_launch_recorded(tmp_path):
    folder = prepare_run(LaunchOptions(**OPTIONS, log_dir=str(tmp_path), kill_tag="h10-record"))
    folder.release()
    written = json.loads((folder.path / "run.json").read_text())
    before = todays_run_json(tmp_path)
    assert {part: written[part] for part in before} == {part: {**before[part], **ADDED_SINCE[part]}
                                                        for part in before}


def test_a_run_json_of_todays_format_is_read_by_resume_config_and_the_supervisor(tmp_path):
    folder = prepare_run(LaunchOptions(client_num=2, rounds=1, local_epochs=1, samples_per_client=40,
                                       log_dir=str(tmp_path), kill_tag="h10-record"))
    folder.release()
    run_json = folder.path / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), **todays_run_json(tmp_path)}, indent=2))
    recorded = json.loads(run_json.read_text())["options"]
    # --resume: the run's own options
    resumed = LaunchOptions(**{k: v for k, v in recorded.items() if k in OPTION_NAMES})
    assert resumed == LaunchOptions(**OPTIONS, log_dir=str(tmp_path), kill_tag="h10-record")
    # --config RUN/run.json: the same options, each with its line in the file
    entries = {e.name: e.value for e in read_config(run_json, OPTION_NAMES)}
    assert entries == {k: v for k, v in recorded.items() if k not in ("kill_tag", "detach")}
    # the supervisor: the plan, the app's settings and the limits it watches by
    sup = Supervisor(RunFolder(folder.path))
    assert [n.client for n in sup.plan.local_nodes()] == [0, 1]
    assert (sup.progress.rounds, sup.progress.rounds_done, sup.progress.clients) == (2, 0, 2)
    assert (sup.limits.startup_timeout, sup.limits.round_timeout, sup.settings.round_deadline) == (66.0, 60.0, 30.0)
