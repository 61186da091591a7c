"""An app's declared dependencies are checked against the Python that will run it, before anything starts."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tests import devices as lab_devices
from tests.helpers import run, run_json, runs
from tests.test_app_outcomes import make_app


def with_dependencies(root: Path, *dependencies: str) -> Path:
    app = make_app(root, "deps_app")
    project = app / "pyproject.toml"
    listed = ", ".join(f'"{d}"' for d in dependencies)
    project.write_text(re.sub(r"^dependencies = \[.*\]$", f"dependencies = [{listed}]", project.read_text(),
                              flags=re.M))
    return app


def test_a_missing_dependency_is_one_line_with_the_pip_command(tmp_path):
    app = with_dependencies(tmp_path, "flwr==1.41.0", "numpy", "not-a-dist-anyone-has>=2.1")
    result = run("fl-launch", "--app", str(app), "--client-num", "2", "--log-dir", str(tmp_path / "logs"), timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "not-a-dist-anyone-has" in line and f"{sys.executable} -m pip install 'not-a-dist-anyone-has>=2.1'" in line
    assert runs(tmp_path / "logs") == []  # nothing started, no run folder


def test_a_version_outside_the_specifier_warns_and_the_run_goes_on(tmp_path):
    numpy = version("numpy")
    major = int(numpy.split(".")[0])
    # flwr pinned to a release that is not here: flwr itself is not re-checked
    app = with_dependencies(tmp_path, "flwr==0.1.0", f"numpy<{major}", "psutil>=1")
    result = run("fl-launch", "--app", str(app), "--client-num", "2", "--run-config", "num-server-rounds=1",
                 "--log-dir", str(tmp_path / "logs"), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert f"numpy<{major}" in warnings[0] and f"numpy {numpy}" in warnings[0]
    assert "flwr" not in result.stderr and "psutil" not in result.stderr
    [run_dir] = runs(tmp_path / "logs")
    assert run_json(run_dir)["status"] == "finished"


@pytest.mark.slow
@pytest.mark.skipif(lab_devices.available() is not None, reason=str(lab_devices.available()))
def test_a_dependency_missing_on_a_device_is_refused_and_check_shows_it(tmp_path):
    app = with_dependencies(tmp_path, "flwr==1.41.0", "numpy")  # numpy is here, not in the device's bare venv
    with lab_devices.make_devices(tmp_path / "lab", 1) as lab:
        bare = lab.devices[0].root / "bare"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
        hosts = lab.hosts_file(slots=2)
        hosts.write_text(hosts.read_text().replace(f'python = "{sys.executable}"', f'python = "{bare}/bin/python"'))
        common = ["--hosts", str(hosts), "--ssh-config", str(lab.ssh_config), "--app", str(app)]
        result = run("fl-launch", *common, "--client-num", "2", "--log-dir", str(tmp_path / "logs"), timeout=120)
        assert result.returncode == 2, result.stdout + result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("fl-launch: error: dev0: ") and "numpy" in line
        assert f"{bare}/bin/python -m pip install 'numpy'" in line
        assert runs(tmp_path / "logs") == []
        checked = run("fl-launch", *common, "--check", timeout=120)
        squashed = re.sub(r"[\s│┃]+", "", checked.stdout)  # the table wraps its cells
        assert checked.returncode == 1 and "theappneedsnumpy" in squashed
