"""Real runs: SuperLink, SuperNodes, warm client processes, `flwr run`, on digits."""

import re

import pytest
import torch

from launcher.processes.tagged import tagged_processes
from tests.helpers import run, run_json, runs
from tests.test_datasets import write_cifar


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("logs")
    result = run("fl-launch", "--client-num", "3", "--rounds", "2", "--log-dir", str(log_dir), "--seed", "1")
    return log_dir, result


def test_train_run_exits_zero_with_a_summary(trained):
    log_dir, result = trained
    assert result.returncode == 0, result.stdout + result.stderr
    assert "round 2/2" in result.stdout and "final model accuracy" in result.stdout
    assert "status: finished" in result.stdout


def test_each_client_log_has_its_rounds_in_mindspore_form(trained):
    log_dir, _ = trained
    (run_dir,) = runs(log_dir)
    for i in range(3):
        text = (run_dir / f"client_{i}" / "client.log").read_text()
        accs = re.findall(r"evaluate acc: ([\d.]+)", text)  # MindSpore's own grep
        assert len(accs) == 2
        assert all(0.0 <= float(a) <= 1.0 for a in accs)
        assert len(re.findall(r"----------epoch:0,average loss:[\d.]+ ----------", text)) == 2
        assert "[round] iteration:1/2 start" in text and "[round] iteration:2/2 start" in text
        ends = re.findall(r"\[round\] iteration:\d end time:[\d.]+s peak_rss:[\d.]+MiB recv:(\d+)B sent:(\d+)B", text)
        assert len(ends) == 2 and all(int(r) > 200_000 and int(s) > 200_000 for r, s in ends)
        assert "[final] final model accuracy:" in text
        assert (run_dir / f"client_{i}" / "supernode.log").exists()
        assert (run_dir / f"client_{i}" / "worker.log").exists()


def test_the_model_learns(trained):
    log_dir, _ = trained
    info = run_json(runs(log_dir)[0])
    assert info["final_accuracy"] > 0.5  # chance is 0.1; measured 0.94 after 2 rounds
    assert info["final_test_samples"] == 360  # the union of the clients' test splits


def test_a_checkpoint_per_round_that_loads_without_this_tool(trained):
    log_dir, _ = trained
    run_dir = runs(log_dir)[0]
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["round_0000.pt", "round_0001.pt", "round_0002.pt"]
    state = torch.load(run_dir / "checkpoints" / "round_0002.pt", weights_only=True)
    assert set(state) >= {"features.0.weight", "features.1.running_mean", "classifier.5.bias"}
    assert state["classifier.5.weight"].shape == (10, 84)
    first = torch.load(run_dir / "checkpoints" / "round_0001.pt", weights_only=True)
    assert not torch.equal(first["features.0.weight"], state["features.0.weight"])


def test_run_json_is_complete(trained):
    log_dir, _ = trained
    run_dir = runs(log_dir)[0]
    info = run_json(run_dir)
    assert info["status"] == "finished" and info["kill_tag"] == run_dir.name
    assert info["rounds_done"] == 2 and info["options"]["client_num"] == 3
    assert info["started"] and info["ended"]
    roles = [p["role"] for p in info["processes"]]
    assert roles.count("client") == 3 and "supernode" not in roles and "clientapp" not in roles  # one process each
    assert roles.count("superlink") == 1 and roles.count("flwr-run") == 1
    for proc in info["processes"]:
        assert proc["pid"] > 0 and proc["host"] == "localhost" and proc["exit_code"] is not None
    ports = [p["port"] for p in info["processes"] if p["port"]]
    assert len(ports) == len(set(ports)) == 4
    assert (log_dir / "latest").resolve() == run_dir.resolve()
    assert (run_dir / "server" / "server.log").read_text().count("[checkpoint]") == 3


def test_nothing_of_the_run_is_left(trained):
    log_dir, _ = trained
    assert tagged_processes(runs(log_dir)[0].name) == []


def test_get_model_then_inference_serve_the_trained_model(trained):
    log_dir, _ = trained
    train_dir = runs(log_dir)[0]
    got = run("fl-launch", "--client-num", "3", "--task", "getModel", "--log-dir", str(log_dir), "--seed", "1")
    assert got.returncode == 0, got.stdout + got.stderr
    get_dir = run_json(log_dir / "latest")
    assert get_dir["source_run"] == train_dir.name and get_dir["status"] == "finished"
    final = torch.load(train_dir / "checkpoints" / "round_0002.pt", weights_only=True)
    for i in range(3):
        client = log_dir / "latest" / f"client_{i}"
        assert "[getModel] get response from server ok!" in (client / "client.log").read_text()
        saved = torch.load(client / "model.pt", weights_only=True)
        assert all(torch.equal(saved[k], final[k]) for k in final)

    inf = run("fl-launch", "--client-num", "3", "--task", "inference", "--log-dir", str(log_dir), "--seed", "1")
    assert inf.returncode == 0, inf.stdout + inf.stderr
    info = run_json(log_dir / "latest")
    assert info["source_run"] == train_dir.name  # the newest run that has a checkpoint
    # same seed, same partitions: inference scores what training's final evaluation scored
    assert info["final_accuracy"] == pytest.approx(run_json(train_dir)["final_accuracy"], abs=1e-6)
    for i in range(3):
        text = (log_dir / "latest" / f"client_{i}" / "client.log").read_text()
        labels = re.search(r"\[model inference\] the predicted labels: \[([\d, ]+)\]", text).group(1)
        assert len(labels.split(",")) == 120  # 20% of this client's 599 samples
    assert len(runs(log_dir)) == 3  # each command its own folder; none overwritten


def test_cifar10_two_clients_one_round(tmp_path):
    _, _ = write_cifar(tmp_path / "data", per_batch=40)
    result = run("fl-launch", "--client-num", "2", "--rounds", "1", "--dataset", "cifar10",
                 "--data-dir", str(tmp_path / "data"), "--log-dir", str(tmp_path / "logs"))
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = runs(tmp_path / "logs")[0]
    state = torch.load(run_dir / "checkpoints" / "round_0001.pt", weights_only=True)
    assert state["features.0.weight"].shape == (6, 3, 5, 5)  # three channels from the data
    assert run_json(run_dir)["final_test_samples"] == 24  # 20% of 120


def test_fl_stats_on_the_real_run_matches_the_server(trained):
    import json

    from launcher.stats.follow import LogFollower

    log_dir, _ = trained
    run_dir = runs(log_dir)[0]
    server = [e.values for e in LogFollower(run_dir / "server" / "server.log").events()
              if e.kind == "server_round_end"]
    out = run("fl-stats", "--run", run_dir.name, "--log-dir", str(log_dir), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["clients"] == 3 and data["skipped_lines"] == 0
    # every client holds 120 test samples, so the mean over clients is the server's pooled accuracy
    assert [r["AVG"] for r in data["rounds"]] == pytest.approx([s["acc"] for s in server], abs=1e-6)
    assert [r["clients"] for r in data["rounds"]] == [3, 3]
    client = json.loads(run("fl-stats", "client_2", "--run", run_dir.name, "--log-dir", str(log_dir), "--json").stdout)
    from contract.run_settings import RunSettings

    assert [r["round"] for r in client["rounds"]] == [1, 2]
    assert len(client["epochs"]) == 2 * RunSettings().local_epochs
    listing = run("fl-stats", "--runs", "--log-dir", str(log_dir), "--json")
    first = json.loads(listing.stdout)[0]
    assert first["run"] == run_dir.name and first["status"] == "finished" and first["rounds_done"] == 2
    assert first["clients_alive"] == 0
    watched = run("fl-stats", "--watch", "--run", run_dir.name, "--log-dir", str(log_dir), timeout=60)
    assert watched.returncode == 0 and "AVG" in watched.stdout  # a finished run: one refresh, then done


ROUND_START = re.compile(r"\[round\] iteration:(\d+)/\d+ start$")
EVAL_ACC = re.compile(r"\[evaluate\] evaluate acc: ([\d.]+)$")
EPOCH_LOSS = re.compile(r"epoch:\d+,average loss:([\d.]+) -+$")


def _from_client_logs(run_dir):
    """tag -> {round: value}, out of the client logs with this test's own regexes."""
    want, accs = {}, {}
    for log in sorted(run_dir.glob("client_*/client.log")):
        client, round_, losses = log.parent.name, None, []
        for line in log.read_text().splitlines():
            if m := ROUND_START.search(line):
                round_, losses = int(m.group(1)), []
            elif (m := EVAL_ACC.search(line)) and round_ is not None:
                want.setdefault(f"{client}/acc", {})[round_] = float(m.group(1))
                accs.setdefault(round_, []).append(float(m.group(1)))
            elif (m := EPOCH_LOSS.search(line)) and round_ is not None:
                losses.append(float(m.group(1)))
                want.setdefault(f"{client}/train_loss", {})[round_] = sum(losses) / len(losses)
    for round_, values in accs.items():
        best = sorted(values, reverse=True)
        want.setdefault("clients/AVG", {})[round_] = sum(values) / len(values)
        want.setdefault("clients/TOP5", {})[round_] = sum(best[:5]) / len(best[:5])
        want.setdefault("clients/LOW5", {})[round_] = sum(best[-5:]) / len(best[-5:])
    return want


def _read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    events = EventAccumulator(str(folder))
    events.Reload()
    got = {}
    for tag in events.Tags()["tensors"]:
        assert events.SummaryMetadata(tag).plugin_data.plugin_name == "scalars", tag
        got[tag] = {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}
    return got


def test_fl_stats_tensorboard_one_run_and_several_side_by_side(trained, tmp_path):
    import shutil

    log_dir, _ = trained
    train_dir = runs(log_dir)[0]
    out = run("fl-stats", "--run", train_dir.name, "--log-dir", str(log_dir), "--tensorboard", str(tmp_path / "one"))
    assert out.returncode == 0, out.stderr
    got, want = _read_events(tmp_path / "one" / train_dir.name), _from_client_logs(train_dir)
    assert len(want) == 3 * 2 + 3 and all(len(v) == 2 for v in want.values())  # 3 clients x 2 rounds
    for tag, values in want.items():
        assert got[tag] == pytest.approx(values, rel=1e-5), tag
    # several runs, side by side: one folder each (the second without client 2's log)
    shutil.copytree(train_dir, tmp_path / "logs" / "run-a", symlinks=True)
    shutil.copytree(train_dir, tmp_path / "logs" / "run-b", symlinks=True)
    (tmp_path / "logs" / "run-b" / "client_2" / "client.log").unlink()
    out = run("fl-stats", "--runs", "--log-dir", str(tmp_path / "logs"), "--tensorboard", str(tmp_path / "tb"))
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["run-a", "run-b"]
    for name in ("run-a", "run-b"):
        got, want = _read_events(tmp_path / "tb" / name), _from_client_logs(tmp_path / "logs" / name)
        for tag, values in want.items():
            assert got[tag] == pytest.approx(values, rel=1e-5), (name, tag)
    assert "client_2/acc" not in _read_events(tmp_path / "tb" / "run-b")


def test_no_escape_codes_in_any_log_file_of_the_run(trained):
    from tests.test_plain_logs import coloured_logs

    log_dir, _ = trained
    assert coloured_logs(runs(log_dir)[0], process_mode=True) == []
