"""Stopping: Ctrl-C in the foreground, fl-finish on a detached run, and only the tagged."""

import os
import signal
import subprocess
import sys

from launcher.processes.tagged import tagged_processes
from tests.helpers import run, run_json, running, runs, start, wait_until_nothing_tagged


def test_sigint_during_round_one_stops_everything(tmp_path):
    with running(
        "--client-num", "2", "--rounds", "50", "--grace", "5", log_dir=tmp_path, timeout=120
    ) as (proc, run_dir):
        assert len(tagged_processes(run_dir.name)) >= 6
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    info = run_json(run_dir)
    assert info["status"] == "interrupted" and "SIGINT" in info["reason"]
    assert wait_until_nothing_tagged(run_dir.name) == []
    assert all(p["exit_code"] is not None for p in info["processes"])


def _decoy(tag: str, tmp_path):
    """Processes that carry the tag text but not the marker: fl-finish must not touch them."""
    named = tmp_path / f"{tag}.txt"
    named.write_text("a file named after the tag, held open")
    return [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", tag]),
        subprocess.Popen(["bash", "-c", f"exec -a {tag} sleep 600"]),  # its name is the tag
        subprocess.Popen([sys.executable, "-c", f"import time; f = open({str(named)!r}); time.sleep(600)"]),
        subprocess.Popen(["sleep", "600"], env=dict(os.environ, FL_LAUNCH_TAG=tag + "x")),
    ]


def test_detached_run_is_stopped_by_fl_finish_and_nothing_else(tmp_path):
    tag = "detach-test-1"
    result = run("fl-launch", "--client-num", "2", "--rounds", "50", "--log-dir", str(tmp_path),
                 "--kill-tag", tag, "--detach", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"fl-finish --kill-tag {tag}" in result.stdout
    run_dir = runs(tmp_path)[0]
    info = run_json(run_dir)
    assert info["status"] == "running" and info["kill_tag"] == tag
    supervisor = info["supervisor"]["pid"]
    tagged = {p.pid for p in tagged_processes(tag)}
    live = {p["role"]: p["pid"] for p in info["processes"] if p["exit_code"] is None and p["role"] != "client"}
    clients = [p["pid"] for p in info["processes"] if p["exit_code"] is None and p["role"] == "client"]
    assert {"superlink", "forkserver", "flwr-run"} <= set(live) and len(clients) == 2, info["processes"]
    # the supervisor, every live process it records, and what the SuperLink started (its SuperExec, the ServerApp)
    assert {supervisor, *live.values(), *clients} < tagged and len(tagged) >= 7, (tagged, info["processes"])
    decoys = _decoy(tag, tmp_path)
    try:
        dry = run("fl-finish", "--kill-tag", tag, "--dry-run", "--log-dir", str(tmp_path))
        assert dry.returncode == 0 and "would stop" in dry.stdout
        # the run's own processes are all still there (task processes come and go with each round)
        lasting = {p["pid"] for p in run_json(run_dir)["processes"] if p["exit_code"] is None} | {supervisor}
        assert lasting <= {p.pid for p in tagged_processes(tag)} and len(lasting) >= 6  # 2 one-process clients
        done = run("fl-finish", "--kill-tag", tag, "--log-dir", str(tmp_path), "--grace", "5")
        assert done.returncode == 0, done.stdout + done.stderr
        assert str(supervisor) in done.stdout
        assert wait_until_nothing_tagged(tag) == []
        assert all(d.poll() is None for d in decoys)
    finally:
        for d in decoys:
            d.kill()
            d.wait()
    info = run_json(run_dir)
    assert info["status"] == "interrupted" and info["finish"][0]["survived"] == []
    assert all(p["exit_code"] is not None for p in info["processes"])


def test_fl_finish_kills_what_ignores_sigterm(tmp_path):
    """A process as a run starts them (tag and run id in its environment) that ignores SIGTERM."""
    tag = "stubborn-1"
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                               "print('ready', flush=True); time.sleep(600)"],
        env=dict(os.environ, FL_LAUNCH_TAG=tag, FL_LAUNCH_RUN_ID="20261124-000000-0000"),
        stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "ready"
    result = run("fl-finish", "--kill-tag", tag, "--grace", "1", "--log-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout
    assert "killed" in result.stdout
    assert stubborn.wait(timeout=10) == -signal.SIGKILL


def test_fl_finish_bad_input(tmp_path):
    for args in (["--kill-tag", ""], ["--kill-tag", "bad tag;rm"], ["--log-dir", str(tmp_path)],
                 ["--run", "20990101-000000-dead", "--log-dir", str(tmp_path)], ["--kill-tag", "a", "--run", "b"]):
        result = run("fl-finish", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_two_runs_at_once_do_not_collide(tmp_path):
    first = start("fl-launch", "--client-num", "2", "--rounds", "50", "--log-dir", str(tmp_path), "--kill-tag",
                  "twin-a", "--detach")
    second = start("fl-launch", "--client-num", "2", "--rounds", "50", "--log-dir", str(tmp_path), "--kill-tag",
                   "twin-b", "--detach")
    try:
        assert first.wait(timeout=180) == 0 and second.wait(timeout=180) == 0
        a, b = (next(d for d in runs(tmp_path) if run_json(d)["kill_tag"] == t) for t in ("twin-a", "twin-b"))
        assert a != b and run_json(a)["status"] == run_json(b)["status"] == "running"
        ports = [{p["port"] for p in run_json(d)["processes"] if p["port"]} for d in (a, b)]
        assert not ports[0] & ports[1]
        stop_a = run("fl-finish", "--kill-tag", "twin-a", "--log-dir", str(tmp_path), "--grace", "5")
        assert stop_a.returncode == 0
        assert wait_until_nothing_tagged("twin-a") == []
        assert len(tagged_processes("twin-b")) >= 7 and run_json(b)["status"] == "running"
        assert str(b) not in (a / "server" / "server.log").read_text()  # each checkpoints into its own folder
        assert str(a) not in (b / "server" / "server.log").read_text()
    finally:
        run("fl-finish", "--kill-tag", "twin-a", "--log-dir", str(tmp_path), "--grace", "5")
        run("fl-finish", "--kill-tag", "twin-b", "--log-dir", str(tmp_path), "--grace", "5")
    assert wait_until_nothing_tagged("twin-b") == []
