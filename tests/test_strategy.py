"""The round logging strategy's own rules on top of Flower's FedAvg, against grids whose nodes arrive late."""

from flwr.app import ConfigRecord

from contract.loglines import LogWriter
from contract.run_settings import RunSettings
from simulator.model import LeNet5
from simulator.strategy import LoggedFedAvg
from simulator.wire import pack


class LateGrid:
    """Node 1 is connected from the start; node 2 shows up on the third look."""

    def __init__(self):
        self.looks = 0

    def get_node_ids(self):
        self.looks += 1
        return [1] if self.looks < 3 else [1, 2]


def test_round_one_samples_every_client_even_when_some_connect_late(tmp_path, monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)  # what a ServerApp process has; messages need it
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    settings = RunSettings(num_clients=2, run_dir=str(tmp_path), channels=1, num_classes=10)
    strategy = LoggedFedAvg(settings, LogWriter(tmp_path / "server.log", "FLServer"))
    grid = LateGrid()
    messages = list(strategy.configure_train(1, pack(LeNet5(1, 10).state_dict()), ConfigRecord(), grid))
    assert sorted(m.metadata.dst_node_id for m in messages) == [1, 2]
    assert "iteration:1/10 start sampled:2" in (tmp_path / "server.log").read_text()


class JoiningGrid:
    """Nodes 1-3 are connected; node 4 (a client restarting as a new node) registers after two looks."""

    def __init__(self):
        self.looks = 0

    def get_node_ids(self):
        self.looks += 1
        return [1, 2, 3] if self.looks <= 2 else [1, 2, 3, 4]


def test_a_node_joining_mid_configure_does_not_turn_the_round_into_a_random_subset(tmp_path, monkeypatch):
    """Flower's FedAvg lists the nodes once to size the sample and again to draw it: with a node joining in
    between it would draw 3 of 4 at random and leave a connected client out of the round."""
    import random

    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    settings = RunSettings(num_clients=3, run_dir=str(tmp_path), channels=1, num_classes=10)
    for seed in range(10):
        random.seed(seed)
        strategy = LoggedFedAvg(settings, LogWriter(tmp_path / "server.log", "FLServer"))
        messages = list(strategy.configure_train(2, pack(LeNet5(1, 10).state_dict()), ConfigRecord(), JoiningGrid()))
        assert sorted(m.metadata.dst_node_id for m in messages) == [1, 2, 3]
