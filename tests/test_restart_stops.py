"""A client's restart and a stop that begins while it is under way (review of issue 23, items 2, 3, 8).

The supervisor restarts a client in steps that take seconds (the pair's other process stopped with a grace, then
the new pair started); a stop that begins in between (a signal, the run folder removed) must still win. Each case
runs the supervisor's own restart step in a process of its own, with real processes for the client: the pair's
other process does the harm itself when the restart's SIGTERM reaches it, so the stop lands inside the restart's
stop window every time. Judged by a file the new pair's start would touch, the client log's lines counted with
this file's regex, run.json read from disk and the folder listed from disk.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

RESTART_LINE = re.compile(r"\[launcher\] clientapp exited, restart \d+ of \d+")

# The pair's other process (its SuperNode): on the restart's SIGTERM it does the harm, then takes a while to go.
PARTNER = """
import os, shutil, signal, sys, time
harm, supervisor, run_dir, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def on_term(*_):
    if harm == "signal":
        os.kill(supervisor, signal.SIGTERM)
    elif harm == "remove":
        shutil.rmtree(run_dir)
    time.sleep(0.5)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(ready, "w").close()
while True:
    time.sleep(1)
"""


def restart_under_a_stop(run_dir: str, harm: str, started_file: str) -> None:
    """In its own process: a Supervisor of the prepared run at ``run_dir`` whose client 0's clientapp exited;
    its restart step runs while the pair's SuperNode does ``harm`` on its SIGTERM. Prints what it saw."""
    from launcher.processes.nodes import NodeStart
    from launcher.processes.restarts import SettlingExits
    from launcher.processes.roles import Role
    from launcher.run.folder import RunFolder
    from launcher.run.parts import LocalClients
    from launcher.run.supervisor import Supervisor

    folder = RunFolder(run_dir)
    sup = Supervisor(folder)
    sup.signals.install()
    table, path = sup.table, Path(run_dir)
    logs = path.parent / f"{path.name}-logs"  # outside the run folder: nothing here may make it again
    logs.mkdir()
    table.spawn(Role.FLWR_RUN, ["sleep", "60"], log=logs / "flwr.log")
    ready = logs / "partner.ready"
    table.spawn(Role.SUPERNODE, [sys.executable, "-c", PARTNER, harm, str(os.getpid()), run_dir, str(ready)],
                log=logs / "supernode.log", client=0)
    victim = table.spawn(Role.CLIENTAPP, ["true"], log=logs / "clientapp.log", client=0)
    while not ready.exists():
        time.sleep(0.02)
    clients = LocalClients(table, NodeStart(path, "127.0.0.1:1", {}, 1), {0: 0}, sup.plan.max_restarts, None,
                           on_restart=sup.journal.restart)
    clients.exits = SettlingExits(settle=0.0)
    while victim.alive:
        clients.exited(table.reap())
        time.sleep(0.02)
    new_pids: list[int] = []  # the new pair's start: a real process that touches a file, then lives on
    clients.start_node = lambda client, port: new_pids.append(table.spawn(
        Role.CLIENTAPP, ["sh", "-c", f"touch {started_file}; exec sleep 30"], log=logs / "new.log", client=client).pid)
    sup.local_clients, sup.parts = clients, [clients]
    sup.logs.follow(resumed=False)
    if harm == "end":  # the run's own end was read from server.log before the exit settled
        sup.progress.said = ("finished", "")
    sup.progress.phase = "training"
    try:
        sup._restart_settled()
        error = None
    except Exception as err:  # noqa: BLE001  the supervisor's run() would end the run on it: the test judges the rest
        error = f"{type(err).__name__}: {err}"
    time.sleep(0.5)  # a new pair, had one started, has touched its file by now
    said = {"stop_reason": sup.signals.reason, "error": error, "new_pids": new_pids}
    if (path / "run.json").exists():  # run.json right after the restart step, and what the run says it does
        sup._say_activity()
        info = json.loads((path / "run.json").read_text())
        said["recorded"] = sorted(p["pid"] for p in info.get("processes", []) if p["exit_code"] is None)
        said["activity"] = info.get("activity")
    print(json.dumps(said))
    table.stop_all(grace=1)


@pytest.fixture
def prepared(tmp_path):
    from launcher.run.options import LaunchOptions
    from launcher.run.plan import prepare_run

    folder = prepare_run(LaunchOptions(client_num=2, rounds=1, local_epochs=1, samples_per_client=40,
                                       log_dir=str(tmp_path / "logs"), kill_tag=f"t-restart-{os.getpid()}"))
    folder.release()
    return folder.path


def _run_scenario(run_dir: Path, harm: str, started: Path) -> dict:
    code = ("import sys; from tests.test_restart_stops import restart_under_a_stop; "
            "restart_under_a_stop(*sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", code, str(run_dir), harm, str(started)], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[1], stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_signal_during_a_restarts_stop_window_starts_nothing(prepared, tmp_path):
    started = tmp_path / "new-pair-started"
    seen = _run_scenario(prepared, "signal", started)
    assert (seen["stop_reason"], seen["error"]) == (signal.Signals.SIGTERM.name, None)  # it came during the restart
    assert not started.exists() and seen["new_pids"] == []  # no new pair
    info = json.loads((prepared / "run.json").read_text())
    assert not info.get("restarts")
    assert not RESTART_LINE.findall((prepared / "client_0" / "client.log").read_text()
                                    if (prepared / "client_0" / "client.log").exists() else "")


def test_a_run_folder_removed_during_a_restarts_stop_window_is_not_made_again(prepared, tmp_path):
    started = tmp_path / "new-pair-started"
    seen = _run_scenario(prepared, "remove", started)
    assert not prepared.exists(), sorted(str(p.relative_to(prepared)) for p in prepared.rglob("*"))
    assert not started.exists()
    assert seen == {"stop_reason": None, "error": None, "new_pids": []}


def test_a_restarted_clients_new_processes_are_in_run_json_at_once(prepared, tmp_path):
    started = tmp_path / "new-pair-started"
    seen = _run_scenario(prepared, "none", started)
    assert started.exists() and len(seen["new_pids"]) == 1 and seen["error"] is None
    assert seen["new_pids"][0] in seen["recorded"]  # not only at the next exit
    info = json.loads((prepared / "run.json").read_text())
    assert [(r["client"], r["restarted"]) for r in info["restarts"]] == [(0, True)]
    assert len(RESTART_LINE.findall((prepared / "client_0" / "client.log").read_text())) == 1
    assert seen["activity"] == "restarting client 0"  # until its new node registers


def test_an_exit_during_the_runs_own_end_is_not_said_to_restart(prepared, tmp_path):
    started = tmp_path / "new-pair-started"
    seen = _run_scenario(prepared, "end", started)
    assert not started.exists() and seen["new_pids"] == []
    assert seen["activity"] is None  # not "restarting client 0" while the run stops
