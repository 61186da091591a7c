"""Planning a run without starting it: determinism and the folder it prepares."""

import numpy as np
import torch

from launcher.run.options import LaunchOptions
from launcher.run.plan import prepare_run
from simulator.model import initial_model


def test_same_seed_same_partitions_and_initial_model(tmp_path):
    opts = LaunchOptions(client_num=4, log_dir=str(tmp_path), partition="dirichlet", seed=7)
    a, b = prepare_run(opts), prepare_run(opts)
    assert a.path != b.path
    for i in range(4):
        with np.load(a.path / "data" / f"client_{i}.npz") as x, np.load(b.path / "data" / f"client_{i}.npz") as y:
            assert all(np.array_equal(x[k], y[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    m1, m2, m3 = initial_model(1, 10, 7), initial_model(1, 10, 7), initial_model(1, 10, 8)
    assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert not torch.equal(m1.state_dict()["features.0.weight"], m3.state_dict()["features.0.weight"])


def test_prepared_folder_for_the_flower_tutorial_setting(tmp_path):
    from tests.test_datasets import write_cifar

    write_cifar(tmp_path / "data", per_batch=100)
    folder = prepare_run(LaunchOptions(client_num=10, dataset="cifar10", data_dir=str(tmp_path / "data"),
                                       log_dir=str(tmp_path / "logs")))
    info = folder.read()
    assert info["status"] == "prepared" and info["plan"]["channels"] == 3
    assert [n["samples"] for n in info["plan"]["nodes"]] == [30] * 10
    assert (folder.path / "app" / "pyproject.toml").read_text().count("num-clients = 10") == 1
    node = (folder.path / "client_3" / "node_config.toml").read_text()
    assert "partition-id = 3" in node and "num-partitions = 10" in node


def test_a_fleet_asking_more_cores_than_the_machine_has_is_warned_about(tmp_path, capsys, monkeypatch):
    """Process mode: the shares of the clients that may train at once (a round's sample, at most one per
    compute slot: cores + 1 for held clients) against the cores, half a core kept for the server."""
    import os

    from contract.fleet_record import Fleet, Profile
    from launcher.fleet.profiles import cpu_warning

    fleet = Fleet.of("f.toml", 8, (Profile("pi", range(0, 4), cpu=0.3), Profile("box", range(4, 8), cpu=0.9)))
    assert cpu_warning(fleet, list(range(4)), at_once=3, cores=2) is None       # 0.9 of 1.5
    assert "ask 2.7 cores of this machine's 2" in cpu_warning(fleet, list(range(8)), at_once=3, cores=2)
    assert cpu_warning(fleet, list(range(8)), at_once=3, cores=4) is None       # 2.7 of 3.5
    assert "ask 1 cores" in cpu_warning(Fleet.of("f.toml", 2, ()), [0, 1], at_once=1, cores=1)  # no profile: 1.0

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    (tmp_path / "fleet.toml").write_text('[[profile]]\nname = "box"\nclients = "rest"\ncpu = 0.9\n')
    common = dict(client_num=4, log_dir=str(tmp_path / "logs"), fleet=str(tmp_path / "fleet.toml"))
    warned = prepare_run(LaunchOptions(**common)).read()
    assert "ask 2.7 cores" in warned["warnings"][0] and "ask 2.7 cores" in capsys.readouterr().err
    fits = prepare_run(LaunchOptions(**common, clients_per_round=1)).read()  # one at a time: 0.9 of 1.5
    assert "warnings" not in fits and "cores" not in capsys.readouterr().err


def test_resume_goes_on_after_rounds_failed_at_their_deadline_and_stops_at_a_gap(tmp_path):
    """A round failed at its deadline (its .failed mark) is done: resume goes on after it from the newest
    checkpoint before it; a round with neither mark nor checkpoint (not aggregated) is where resume starts."""
    from contract.run_settings import checkpoint_path, failed_round_path, resume_checkpoint

    assert resume_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    for mark in (checkpoint_path(tmp_path, 0), failed_round_path(tmp_path, 1), checkpoint_path(tmp_path, 2),
                 failed_round_path(tmp_path, 3), checkpoint_path(tmp_path, 5)):
        mark.write_text("")
    assert resume_checkpoint(tmp_path) == (3, checkpoint_path(tmp_path, 2))  # round 4: a gap
    assert resume_checkpoint(tmp_path, last_round=2) == (2, checkpoint_path(tmp_path, 2))
    assert resume_checkpoint(tmp_path, last_round=1) == (1, checkpoint_path(tmp_path, 0))
