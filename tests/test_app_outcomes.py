"""A Flower app's run ends as Flower records it: apps written here that fail in different places."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.helpers import run, run_json, runs, wait_until_nothing_tagged

APP = Path(__file__).parent / "apps" / "numpy_app"


def make_app(root: Path, name: str, server_head: str = "", server_body: str = "", client_train: str = "") -> Path:
    """The test's numpy app with lines added: at the ServerApp's top, at the start of its main, in train()."""
    folder = root / name
    shutil.copytree(APP, folder, ignore=shutil.ignore_patterns("__pycache__"))
    server = folder / "npapp" / "server_app.py"
    text = server_head + server.read_text()
    if server_body:
        text = text.replace("    nodes = int(", server_body + "    nodes = int(", 1)
    server.write_text(text)
    if client_train:
        client = folder / "npapp" / "client_app.py"
        anchor = "    x, y = _data(int(context.node_config[\"partition-id\"]))\n"
        client.write_text(client.read_text().replace(anchor, client_train + anchor, 1))
    return folder


def launch(app: Path, log_dir: Path, tag: str, clients: int = 2, rounds: int = 2):
    result = run("fl-launch", "--app", str(app), "--client-num", str(clients), "--run-config",
                 f"num-server-rounds={rounds} min-nodes={clients}", "--log-dir", str(log_dir), "--kill-tag", tag,
                 timeout=300)
    [run_dir] = runs(log_dir)
    assert wait_until_nothing_tagged(tag) == []
    return result, run_dir


def test_a_serverapp_that_fails_at_import_is_a_failed_run(tmp_path):
    app = make_app(tmp_path, "bad_import", server_head="import not_installed_pkg_for_the_test\n")
    result, run_dir = launch(app, tmp_path / "logs", "test-outcome-import")
    streamed = (run_dir / "server" / "serverapp.log").read_text()
    assert "No module named 'not_installed_pkg_for_the_test'" in streamed  # Flower's own traceback is there
    assert result.returncode == 1, result.stdout + result.stderr
    info = run_json(run_dir)
    assert info["status"] == "failed" and info["rounds_done"] == 0
    exception = "ModuleNotFoundError: No module named 'not_installed_pkg_for_the_test'"
    assert exception in info["reason"] and str(run_dir / "server" / "serverapp.log") in info["reason"]
    assert "status: failed" in result.stdout and exception in result.stdout
    assert "status: finished" not in result.stdout


def test_a_serverapp_that_raises_after_a_round_is_a_failed_run(tmp_path):
    app = make_app(tmp_path, "raises_late", server_body=(
        "    from flwr.serverapp.strategy import FedAvg as _F\n"
        "    _orig = _F.aggregate_train\n"
        "    def _agg(self, server_round, replies):\n"
        "        if server_round == 2:\n"
        "            raise ValueError('the test ServerApp gives up in round 2')\n"
        "        return _orig(self, server_round, replies)\n"
        "    _F.aggregate_train = _agg\n"))
    result, run_dir = launch(app, tmp_path / "logs", "test-outcome-late", rounds=3)
    assert result.returncode == 1, result.stdout + result.stderr
    info = run_json(run_dir)
    assert info["status"] == "failed"
    assert "ValueError: the test ServerApp gives up in round 2" in info["reason"]
    assert "ValueError: the test ServerApp gives up in round 2" in result.stdout
    assert "[ROUND 2/3]" in (run_dir / "server" / "serverapp.log").read_text()


def test_a_client_that_raises_in_round_2_is_counted_with_its_traceback(tmp_path):
    app = make_app(tmp_path, "client_raises", client_train=(
        "    if int(context.node_config['partition-id']) == 1 and int(msg.content['config']['server-round']) == 2:\n"
        "        raise RuntimeError('client 1 breaks in round 2')\n"))
    result, run_dir = launch(app, tmp_path / "logs", "test-outcome-client", clients=3, rounds=3)
    # Flower completes the run (FedAvg aggregates the replies it got): finished, with the failure told
    assert result.returncode == 0, result.stdout + result.stderr
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == 3
    traceback_log = (run_dir / "client_1" / "client.log").read_text()
    assert "Traceback (most recent call last):" in traceback_log
    assert "RuntimeError: client 1 breaks in round 2" in traceback_log
    for other in (0, 2):
        assert "RuntimeError" not in (run_dir / f"client_{other}" / "client.log").read_text()
    streamed = (run_dir / "server" / "serverapp.log").read_text()
    assert re.search(r"aggregate_train: Received 2 results and 1 failures", streamed)  # Flower's own count
    server_log = (run_dir / "server" / "server.log").read_text()
    assert re.search(r"iteration:2 type:train 1 of 3 clients raised; tracebacks in client_1/client\.log", server_log)
    assert "round 2 train: 1 of 3 clients raised; tracebacks in client_1/client.log" in result.stdout
    assert info["client_failures"] == [{"round": 2, "task": "train", "failed": [1], "clients": 3}]


def test_an_app_whose_replies_carry_only_their_sample_counts_has_its_rounds_counted(tmp_path):
    """Its strategy aggregates every round but logs no metric of it: the rounds done are those Flower's strategy
    counted replies in (its own line each round)."""
    app = make_app(tmp_path, "counts_only")
    client = app / "npapp" / "client_app.py"
    text = client.read_text()
    for metrics in ('"train_loss": loss, ', '"eval_loss": loss, "eval_acc": acc,\n' + " " * 56):
        assert metrics in text
        text = text.replace(metrics, "")
    client.write_text(text)
    result, run_dir = launch(app, tmp_path / "logs", "test-outcome-counts", rounds=2)
    assert result.returncode == 0, result.stdout + result.stderr
    streamed = (run_dir / "server" / "serverapp.log").read_text()
    assert len(re.findall(r"aggregate_train: Received 2 results and 0 failures", streamed)) == 2, streamed
    assert not re.search(r"MetricRecord: \{'", streamed)  # no metric logged: each record is empty
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == 2
