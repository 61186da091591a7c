"""A run folder received from someone else is data: fl-finish --run, fl-stats --pull --run and
fl-launch --resume never let what it holds run a command here (an ssh config's ProxyCommand, an ssh
option in a host or user field).

The oracle is a file the injected command would touch; ssh's own failure to reach the (made-up) device is
what the commands report instead.

    python3 -m pytest -q tests/test_received_run_folder.py
"""

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import run

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH's ssh is not installed")

RUN_ID = "20261201-000000-r3cv"


def _device(**fields) -> dict:
    """A plan.devices entry as fl-launch writes it (DevicePlacement.to_json), written out by hand."""
    return {"host": "pi-01.invalid", "slots": 1, "user": None, "port": None, "identity": None, "python": "python3",
            "workdir": "fl-launch", "env": {}, "node_config": {}, "clients": [0], **fields}


def _received(tmp_path: Path, device: dict, ssh_config: bool) -> tuple[Path, Path]:
    """A crafted run folder (its run.json naming an ssh config inside it, with a ProxyCommand that touches
    a file), and the path of that file."""
    folder = tmp_path / "inbox" / RUN_ID
    folder.mkdir(parents=True)
    touched = tmp_path / "touched"
    (folder / "ssh_config").write_text(f"Host *\n    ProxyCommand sh -c 'touch {touched}; exit 1'\n")
    info = {"run_id": RUN_ID, "kill_tag": "received-run", "status": "failed", "task": "train", "options": {},
            "settings": {}, "processes": [],
            "plan": {"nodes": [{"client": 0, "host": device["host"]}], "devices": [device],
                     "ssh_config": str(folder / "ssh_config") if ssh_config else None,
                     "grace": 1, "startup_timeout": 60}}
    (folder / "run.json").write_text(json.dumps(info))
    return folder, touched


def test_fl_finish_does_not_use_an_ssh_config_in_the_run_folder(tmp_path):
    folder, touched = _received(tmp_path, _device(), ssh_config=True)
    finish = run("fl-finish", "--run", str(folder), "--grace", "1", cwd=tmp_path, timeout=120)
    assert not touched.exists(), "fl-finish ran the run folder's ProxyCommand"
    assert "ssh config run.json names" in finish.stderr and "is not used" in finish.stderr, finish.stderr
    assert "[pi-01.invalid]" in finish.stdout  # ssh tried the device with the user's own config, and said why not
    assert finish.returncode == 1, finish.stdout + finish.stderr  # the device could not be reached: not all stopped


def test_fl_stats_pull_does_not_use_an_ssh_config_in_the_run_folder(tmp_path):
    folder, touched = _received(tmp_path, _device(), ssh_config=True)
    pull = run("fl-stats", "--pull", "--run", str(folder), cwd=tmp_path, timeout=120)
    assert not touched.exists(), "fl-stats --pull ran the run folder's ProxyCommand"
    assert "ssh config run.json names" in pull.stderr and "is not used" in pull.stderr, pull.stderr
    assert "pi-01.invalid: clients 0: unreachable or empty" in pull.stdout, pull.stdout
    assert pull.returncode == 0, pull.stdout + pull.stderr


def test_the_ssh_config_named_on_the_command_line_is_used(tmp_path):
    """The user's own choice: a config named to this invocation is what ssh reads (here it touches the file)."""
    folder, touched = _received(tmp_path, _device(), ssh_config=False)
    run("fl-stats", "--pull", "--run", str(folder), "--ssh-config", str(folder / "ssh_config"), cwd=tmp_path)
    assert touched.exists()


@pytest.mark.parametrize("field", [
    {"host": "-oProxyCommand=sh -c 'touch TOUCHED'"},
    {"user": "-oProxyCommand=sh -c 'touch TOUCHED'"},
    {"port": "22 -oProxyCommand=touch TOUCHED"},
    {"identity": "id\n-oProxyCommand=touch TOUCHED"},
], ids=["host", "user", "port", "identity"])
def test_ssh_options_in_a_device_field_are_refused(tmp_path, field):
    touched = tmp_path / "touched"
    key, value = next(iter(field.items()))
    device = _device(**{key: value.replace("TOUCHED", str(touched))})
    folder, _ = _received(tmp_path, device, ssh_config=False)
    finish = run("fl-finish", "--run", str(folder), "--grace", "1", cwd=tmp_path, timeout=120)
    assert not touched.exists()
    assert f"{key} must be" in finish.stderr and "its devices are not contacted" in finish.stderr, finish.stderr
    assert finish.returncode == 1 and "Traceback" not in finish.stderr
    pull = run("fl-stats", "--pull", "--run", str(folder), cwd=tmp_path, timeout=120)
    assert not touched.exists()
    assert pull.returncode == 2 and len(pull.stderr.strip().splitlines()) == 1, pull.stderr
    assert f"{key} must be" in pull.stderr and "nothing pulled" in pull.stderr
    resume = run("fl-launch", "--resume", str(folder), cwd=tmp_path, timeout=120)
    assert not touched.exists()
    assert resume.returncode == 2 and f"{key} must be" in resume.stderr, resume.stdout + resume.stderr
    assert len(resume.stderr.strip().splitlines()) == 1


CGROUP_ROOTS = [Path("/sys/fs/cgroup", name) for name in ("unified", "cpu", "memory", "")]


def _cgroups_named(token: str) -> list[Path]:
    """Cgroups whose name holds ``token`` at the top of each hierarchy (where ../ from fl-launch/ lands)."""
    return [p for root in CGROUP_ROOTS if root.is_dir() for p in root.iterdir() if token in p.name]


def _resumable(tmp_path: Path, **fields) -> Path:
    """A real prepared training run with a round 0 checkpoint, failed: --resume would train it, from round 1;
    then ``fields`` written over its run.json, as a received folder could hold them."""
    import torch

    from contract.run_settings import checkpoint_path
    from launcher.run.options import LaunchOptions
    from launcher.run.plan import prepare_run
    from launcher.run.record import RunRecord
    from simulator.model import model_for

    folder = prepare_run(LaunchOptions(client_num=2, rounds=1, log_dir=str(tmp_path / "inbox")))
    folder.release()
    checkpoint = checkpoint_path(folder.path, 0)
    checkpoint.parent.mkdir()
    torch.save(model_for(RunRecord.read(folder).settings).state_dict(), checkpoint)
    info = json.loads(folder.run_json.read_text())
    info.update(status="failed", supervisor=None, **fields)  # its supervisor (this test) is not the run's
    folder.run_json.write_text(json.dumps(info))
    return folder.path


def test_a_kill_tag_that_walks_out_of_the_cgroups_is_refused_and_makes_no_cgroup(tmp_path):
    """run.json's kill tag names the run's cgroup (fl-launch/TAG): ../TOKEN would make and join a cgroup at the
    top of the hierarchy. --resume refuses it in one line, and no cgroup of that name appears meanwhile."""
    import secrets
    import signal
    import time

    from tests.helpers import start

    token = f"fltest-escape-{secrets.token_hex(3)}"
    folder = _resumable(tmp_path, kill_tag=f"../{token}")
    seen: list[Path] = []
    proc = start("fl-launch", "--resume", str(folder), "--log-dir", str(tmp_path / "inbox"), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and not seen:
            seen = _cgroups_named(token)
            time.sleep(0.01)
        seen = seen or _cgroups_named(token)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
        for group in _cgroups_named(token):  # made by the unfixed code under this test: removed again
            group.rmdir()
    assert seen == [], f"a cgroup outside fl-launch/ was made: {seen}"
    assert proc.returncode == 2 and len(out.strip().splitlines()) == 1, out
    assert "malformed kill tag" in out and "Traceback" not in out
    finish = run("fl-finish", "--run", str(folder), "--grace", "1", cwd=tmp_path, timeout=120)
    assert finish.returncode == 2 and len(finish.stderr.strip().splitlines()) == 1, finish.stdout + finish.stderr
    assert "malformed kill tag" in finish.stderr and _cgroups_named(token) == []


@pytest.mark.parametrize("run_id", ["../../x", "..", "a/../../b"])
def test_a_run_id_with_dots_and_slashes_is_refused_before_any_device_is_contacted(tmp_path, run_id):
    """run.json's run_id names runs/RUN_ID on each device: one that walks out of runs/ is refused in one line by
    fl-finish --run, fl-stats --pull and --resume (no device contacted), and fl-stats --runs lists it as
    unreadable."""
    folder, touched = _received(tmp_path, _device(), ssh_config=False)
    info = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**info, "run_id": run_id}))
    for command in (("fl-finish", "--run", str(folder), "--grace", "1"), ("fl-stats", "--pull", "--run", str(folder)),
                    ("fl-launch", "--resume", str(folder), "--log-dir", str(folder.parent))):
        done = run(*command, cwd=tmp_path, timeout=120)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, (command, done.stdout, done.stderr)
        assert "malformed run id" in done.stderr and "pi-01.invalid" not in done.stdout, (command, done.stdout)
    listed = run("fl-stats", "--runs", "--json", "--log-dir", str(folder.parent), cwd=tmp_path)
    assert listed.returncode == 0 and json.loads(listed.stdout) == [{"run": RUN_ID, "status": "unreadable run.json"}]


def test_devices_recorded_in_another_shape_are_not_counted_as_stopped(tmp_path):
    """fl-finish cannot reach devices run.json records in a shape fl-launch never writes: it says so and exits 1,
    not 0 as if they were stopped."""
    folder, touched = _received(tmp_path, _device(), ssh_config=False)
    info = json.loads((folder / "run.json").read_text())
    info["plan"]["devices"] = [{"hostx": "pi-01.invalid"}]
    (folder / "run.json").write_text(json.dumps(info))
    finish = run("fl-finish", "--run", str(folder), "--grace", "1", cwd=tmp_path, timeout=120)
    assert finish.returncode == 1, finish.stdout + finish.stderr
    assert "devices are not fl-launch's; its devices are not contacted" in finish.stderr, finish.stderr
    assert "Traceback" not in finish.stderr and not touched.exists()
