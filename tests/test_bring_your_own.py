"""The built-in app on a user's own model, own split (client_<i>.npz), Flower's other strategies, option files."""

import hashlib

import numpy as np
import pytest
import torch

from launcher.stats.follow import LogFollower
from tests.helpers import run, run_json, runs, wait_until_nothing_tagged

TINY_NET = '''
from torch import nn


class TinyNet(nn.Module):
    """A user's model: no BatchNorm, its own layer names, sized from in_channels and num_classes."""

    def __init__(self, in_channels, num_classes, hidden=32):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.body(x)
'''


def write_split(folder, clients=3, classes=4, seed=0):
    """client_<i>.npz as a user would save them: grey 28x28 floats in 0..1, no num_classes key."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(0, 1, (classes, 28, 28))
    folder.mkdir(parents=True)
    for i in range(clients):
        arrays = {}
        for split, n in (("train", 80), ("test", 20)):
            y = rng.integers(0, classes, n)
            arrays[f"x_{split}"] = np.clip(prototypes[y] + rng.normal(0, 0.2, (n, 28, 28)), 0, 1).astype(np.float32)
            arrays[f"y_{split}"] = y
        np.savez(folder / f"client_{i}.npz", **arrays)


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_a_users_model_on_a_users_split(tmp_path):
    (tmp_path / "tinynet.py").write_text(TINY_NET)
    write_split(tmp_path / "split")
    before = _digest(tmp_path / "split")
    result = run("fl-launch", "--client-num", "3", "--rounds", "2", "--local-epochs", "2", "--dataset", "npz",
                 "--data-dir", "split", "--model", "tinynet:TinyNet", "--log-dir", "logs", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = runs(tmp_path / "logs")[0]
    info = run_json(run_dir)
    assert info["plan"]["classes"] == 4 and info["plan"]["channels"] == 1
    state = torch.load(run_dir / "checkpoints" / "round_0002.pt", weights_only=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "body.1.weight": (32, 784), "body.1.bias": (32,), "body.3.weight": (4, 32), "body.3.bias": (4,)}
    assert info["final_accuracy"] > 0.6  # four well-separated classes; chance is 0.25
    assert info["final_test_samples"] == 60
    for i in range(3):
        assert (run_dir / "data" / f"client_{i}.npz").resolve() == (tmp_path / "split" / f"client_{i}.npz")
        assert (run_dir / f"client_{i}" / "client.log").read_text().count("evaluate acc:") == 2
    assert _digest(tmp_path / "split") == before  # used, never written


# With tau ~ 0, the first server step of FedAdam moves every weight by the same amount whatever the clients'
# mean update d: eta * sqrt(1 - b2^2) / (1 - b1^2) * (1 - b1) / sqrt(1 - b2) (Flower's bias correction at
# round 1); FedAdagrad's by eta. FedAvg would move each weight by d itself.
ADAM_STEP = 0.05 * np.sqrt(1 - 0.99**2) / (1 - 0.9**2) * (1 - 0.9) / np.sqrt(1 - 0.99)
STRATEGIES = {  # --strategy: (Flower's class, knobs, a line of its summary, the step every weight takes)
    "fedprox": ("FedProx", ["--proximal-mu", "0.5"], "Proximal mu: 0.5", None),
    "fedadam": ("FedAdam", ["--server-lr", "0.05", "--tau", "1e-9"], "eta (0.05)", ADAM_STEP),
    "fedyogi": ("FedYogi", ["--server-lr", "0.02"], "eta (0.02)", None),
    "fedadagrad": ("FedAdagrad", ["--server-lr", "0.03", "--tau", "1e-9"], "eta (0.03)", 0.03),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_each_strategy_for_one_round(tmp_path, name):
    flower_class, knobs, summary, step = STRATEGIES[name]
    result = run("fl-launch", "--client-num", "2", "--rounds", "1", "--local-epochs", "1", "--strategy", name,
                 *knobs, "--log-dir", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = runs(tmp_path)[0]
    streamed = (run_dir / "server" / "serverapp.log").read_text()
    assert f"Starting Logged{flower_class} strategy" in streamed
    assert summary in streamed  # the knob reached Flower's strategy
    ends = [e for e in LogFollower(run_dir / "server" / "server.log").events() if e.kind == "server_round_end"]
    assert len(ends) == 1 and ends[0].values["replies"] == 2 and ends[0].values["aggregated"]
    moved = _steps(run_dir)
    if step is not None:
        assert float(moved.median()) == pytest.approx(step, rel=1e-3)
    else:
        assert float(moved.median()) > 0


def _steps(run_dir, key="features.0.weight"):
    first = torch.load(run_dir / "checkpoints" / "round_0000.pt", weights_only=True)[key]
    second = torch.load(run_dir / "checkpoints" / "round_0001.pt", weights_only=True)[key]
    return (second - first).abs()


def test_options_from_a_file_and_a_run_repeated_from_its_run_json(tmp_path):
    (tmp_path / "exp.toml").write_text('client-num = 2\nrounds = 3\nlocal_epochs = 1\nseed = 5\n'
                                       'strategy = "fedprox"\nproximal-mu = 0.1\n')
    first = run("fl-launch", "--config", str(tmp_path / "exp.toml"), "--rounds", "1", "--log-dir", str(tmp_path),
                timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    original = runs(tmp_path)[0]
    options = run_json(original)["options"]
    assert (options["client_num"], options["rounds"], options["seed"], options["strategy"], options["proximal_mu"]) \
        == (2, 1, 5, "fedprox", 0.1)  # the command line's --rounds won over the file's
    again = run("fl-launch", "--config", str(original / "run.json"), "--log-dir", str(tmp_path), timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    repeat = [r for r in runs(tmp_path) if r != original][0]
    repeated = run_json(repeat)
    assert {k: v for k, v in repeated["options"].items() if k != "kill_tag"} == \
           {k: v for k, v in options.items() if k != "kill_tag"}
    assert repeated["kill_tag"] != run_json(original)["kill_tag"]
    assert repeated["final_accuracy"] == pytest.approx(run_json(original)["final_accuracy"], abs=0.02)
    assert repeated["options"]["proximal_mu"] == 0.1


BROKEN_NET = '''
from torch import nn


class Net(nn.Module):
    """Passes the launcher's check (it evaluates) but every client's training raises."""

    def __init__(self, channels, num_classes):
        super().__init__()
        self.f = nn.Sequential(nn.Flatten(), nn.Linear(channels * 32 * 32, num_classes))

    def forward(self, x):
        if self.training:
            raise RuntimeError("this model refuses to train")
        return self.f(x)
'''


def test_a_run_where_every_client_fails_ends_failed(tmp_path):
    (tmp_path / "brokennet.py").write_text(BROKEN_NET)
    result = run("fl-launch", "--client-num", "2", "--rounds", "2", "--model", "brokennet:Net", "--kill-tag",
                 "test-all-fail", "--log-dir", "logs", cwd=tmp_path, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    run_dir = runs(tmp_path / "logs")[0]
    info = run_json(run_dir)
    assert info["status"] == "failed" and "no client replied in any round" in info["reason"]
    assert "this model refuses to train" in (run_dir / "client_0" / "worker.log").read_text()
    assert wait_until_nothing_tagged("test-all-fail") == []
