"""A user's own Flower app (numpy only, the Message API) run by fl-launch: logs, stats, finish."""

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import run, run_json, runs, wait_until_nothing_tagged

APP = Path(__file__).parent / "apps" / "numpy_app"


@pytest.fixture
def app(tmp_path):
    folder = tmp_path / "numpy_app"
    shutil.copytree(APP, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.fixture(scope="module")
def app_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("app-run")
    shutil.copytree(APP, root / "numpy_app", ignore=shutil.ignore_patterns("__pycache__"))
    result = run("fl-launch", "--app", str(root / "numpy_app"), "--client-num", "3",
                 "--run-config", "num-server-rounds=2 min-nodes=3 lr=0.4", "--log-dir", str(root / "logs"),
                 "--kill-tag", "test-user-app", timeout=300)
    return root / "logs", result


def test_the_app_runs_with_its_run_config_on_three_clients(app_run):
    log_dir, result = app_run
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = runs(log_dir)[0]
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == 2
    streamed = (run_dir / "server" / "serverapp.log").read_text()
    assert "[ROUND 2/2]" in streamed and "[ROUND 3/" not in streamed  # num-server-rounds=2 reached the app
    assert "final weights" in streamed  # the ServerApp's own print
    assert wait_until_nothing_tagged("test-user-app") == []
    # the run's end stops every client's two processes with its SIGTERM, none waited for until the SIGKILL
    ends = {(p["role"], p["client"]): p["exit"] for p in info["processes"] if p["client"] is not None}
    assert sorted(ends) == sorted((role, c) for c in range(3) for role in ("clientapp", "supernode")), ends
    assert not [k for k, why in ends.items() if "SIGKILL" in why], ends


def test_each_client_log_holds_the_apps_output_and_the_round_lines(app_run):
    log_dir, _ = app_run
    run_dir = runs(log_dir)[0]
    for i in range(3):
        text = (run_dir / f"client_{i}" / "client.log").read_text()
        assert len(re.findall(rf"<FLClient> partition {i} of 3: local loss [\d.]+", text)) == 2  # node config
        for r in (1, 2):
            assert f"[round] iteration:{r} start type:train" in text
            assert re.search(rf"\[round\] iteration:{r} end time:[\d.]+s type:train metrics:train_loss:[\d.]+ "
                             r"num-examples:200", text)
            assert re.search(rf"\[round\] iteration:{r} end time:[\d.]+s type:evaluate metrics:eval_loss:[\d.]+ "
                             r"eval_acc:[\d.]+ num-examples:100", text)
        assert "Flower" not in text  # Flower's own logger stays in worker.log


def test_fl_stats_shows_the_apps_metrics(app_run):
    log_dir, _ = app_run
    run_dir = runs(log_dir)[0]
    out = run("fl-stats", "--run", run_dir.name, "--log-dir", str(log_dir), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["skipped_lines"] == 0
    for row in data["rounds"]:
        accs = [float(re.search(rf"iteration:{row['round']} end .*type:evaluate .*eval_acc:([\d.]+)",
                                (run_dir / f"client_{i}" / "client.log").read_text()).group(1)) for i in range(3)]
        assert row["clients"] == 3 and row["AVG"] == pytest.approx(sum(accs) / 3)
    server = {(r["round"], r["phase"]): r["metrics"] for r in data["server_metrics"]}
    assert set(server) == {(1, "train"), (1, "evaluate"), (2, "train"), (2, "evaluate")}
    # every client tests 100 samples: the strategy's weighted mean is the clients' plain mean
    assert server[(2, "evaluate")]["eval_acc"] == pytest.approx(data["rounds"][1]["AVG"])
    assert server[(2, "train")]["train_loss"] < server[(1, "train")]["train_loss"]
    table = run("fl-stats", "--run", run_dir.name, "--log-dir", str(log_dir))
    assert "what the app's strategy aggregated" in table.stdout and "evaluate.eval_acc" in table.stdout


def test_a_detached_app_run_is_stopped_by_fl_finish(app, tmp_path):
    tag = "test-user-app-detached"
    started = run("fl-launch", "--app", str(app), "--client-num", "3", "--run-config",
                  "num-server-rounds=500 min-nodes=3", "--detach", "--kill-tag", tag, "--log-dir",
                  str(tmp_path / "logs"), timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    run_dir = runs(tmp_path / "logs")[0]
    assert run_json(run_dir)["status"] == "running"
    done = run("fl-finish", "--kill-tag", tag, "--log-dir", str(tmp_path / "logs"), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert wait_until_nothing_tagged(tag) == []
    assert run_json(run_dir)["status"] in {"stopped", "interrupted"}
