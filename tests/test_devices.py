"""Clients on devices over a real sshd: each device its own network, PID and mount namespace."""

import json
import os
import re
import shlex
import shutil
import signal
import site
import subprocess
import sys
import time
from importlib.metadata import distributions, version
from pathlib import Path

import psutil
import pytest

from benchmarks.femnist_files import write_mindspore
from launcher.pyenv.python_facts import canonical_name
from tests import devices as lab_devices
from tests.devices import THIS_CHECKOUT
from tests.helpers import Seen, run, run_json, running, runs, wait_until_nothing_tagged
from tests.test_user_app import APP

pytestmark = [pytest.mark.skipif(lab_devices.available() is not None, reason=str(lab_devices.available())),
              pytest.mark.slow]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_devices.make_devices(tmp_path_factory.mktemp("lab"), 2) as lab:
        yield lab


def launch(lab, log_dir, *args, slots=2, **kw):
    return run("fl-launch", "--hosts", str(lab.hosts_file(slots=slots)), "--ssh-config", str(lab.ssh_config),
               "--log-dir", str(log_dir), *args, **kw)


def test_two_devices_two_clients_each(lab, tmp_path):
    result = launch(lab, tmp_path, "--client-num", "4", "--rounds", "2", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = runs(tmp_path)[0]
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == 2
    for i in range(4):
        text = (run_dir / f"client_{i}" / "client.log").read_text()
        assert text.count("evaluate acc:") == 2 and "[final] final model accuracy" in text
    by_host = {}
    for proc in info["processes"]:
        by_host.setdefault(proc["host"], []).append(proc["role"])
    assert sorted(by_host["dev0"]) == ["agent", "client", "client", "forkserver"]  # the built-in app: one a client
    assert sorted(by_host["dev1"]) == ["agent", "client", "client", "forkserver"]
    assert by_host["localhost"].count("tunnel") == 2 and "client" not in by_host["localhost"]
    (run_dir / "client_3" / "client.log").unlink()
    pulled = run("fl-stats", "--pull", "--run", run_dir.name, "--log-dir", str(tmp_path),
                 "--ssh-config", str(lab.ssh_config))  # a run folder is data: ssh's config is named each time
    assert pulled.returncode == 0 and "dev1: clients 2, 3: pulled" in pulled.stdout, pulled.stdout + pulled.stderr
    assert (run_dir / "client_3" / "client.log").read_text().count("evaluate acc:") == 2
    for device in lab.devices:  # each device's own copy of its clients only
        remote_run = device.root / "runs" / run_dir.name
        assert sorted(p.name for p in (remote_run / "data").iterdir()) == \
            (["client_0.npz", "client_1.npz"] if device.name == "dev0" else ["client_2.npz", "client_3.npz"])
        assert device.tagged_pids(info["kill_tag"]) == []


def test_femnist_writers_on_devices_one_sampled_per_round(lab, tmp_path):
    """MindSpore's writer folders: each device receives its own writers' .bin files, nobody else's."""
    names = sorted(write_mindspore(tmp_path / "ms", writers=3, per_writer=(20, 30)))
    result = launch(lab, tmp_path / "logs", "--client-num", "2", "--rounds", "2", "--local-epochs", "1",
                    "--dataset", "femnist", "--data-dir", str(tmp_path / "ms"), "--clients-per-round", "1",
                    slots=1, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = runs(tmp_path / "logs")[0]
    texts = [(run_dir / f"client_{i}" / "client.log").read_text() for i in range(2)]
    assert sum(t.count("evaluate acc:") for t in texts) == 2  # one client per round
    assert all("[final] final model accuracy" in t for t in texts)
    for device, writer in zip(lab.devices, names):
        staged = device.root / "runs" / run_dir.name / "data"
        [folder] = staged.iterdir()
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (tmp_path / "ms" / writer).iterdir())


def test_a_users_app_on_devices(lab, tmp_path):
    """The app's code travels in Flower's FAB; its output lands in each client's log, pulled back here."""
    result = launch(lab, tmp_path / "logs", "--app", str(APP), "--client-num", "2", "--run-config",
                    "num-server-rounds=2 min-nodes=2", slots=1, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = runs(tmp_path / "logs")[0]
    assert run_json(run_dir)["rounds_done"] == 2
    for i in range(2):
        text = (run_dir / f"client_{i}" / "client.log").read_text()
        assert text.count(f"partition {i} of 2: local loss") == 2
        assert "[round] iteration:2 end" in text and "type:evaluate metrics:eval_loss:" in text
    for device in lab.devices:
        assert device.tagged_pids(run_json(run_dir)["kill_tag"]) == []


def test_detached_remote_run_is_stopped_by_fl_finish(lab, tmp_path):
    tag = "remote-detach-1"
    result = launch(lab, tmp_path, "--client-num", "4", "--rounds", "50", "--kill-tag", tag, "--detach", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for device in lab.devices:
        assert len(device.tagged_pids(tag)) >= 4  # the agent, the fork server, two clients (one process each)
    done = run("fl-finish", "--kill-tag", tag, "--log-dir", str(tmp_path), "--grace", "5",
               "--ssh-config", str(lab.ssh_config), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for device in lab.devices:
        assert device.tagged_pids(tag) == [], device.name
    assert wait_until_nothing_tagged(tag) == []
    assert run_json(runs(tmp_path)[0])["status"] == "interrupted"


def test_dropped_ssh_connection_does_not_stop_the_clients(lab, tmp_path):
    with running(
        "--hosts", str(lab.hosts_file(slots=2)), "--ssh-config", str(lab.ssh_config), "--client-num", "4",
        "--rounds", "4", log_dir=tmp_path
    ) as (proc, run_dir):
        tunnels = [p for p in run_json(run_dir)["processes"] if p["role"] == "tunnel"]
        for tunnel in tunnels:  # the ssh client carrying a device's traffic, gone
            os.kill(tunnel["pid"], signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "reconnecting" in out
    info = run_json(run_dir)
    assert info["rounds_done"] == 4 and len([p for p in info["processes"] if p["role"] == "tunnel"]) >= 4
    for i in range(4):  # the logs still arrive, whole
        assert (run_dir / f"client_{i}" / "client.log").read_text().count("evaluate acc:") == 4


def test_check_reports_a_good_and_an_unreachable_device(lab, tmp_path):
    hosts = lab.hosts_file(slots=1)
    # nothing listens on port 1 of loopback: refused at once, and no traffic leaves the machine
    hosts.write_text(hosts.read_text() + '\n[[device]]\nhost = "127.0.0.1"\nport = 1\n')
    result = run("fl-launch", "--hosts", str(hosts), "--ssh-config", str(lab.ssh_config), "--check", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("│")}
    assert "yes" in rows["dev0"] and "yes" in rows["dev1"] and "2.13.0" in rows["dev0"]
    assert "NO" in rows["127.0.0.1"] and "unreachable" in rows["127.0.0.1"]


@pytest.mark.parametrize("entry, message", [
    ('host = "dev0; touch /tmp/owned"', "host must be"),
    ('host = "$(reboot)"', "host must be"),
    ('host = "dev0"\nuser = "root`id`"', "user must be"),
    ('host = "dev0"\nworkdir = "a\\nb"', "workdir must be"),
    ('host = "dev0"\nenv = { "A;B" = "x" }', "env"),
    ('host = "dev0"\nslotz = 2', "unknown key 'slotz'"),
])
def test_hosts_entries_cannot_inject_shell(tmp_path, entry, message):
    hosts = tmp_path / "devices.toml"
    hosts.write_text(f"[[device]]\n{entry}\n")
    result = run("fl-launch", "--hosts", str(hosts), "--client-num", "1", "--log-dir", str(tmp_path / "logs"))
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip()
    assert line.startswith(f"fl-launch: error: {hosts}:") and message in line
    assert runs(tmp_path / "logs") == [] and not os.path.exists("/tmp/owned")


def test_more_clients_than_slots_is_refused_before_anything_starts(lab, tmp_path):
    result = launch(lab, tmp_path, "--client-num", "5")
    assert result.returncode == 2 and "do not fit the 4 slots" in result.stderr
    assert runs(tmp_path) == []


def test_shell_metacharacters_in_a_tag_are_refused(lab, tmp_path):
    result = launch(lab, tmp_path, "--client-num", "2", "--kill-tag", "x;touch /tmp/owned")
    assert result.returncode == 2 and "--kill-tag" in result.stderr
    assert runs(tmp_path) == [] and not os.path.exists("/tmp/owned")


def test_tls_run_on_devices(lab, tmp_path):
    result = launch(lab, tmp_path, "--client-num", "2", "--rounds", "1", "--tls", slots=1, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "without --tls" not in result.stderr
    run_dir = runs(tmp_path)[0]
    for device in lab.devices:  # the CA went over with the partitions; the nodes verified against it
        remote = device.root / "runs" / run_dir.name
        assert (remote / "tls" / "ca.pem").read_bytes() == (run_dir / "tls" / "ca.pem").read_bytes()
        assert not (remote / "tls" / "ca.key").exists()
    assert run_json(run_dir)["rounds_done"] == 1


def test_a_remote_run_without_tls_says_so_in_one_line(lab, tmp_path):
    result = launch(lab, tmp_path, "--client-num", "2", "--rounds", "1", timeout=300)
    assert result.returncode == 0
    notes = [line for line in result.stderr.splitlines() if "without --tls" in line]
    assert len(notes) == 1


def _with_python(lab, python) -> Path:
    hosts = lab.hosts_file(slots=1)
    hosts.write_text(hosts.read_text().replace(f'python = "{sys.executable}"', f'python = "{python}"'))
    return hosts


LACKING = ("psutil", "click", "pip")  # a platform wheel, a pure one, and pip itself


def _site_without(names: set[str], shadow: Path) -> Path:
    """A folder of links to everything this environment's site-packages hold but the distributions ``names``
    (and no .pth files): what a device's Python sees through a .pth line, the same whether the suite runs in
    the system's Python or a virtualenv."""
    hidden = set()
    for dist in distributions():
        if canonical_name(dist.metadata["Name"]) in names:
            hidden |= {(Path(dist.locate_file("")), Path(f).parts[0])
                       for f in dist.files or [] if Path(f).parts[0] != ".."}
    shadow.mkdir()
    for site_dir in map(Path, site.getsitepackages()):
        for entry in sorted(site_dir.iterdir()) if site_dir.is_dir() else []:
            if (site_dir, entry.name) not in hidden and entry.suffix != ".pth" and not (shadow / entry.name).exists():
                (shadow / entry.name).symlink_to(entry)
    return shadow


def test_install_puts_this_version_on_the_device_and_check_sees_it(lab, tmp_path):
    """The device has no network: what it lacks of the launcher's requirements comes from here, and only that."""
    bare = lab.devices[0].root / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    before = run("fl-launch", "--hosts", str(_with_python(lab, f"{bare}/bin/python")), "--ssh-config",
                 str(lab.ssh_config), "--check")
    assert before.returncode == 1 and "fl-launch missing" in before.stdout and "flwr missing" in before.stdout

    venv = lab.devices[0].root / "venv"  # no pip; everything of this environment but LACKING and fl-launch
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    shadow = _site_without({"fl-launch", *LACKING}, lab.devices[0].root / "site")
    purelib = subprocess.run([f"{venv}/bin/python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "lab-site.pth").write_text(f"{shadow}\n")
    python = f"{venv}/bin/python"
    assert lab.devices[0].ssh(f"{python} -c 'import torch, numpy'").returncode == 0
    for name in LACKING:
        assert lab.devices[0].ssh(f"{python} -c 'import {name}'").returncode != 0, name
    hosts = _with_python(lab, python)
    done = run("fl-launch", "--hosts", str(hosts), "--ssh-config", str(lab.ssh_config), "--install", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installed fl-launch 0.1.0" in done.stdout
    carried = sorted(p.name.split("-")[0] for p in (lab.devices[0].root / "wheels").glob("*.whl"))
    assert carried == sorted(["fl_launch", *LACKING])  # only what was missing travelled
    script = ("import importlib.metadata as m, launcher, psutil, click\n"
              "print(launcher.__file__, psutil.__file__, click.__file__, m.version('psutil'), m.version('click'))")
    where = lab.devices[0].ssh(f"{python} -c {shlex.quote(script)}").stdout.split()
    assert all(path.startswith(str(venv)) for path in where[:3]), where  # the wheels, not this checkout
    assert where[3:] == [version("psutil"), version("click")]
    after = run("fl-launch", "--hosts", str(hosts), "--ssh-config", str(lab.ssh_config), "--check")
    assert after.returncode == 0, after.stdout


def test_remote_data_dir_reads_partitions_already_on_the_devices(lab, tmp_path):
    first = launch(lab, tmp_path, "--client-num", "2", "--rounds", "1", slots=1, timeout=300)
    assert first.returncode == 0, first.stderr
    earlier = runs(tmp_path)[0].name
    missing = launch(lab, tmp_path, "--client-num", "2", "--rounds", "1", "--remote-data-dir", "runs/nowhere",
                     slots=1, timeout=300)
    assert missing.returncode == 1 and "runs/nowhere" in missing.stdout
    again = launch(lab, tmp_path, "--client-num", "2", "--rounds", "1", "--remote-data-dir", f"runs/{earlier}/data",
                   slots=1, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    latest = runs(tmp_path)[-1]
    for device in lab.devices:
        assert not (device.root / "runs" / latest.name / "data").exists()  # nothing copied
        node = next((device.root / "runs" / latest.name).glob("client_*/node_config.toml")).read_text()
        assert f"runs/{earlier}/data/client_" in node
    assert run_json(latest)["final_accuracy"] == run_json(runs(tmp_path)[0])["final_accuracy"]


def test_a_device_off_the_network_sits_out_and_comes_back(lab, tmp_path):
    from launcher.stats.follow import LogFollower

    def round_ends(run_dir):
        return [e.values for e in LogFollower(run_dir / "server" / "server.log").events()
                if e.kind == "server_round_end"]

    cut = lab.devices[1]
    rounds = 40  # rounds take a few seconds: enough of them that the device is back before the end
    with running(
        "--hosts", str(lab.hosts_file(slots=1)), "--ssh-config", str(lab.ssh_config), "--client-num", "2",
        "--rounds", str(rounds), "--round-timeout", "150",
        "--min-clients", "1", log_dir=tmp_path  # a round dev1 drops out of mid-way is aggregated from dev0's reply
    ) as (proc, run_dir):
        try:
            deadline = time.monotonic() + 120
            while len(round_ends(run_dir)) < 1 and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.2)
            cut.link(up=False)
            before_cut = len(round_ends(run_dir))
            # SSH finds the device gone after its keep-alives go unanswered (~20 s), and a round goes on without
            # it: plugged back in once such a round ended (a fixed cut raced that on a loaded host)
            deadline = time.monotonic() + 90
            while (not any(e["replies"] == 1 for e in round_ends(run_dir)[before_cut:])
                   and time.monotonic() < deadline):
                assert proc.poll() is None
                time.sleep(0.5)
            cut.link(up=True)
            out, _ = proc.communicate(timeout=600)
        finally:
            cut.link(up=True)
    assert proc.returncode == 0, out
    ends = round_ends(run_dir)
    assert [e["round"] for e in ends] == list(range(1, rounds + 1))
    assert all(e["seconds"] < 75 for e in ends), [e["seconds"] for e in ends]  # nobody waited out 150 s
    assert any(e["replies"] == 1 for e in ends[before_cut:])  # dev1's client missed rounds while away (within 90 s)
    assert ends[-1]["replies"] == 2  # and was back for the last one
    assert "sit out" in out and "dev1: back" in out
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == [f"round_{r:04d}.pt" for r in range(rounds + 1)]
    for device in lab.devices:
        assert device.tagged_pids(run_json(run_dir)["kill_tag"]) == []


def test_a_client_killed_on_a_device_is_restarted_there(lab, tmp_path):
    with running(
        "--hosts", str(lab.hosts_file(slots=1, extra=THIS_CHECKOUT)), "--ssh-config", str(lab.ssh_config),
        "--client-num", "2", "--rounds", "5", "--round-timeout", "150", "--max-restarts", "2",
        "--min-clients", "1", log_dir=tmp_path  # the round the client dies in is aggregated from the other's reply
    ) as (proc, run_dir):
        victim = None
        while victim is None:  # its pid as the device's own namespace numbers it, from agent.json
            victim = next((p for p in run_json(run_dir)["processes"]
                           if p["host"] == "dev0" and p["role"] == "client"), None)
            time.sleep(0.2)
        assert lab.devices[0].ssh(f"kill -9 {victim['pid']}").returncode == 0
        out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    info = run_json(run_dir)
    assert info["rounds_done"] == 5
    (restart,) = info["restarts"]
    assert (restart["host"], restart["client"], restart["cause"], restart["restarted"]) == \
        ("dev0", 0, "killed by SIGKILL", True)
    assert restart["node_id"] is not None
    assert "[launcher] client exited, restart 1 of 2: killed by SIGKILL" in \
        (run_dir / "client_0" / "client.log").read_text()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"round_{r:04d}.pt" for r in range(6)]
    assert lab.devices[0].tagged_pids(info["kill_tag"]) == []


def test_resume_a_remote_run_after_the_superlink_dies(lab, tmp_path):
    from launcher.stats.follow import LogFollower

    with running(
        "--hosts", str(lab.hosts_file(slots=1)), "--ssh-config", str(lab.ssh_config), "--client-num", "2",
        "--rounds", "3", "--grace", "3", log_dir=tmp_path
    ) as (proc, run_dir):
        server_log = LogFollower(run_dir / "server" / "server.log")
        while not any(e.kind == "server_round_end" for e in server_log.events()):
            time.sleep(0.05)
        superlink = next(p for p in run_json(run_dir)["processes"] if p["role"] == "superlink")
        os.kill(superlink["pid"], signal.SIGKILL)
        out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 1, out
    again = run("fl-launch", "--resume", run_dir.name, "--log-dir", str(tmp_path), "--ssh-config",
                str(lab.ssh_config), timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == 3
    start_round = info["resumed_from_round"]
    for client in (0, 1):  # the device wrote the marker into the log that came back
        text = (run_dir / f"client_{client}" / "client.log").read_text()
        assert f"[launcher] resumed from round {start_round}" in text
    for device in lab.devices:
        assert device.tagged_pids(info["kill_tag"]) == []


def test_a_client_restarted_on_a_device_reaches_the_run_within_seconds(lab, tmp_path):
    """The agent reports a restart when it makes it (not at the run's end): the node is marked lost in
    lost_nodes.json, the restart and the new pair's processes are in run.json, while the run goes on."""
    with running(
        "--hosts", str(lab.hosts_file(slots=1, extra=THIS_CHECKOUT)), "--ssh-config", str(lab.ssh_config),
        "--client-num", "2", "--rounds", "200", "--round-timeout", "300", "--max-restarts", "2",
        "--min-clients", "1", "--grace", "3", log_dir=tmp_path
    ) as (proc, run_dir):
        victim = None
        while victim is None:  # its pid as the device's own namespace numbers it, from agent.json
            victim = next((p for p in run_json(run_dir)["processes"]
                           if p["host"] == "dev0" and p["role"] == "client" and p["exit_code"] is None), None)
            time.sleep(0.2)
        assert lab.devices[0].ssh(f"kill -9 {victim['pid']}").returncode == 0
        killed_at, info, lost = time.monotonic(), {}, []
        while time.monotonic() - killed_at < 15 and not (info.get("restarts") and lost):
            time.sleep(0.2)
            info = run_json(run_dir)
            lost_file = run_dir / "server" / "lost_nodes.json"
            lost = json.loads(lost_file.read_text()) if lost_file.exists() else []
        waited = time.monotonic() - killed_at
        assert proc.poll() is None and info["status"] == "running"  # seen while the run went on
        assert [(r["host"], r["client"], r["restarted"]) for r in info.get("restarts", [])] == [("dev0", 0, True)], \
            f"after {waited:.1f} s: {info.get('restarts')}"
        assert lost == [info["restarts"][0]["node_id"]]
        new = [p for p in info["processes"] if p["host"] == "dev0" and p["role"] == "client"
               and p["client"] == 0 and p["exit_code"] is None]
        assert [p["pid"] for p in new] != [victim["pid"]] and len(new) == 1, new  # the new pair, recorded
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert lab.devices[0].tagged_pids(info["kill_tag"]) == []


def test_a_device_run_whose_folder_is_removed_fails_and_leaves_nothing_running(lab, tmp_path):
    """Its stop's last pull neither makes the folder again nor ends the stop: every local process is stopped."""
    seen = Seen()
    with running(
        "--hosts", str(lab.hosts_file(slots=1, extra=THIS_CHECKOUT)), "--ssh-config", str(lab.ssh_config),
        "--client-num", "2", "--rounds", "200", "--grace", "3", log_dir=tmp_path / "logs"
    ) as (proc, run_dir):
        tag = run_json(run_dir)["kill_tag"]
        try:
            seen.watch(proc.pid, 1, run_dir)
            os.rename(run_dir, tmp_path / "trash")  # the folder's path is gone at once
            shutil.rmtree(tmp_path / "trash", ignore_errors=True)
            out, _ = proc.communicate(timeout=120)
        finally:
            left = seen.alive()
            run("fl-finish", "--kill-tag", tag, "--log-dir", str(tmp_path / "logs"))  # the old code left them
    assert proc.returncode == 1, out
    assert "Traceback" not in out, out
    assert any("was removed" in line for line in out.splitlines()), out
    time.sleep(1)
    assert not run_dir.exists(), sorted(str(p) for p in run_dir.rglob("*"))
    assert left == []
    for device in lab.devices:
        assert device.tagged_pids(tag) == []


PORT_TAKER = """\
import os, subprocess, sys, time
from pathlib import Path
# the test's ssh: before a tunnel (-R ...:LOCALPORT), that port number is taken on every device, once
args, marks = sys.argv[1:], Path(os.environ["MARKS"])
forwards = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-R"]
port = forwards[0].rsplit(":", 1)[1] if forwards else None
if port and not (marks / f"{port}.done").exists():
    for ns in os.environ["NAMESPACES"].split():
        code = ("import pathlib, socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
                "s.listen(); pathlib.Path(sys.argv[2]).touch(); time.sleep(600)")
        taker = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, port,
                                  str(marks / f"{port}.{ns.rsplit('-', 1)[1]}")], start_new_session=True,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(marks / "pids", "a") as fh:
            fh.write(f"{taker.pid}\\n")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not ((marks / f"{port}.0").exists() and (marks / f"{port}.1").exists()):
        time.sleep(0.1)
    (marks / f"{port}.done").touch()
os.execv(os.environ["REAL_SSH"], ["ssh", *args])
"""


def test_the_superlinks_port_taken_on_the_devices_fails_nothing(lab, tmp_path, monkeypatch):
    """The tunnel's end is a port each device picks (ssh -R 0:...), so a port taken there is no matter."""
    bin_dir, marks = tmp_path / "bin", tmp_path / "marks"
    bin_dir.mkdir()
    marks.mkdir()
    (bin_dir / "ssh").write_text(f"#!{sys.executable}\n{PORT_TAKER}")
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("REAL_SSH", shutil.which("ssh"))  # before the PATH that puts this one first
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("MARKS", str(marks))
    monkeypatch.setenv("NAMESPACES", " ".join(d.namespace for d in lab.devices))
    try:
        result = launch(lab, tmp_path / "logs", "--client-num", "2", "--rounds", "1", "--startup-timeout", "60",
                        slots=1, timeout=300)
        taken = sorted(p.name for p in marks.iterdir() if p.name.endswith((".0", ".1")))
        run_dir = runs(tmp_path / "logs")[0]
        link_port = next(p["port"] for p in run_json(run_dir)["processes"] if p["role"] == "tunnel")
        assert taken == [f"{link_port}.0", f"{link_port}.1"]  # the SuperLink's port number was held on both
        assert result.returncode == 0, result.stdout + result.stderr
        assert run_json(run_dir)["status"] == "finished"
        for device in lab.devices:
            text = (run_dir / "devices" / device.name / "tunnel.log").read_text()
            ports = [int(x) for x in re.findall(r"Allocated port (\d+) for remote forward", text)]
            assert len(ports) == 1 and ports[0] != link_port, text
            assert (run_dir / f"client_{lab.devices.index(device)}" / "client.log").read_text().count(
                "evaluate acc:") == 1
    finally:
        for pid in (marks / "pids").read_text().split() if (marks / "pids").exists() else []:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _fake_torch(folder: Path, torch_version: str) -> None:
    """A device's own torch as the index never has it (a Jetson's CUDA build): a tiny package and its dist-info."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "torch").mkdir(parents=True)
    (folder / "torch" / "__init__.py").write_text(f"__version__ = {torch_version!r}\n")
    info = folder / f"torch-{torch_version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {torch_version}\n")
    (info / "RECORD").write_text("")


def test_install_keeps_a_devices_own_torch_in_range_and_check_reports_one_outside(lab, tmp_path):
    device = lab.devices[1]
    venv, own = device.root / "jetson", device.root / "own-torch"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    shadow = _site_without({"fl-launch", "torch"}, device.root / "jetson-site")
    _fake_torch(own, "2.5.0+nv24.8")
    python = f"{venv}/bin/python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "lab-site.pth").write_text(f"{own}\n{shadow}\n")
    hosts = lab.hosts_file(slots=1)
    hosts.write_text(hosts.read_text().replace(f'python = "{sys.executable}"', f'python = "{python}"')
                     .replace(f'\n[[device]]\nhost = "dev0"\nslots = 1\nworkdir = "{lab.devices[0].root}"\n', ""))
    torch_of = "import importlib.metadata as m, torch; print(m.version('torch'), torch.__file__)"
    done = run("fl-launch", "--hosts", str(hosts), "--ssh-config", str(lab.ssh_config), "--install", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kept the device's torch 2.5.0+nv24.8" in done.stdout, done.stdout
    assert not [p.name for p in (device.root / "wheels").glob("torch-*")]  # no torch travelled
    assert device.ssh(f"{python} -c {shlex.quote(torch_of)}").stdout.split() == \
        ["2.5.0+nv24.8", str(own / "torch" / "__init__.py")]
    inside = run("fl-launch", "--hosts", str(hosts), "--ssh-config", str(lab.ssh_config), "--check")
    assert inside.returncode == 0, inside.stdout + inside.stderr
    _fake_torch(own, "1.13.1")
    outside = run("fl-launch", "--hosts", str(hosts), "--ssh-config", str(lab.ssh_config), "--check")
    assert outside.returncode == 1 and "torch 1.13.1 outside fl-launch's range torch>=2.1,<2.14" in \
        outside.stdout.replace("\n", " "), outside.stdout


def test_every_python_call_on_a_device_runs_under_the_hosts_files_env(lab, tmp_path):
    """The hosts file's ``env`` is how a user points a device's Python at its packages: the oracle is a wrapper
    interpreter that records the environment of every call (the probe of --check; fl-finish on the device, as a
    run's stop sends it)."""
    from launcher.devices.hosts import load_hosts
    from launcher.devices.remote import RemoteDevice

    calls = tmp_path / "calls.log"
    wrapper = tmp_path / "python"
    one_line = '"$(echo "$*" | tr "\\n" " " | cut -c1-300)"'
    wrapper.write_text(f'#!/bin/sh\nprintf "mark=%s %s\\n" "${{FL_TEST_MARK:-none}}" {one_line}'
                       f' >> {shlex.quote(str(calls))}\nexec {shlex.quote(sys.executable)} "$@"\n')
    wrapper.chmod(0o755)
    hosts = tmp_path / "devices.toml"
    hosts.write_text(f'[defaults]\npython = "{wrapper}"\nenv = {{ FL_TEST_MARK = "set" }}\n'
                     + "".join(f'\n[[device]]\nhost = "{d.name}"\nslots = 1\nworkdir = "{d.root}"\n'
                               for d in lab.devices[:1]))
    checked = run("fl-launch", "--hosts", str(hosts), "--ssh-config", str(lab.ssh_config), "--check", timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    code, said = RemoteDevice(load_hosts(hosts)[0], str(lab.ssh_config), "no-such-run", "no-such-tag").stop(1.0)
    assert code == 0, said
    lines = calls.read_text().splitlines()
    assert any("launcher.cli.finish" in line for line in lines), lines
    assert len(lines) >= 2 and all(line.startswith("mark=set ") for line in lines), lines


def _device_cpu_seconds(device) -> float:
    """CPU time of the device's sshd and all it started (an exited session's counted in its parent's)."""
    total = 0.0
    for pid in device.tree():
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def test_pulling_a_devices_logs_every_few_seconds_costs_it_little_cpu(lab, tmp_path):
    """The launcher pulls a device's logs every 3 s while its client trains in the device's CPU: a new ssh
    connection each time cost the device 0.12-0.15 CPU-s here (sshd's session, the login shell's rc files),
    a tenth of a core taken from its client; pulls through one kept connection cost it a few ms each."""
    from launcher.devices.hosts import load_hosts
    from launcher.devices.remote import RemoteDevice

    device = lab.devices[0]
    remote_run = device.root / "runs" / "pull-cost"
    (remote_run / "client_0").mkdir(parents=True)
    (remote_run / "client_0" / "client.log").write_text("line\n" * 40000)
    (remote_run / "agent.json").write_text('{"restarts": 0}')
    local = tmp_path / "run"
    local.mkdir()
    (local / "run.json").write_text("{}")
    dev = RemoteDevice(load_hosts(lab.hosts_file(slots=1))[0], str(lab.ssh_config), "pull-cost", "pull-cost")
    try:
        assert dev.pull(local) == {"restarts": 0}  # the first: connecting is paid once
        before, pulls = _device_cpu_seconds(device), 10
        for i in range(pulls):
            (remote_run / "client_0" / "client.log").write_text("line\n" * (40000 + i))
            assert dev.pull(local) == {"restarts": 0}
            assert (local / "client_0" / "client.log").read_text().count("\n") == 40000 + i
        per_pull = (_device_cpu_seconds(device) - before) / pulls
    finally:
        dev.close()
        shutil.rmtree(remote_run, ignore_errors=True)
    assert per_pull < 0.015, f"{per_pull:.3f} CPU-s of the device per pull"
