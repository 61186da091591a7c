"""fl-stats on a user's app run: every reply metric per client and round, --metric, --csv, --json; and a run
that failed at start reported as that run. The expected numbers are recomputed here from client.log's lines."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from tests.helpers import run, runs, wait_until_nothing_tagged

CLIENTS, ROUNDS = 6, 2

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "twometrics"
version = "1.0.0"
license = "Apache-2.0"
dependencies = ["flwr==1.41.0", "numpy"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "tests"

[tool.flwr.app.components]
serverapp = "twometrics.server_app:app"
clientapp = "twometrics.client_app:app"

[tool.flwr.app.config]
num-server-rounds = 2
min-nodes = 2
"""

CLIENT = """\
import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    w = msg.content["arrays"]["w"].numpy() + 0.1 * (pid + 1)
    print(f"client {pid} trained")
    return Message(RecordDict({"arrays": ArrayRecord({"w": Array(w)}),
                               "metrics": MetricRecord({"num-examples": 10 + pid})}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    rnd = int(msg.content["config"]["server-round"])
    w = float(msg.content["arrays"]["w"].numpy().sum())
    rng = np.random.default_rng(100 * pid + rnd)
    return Message(RecordDict({"metrics": MetricRecord({
        "holdout_acc": float(rng.uniform(0.3, 0.9)), "drift": w * (pid + 1) + rng.normal(),
        "num-examples": 5})}), reply_to=msg)
"""

SERVER = """\
import numpy as np
from flwr.app import Array, ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    n = int(context.run_config["min-nodes"])
    FedAvg(min_available_nodes=n, min_train_nodes=n, min_evaluate_nodes=n).start(
        grid=grid, initial_arrays=ArrayRecord({"w": Array(np.zeros(3))}),
        num_rounds=int(context.run_config["num-server-rounds"]))
"""

END_LINE = re.compile(r"\[round\] iteration:(\d+) end time:[0-9.]+s type:(\w+) metrics:(.*)$", re.M)


def write_app(root: Path, server_head: str = "") -> Path:
    folder = root / "twometrics"
    (folder / "twometrics").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(PYPROJECT)
    (folder / "twometrics" / "__init__.py").write_text("")
    (folder / "twometrics" / "client_app.py").write_text(CLIENT)
    (folder / "twometrics" / "server_app.py").write_text(server_head + SERVER)
    return folder


def logged(run_dir: Path) -> dict[tuple[int, int, str], float]:
    """(client, round, TASK.NAME) -> value, out of each client.log's round end lines."""
    values = {}
    for i in range(CLIENTS):
        for rnd, task, pairs in END_LINE.findall((run_dir / f"client_{i}" / "client.log").read_text()):
            for pair in pairs.split():
                name, _, value = pair.rpartition(":")
                values[(i, int(rnd), f"{task}.{name}")] = float(value)
    return values


def across(values: list[float]) -> dict[str, float]:
    ordered = sorted(values, reverse=True)
    return {"clients": len(values), "AVG": sum(values) / len(values), "TOP5": sum(ordered[:5]) / 5,
            "LOW5": sum(ordered[-5:]) / 5, "min": min(values), "max": max(values)}


@pytest.fixture(scope="module")
def app_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("app-stats")
    app = write_app(root)
    tag = "test-app-stats"
    result = run("fl-launch", "--app", str(app), "--client-num", str(CLIENTS), "--run-config",
                 f"num-server-rounds={ROUNDS} min-nodes={CLIENTS}", "--log-dir", str(root / "logs"),
                 "--kill-tag", tag, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert wait_until_nothing_tagged(tag) == []
    [run_dir] = runs(root / "logs")
    values = logged(run_dir)
    names = {name for _, _, name in values}
    assert names == {"train.num-examples", "evaluate.holdout_acc", "evaluate.drift", "evaluate.num-examples"}
    assert len(values) == CLIENTS * ROUNDS * len(names)  # every client logged every round's both tasks
    return root / "logs", run_dir, values


def stats(log_dir: Path, run_dir: Path, *args: str):
    return run("fl-stats", "--run", run_dir.name, "--log-dir", str(log_dir), *args)


def test_json_carries_every_metric_and_the_chosen_ones_spread(app_run):
    log_dir, run_dir, values = app_run
    out = stats(log_dir, run_dir, "--metric", "drift", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["metric"] == "evaluate.drift"
    got = {(row["client"], row["round"], name): value for row in data["per_client"]
           for name, value in row["metrics"].items()}
    assert got.keys() == values.keys()
    assert got == pytest.approx(values)
    assert [row["round"] for row in data["rounds"]] == list(range(1, ROUNDS + 1))
    for row in data["rounds"]:
        expected = across([values[(i, row["round"], "evaluate.drift")] for i in range(CLIENTS)])
        assert {k: row[k] for k in expected} == pytest.approx(expected)
        assert row["TOP5"] != pytest.approx(row["LOW5"])  # six clients: the five best are not the five worst


def test_csv_has_every_clients_metrics_and_the_default_acc_spread(app_run):
    log_dir, run_dir, values = app_run
    out = stats(log_dir, run_dir, "--csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [int(r["round"]) for r in rows] == list(range(1, ROUNDS + 1))
    for row in rows:
        rnd = int(row["round"])
        expected = across([values[(i, rnd, "evaluate.holdout_acc")] for i in range(CLIENTS)])  # first *acc*
        assert {k: float(row[k]) for k in expected} == pytest.approx(expected)
        for (client, r, name), value in values.items():
            if r == rnd:
                assert float(row[f"client_{client}/{name}"]) == pytest.approx(value)


def test_the_table_and_the_plot_follow_metric(app_run, tmp_path):
    log_dir, run_dir, values = app_run
    png = tmp_path / "drift.png"
    out = stats(log_dir, run_dir, "--metric", "evaluate.drift", "--plot", str(png))
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = max(values[(i, ROUNDS, "evaluate.drift")] for i in range(CLIENTS))
    assert "evaluate.drift" in out.stdout and f"{last:.4f}" in out.stdout  # the round's max of drift


@pytest.mark.parametrize("name", ["no_such_metric", "num-examples"])  # unknown; in both train and evaluate
def test_a_metric_the_run_lacks_is_one_line_and_exit_2(app_run, name):
    log_dir, run_dir, _ = app_run
    out = stats(log_dir, run_dir, "--metric", name)
    assert out.returncode == 2
    assert out.stdout == "" and len(out.stderr.strip().splitlines()) == 1 and name in out.stderr
    assert "Traceback" not in out.stderr


def test_a_run_that_failed_at_start_is_reported_with_its_reason(tmp_path):
    app = write_app(tmp_path, server_head="import not_installed_pkg_for_the_stats_test\n")
    tag = "test-app-stats-failed"
    result = run("fl-launch", "--app", str(app), "--client-num", "2", "--run-config",
                 "num-server-rounds=2 min-nodes=2", "--log-dir", str(tmp_path / "logs"), "--kill-tag", tag,
                 timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert wait_until_nothing_tagged(tag) == []
    [run_dir] = runs(tmp_path / "logs")
    assert not list(run_dir.glob("client_*/client.log"))  # the ServerApp never asked a client for anything
    reason = "No module named 'not_installed_pkg_for_the_stats_test'"
    for args in ((), (str(run_dir),)):
        out = run("fl-stats", "--log-dir", str(tmp_path / "logs"), *args)
        assert out.returncode == 0, out.stdout + out.stderr
        assert run_dir.name in out.stdout and "failed" in out.stdout and reason in out.stdout
    data = json.loads(run("fl-stats", "--log-dir", str(tmp_path / "logs"), "--json").stdout)
    assert data["run"] == run_dir.name and data["status"] == "failed" and reason in data["reason"]
    assert data["rounds"] == [] and data["per_client"] == []
