"""fl-launch on the Flower release installed here: one of the range setup.py states (1.41, 1.42), or a refusal.

CI runs this file on constraints.txt's release and, in its second job, on the other one (.ci/run).
"""

from __future__ import annotations

import os
import re
import subprocess
from importlib.metadata import version

import pytest

from tests.helpers import command, run, run_json, runs


@pytest.mark.parametrize("outside", ["1.40.0", "1.43.0"])
def test_a_flower_outside_the_tested_range_is_refused_before_anything_starts(tmp_path, outside):
    """A flwr distribution of another release first on the path (its metadata only: what pip would report)."""
    (tmp_path / "site" / f"flwr-{outside}.dist-info").mkdir(parents=True)
    (tmp_path / "site" / f"flwr-{outside}.dist-info" / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: flwr\nVersion: {outside}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([*command("fl-launch"), "--client-num", "2", "--rounds", "1",
                             "--log-dir", str(tmp_path / "logs")], env=env, capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"fl-launch: error: fl-launch runs on flwr>=1.41,<1.43; this Python has flwr {outside}"]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "logs").exists()  # no run folder: nothing started


def test_a_small_run_on_the_installed_flower(tmp_path):
    """Process mode: every internal of launcher/flower/ in use (virtual mode uses Flower's own simulation)."""
    result = run("fl-launch", "--client-num", "2", "--rounds", "1", "--mode", "process",
                 "--log-dir", str(tmp_path / "logs"), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = runs(tmp_path / "logs")
    assert run_json(run_dir)["status"] == "finished"
    for i in range(2):
        text = (run_dir / f"client_{i}" / "client.log").read_text()
        assert len(re.findall(r"evaluate acc: ([\d.]+)", text)) == 1  # MindSpore's own grep: one round
        assert "[final] final model accuracy:" in text
    # the app folder flwr run built its FAB from declares the Flower that ran it
    assert f'"flwr=={version("flwr")}"' in (run_dir / "app" / "pyproject.toml").read_text()
