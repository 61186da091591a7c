"""A user's app on Flower's simulation runtime (``--app DIR --mode virtual``): 200 virtual clients, each with
its own client.log holding the app's prints between the round lines, and its --node-config values."""

from __future__ import annotations

import re

import pytest

from benchmarks.memory import PeakMemory, tagged
from tests.helpers import run, run_json, runs, wait_until_nothing_tagged
from tests.test_app_outcomes import make_app
from tests.test_app_stats import PYPROJECT, SERVER

CLIENTS, ROUNDS = 200, 2

CLIENT = """\
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    print(f"virtual client {pid} of {context.node_config['num-partitions']} tagged {context.node_config['tag']}")
    return Message(RecordDict({"arrays": msg.content["arrays"],
                               "metrics": MetricRecord({"num-examples": 1, "pid": pid})}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    return Message(RecordDict({"metrics": MetricRecord({"score_acc": pid / 1000, "num-examples": 1})}),
                   reply_to=msg)
"""


def write_app(root):
    app = root / "twometrics"
    (app / "twometrics").mkdir(parents=True)
    (app / "pyproject.toml").write_text(PYPROJECT)
    (app / "twometrics" / "__init__.py").write_text("")
    (app / "twometrics" / "client_app.py").write_text(CLIENT)
    (app / "twometrics" / "server_app.py").write_text(SERVER)
    return app


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["virtual", "auto"])  # auto: virtual above 100 clients, an app's too
def test_an_app_on_200_virtual_clients_logs_every_client(tmp_path, mode):
    app = write_app(tmp_path)
    tag = f"test-app-virtual-{mode}"
    result = run("fl-launch", "--app", str(app), "--client-num", str(CLIENTS), "--mode", mode,
                 "--run-config", f"num-server-rounds={ROUNDS} min-nodes={CLIENTS}",
                 "--node-config", 'tag="t{i}-{n}"', "--log-dir", str(tmp_path / "logs"), "--kill-tag", tag,
                 timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert wait_until_nothing_tagged(tag) == []
    [run_dir] = runs(tmp_path / "logs")
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["rounds_done"] == ROUNDS
    assert info["plan"]["virtual"] and not [p for p in info["processes"] if p["role"] == "supernode"]
    for i in range(CLIENTS):
        text = (run_dir / f"client_{i}" / "client.log").read_text()
        for r in range(1, ROUNDS + 1):
            train = re.search(rf"<FLClient> \[round\] iteration:{r} start type:train\n"
                              rf".*<FLClient> virtual client {i} of {CLIENTS} tagged t{i}-{CLIENTS}\n"
                              rf".*<FLClient> \[round\] iteration:{r} end time:[\d.]+s type:train "
                              rf"metrics:num-examples:1 pid:{i}\n", text)
            assert train, (i, r, text)
            assert re.search(rf"\[round\] iteration:{r} end time:[\d.]+s type:evaluate "
                             rf"metrics:score_acc:{i / 1000:g} num-examples:1\n", text), (i, r, text)
        assert len(re.findall(r"\[round\] iteration:\d+ start", text)) == 2 * ROUNDS  # no other client's lines


def test_a_virtual_client_that_raises_is_counted_with_its_traceback(tmp_path):
    app = make_app(tmp_path, "client_raises", client_train=(
        "    if int(context.node_config['partition-id']) == 1 and int(msg.content['config']['server-round']) == 2:\n"
        "        raise RuntimeError('virtual client 1 breaks in round 2')\n"))
    tag = "test-app-virtual-raises"
    result = run("fl-launch", "--app", str(app), "--client-num", "3", "--mode", "virtual", "--run-config",
                 "num-server-rounds=2 min-nodes=2", "--log-dir", str(tmp_path / "logs"), "--kill-tag", tag,
                 timeout=300)
    assert wait_until_nothing_tagged(tag) == []
    [run_dir] = runs(tmp_path / "logs")
    info = run_json(run_dir)
    assert result.returncode == 0 and info["status"] == "finished", result.stdout + result.stderr
    broken = (run_dir / "client_1" / "client.log").read_text()
    assert "Traceback (most recent call last):" in broken and "RuntimeError: virtual client 1 breaks" in broken
    assert info["client_failures"] == [{"round": 2, "task": "train", "failed": [1], "clients": 3}]
    assert "round 2 train: 1 of 3 clients raised; tracebacks in client_1/client.log" in result.stdout


@pytest.mark.slow
def test_the_memory_of_an_app_on_virtual_clients_stays_flat_in_the_clients(tmp_path):
    app = write_app(tmp_path)
    peaks = {}
    for clients in (20, 200):
        tag = f"test-app-virtual-memory-{clients}"
        with PeakMemory(tagged(tag), interval=0.25) as peak:
            result = run("fl-launch", "--app", str(app), "--client-num", str(clients), "--mode", "virtual",
                         "--run-config", f"num-server-rounds=2 min-nodes={clients}", "--node-config", 'tag="x"',
                         "--log-dir", str(tmp_path / f"logs-{clients}"), "--kill-tag", tag, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        assert peak.processes >= 4  # the SuperLink, the ServerApp, Ray and its workers were all seen
        peaks[clients] = peak.mib
    assert peaks[200] < peaks[20] * 1.15, peaks  # measured: 853 and 857 MiB
