"""The accuracy references for a run: central training, and FedAvg in one process without Flower.

    python -m benchmarks.references logs/latest --central-epochs 20

Both read the run's own partition files and settings (seed, rounds, local epochs,
batch size, learning rate), so they differ from the run in one thing only:
- central: the same LeNet5 trained on the union of the clients' train splits;
- fedavg: every client's local training done here, in turn, with the seeds the
  ClientApp uses, and the replies averaged as Flower's FedAvg does (weighted by
  train samples). It shows what the federation itself changes: nothing, up to
  the order of floating-point sums.
Accuracy is over the union of the clients' test splits, as the run's final line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from contract.run_settings import RunSettings
from launcher.run.record import RunRecord
from simulator.client_data import Partition, load_partition, partition_files
from simulator.model import LeNet5, initial_model
from simulator.training import evaluate, train


def load_run(run_dir: str | Path) -> tuple[RunSettings, list[Partition]]:
    run_dir = Path(run_dir).resolve()
    settings = RunRecord.from_json(json.loads((run_dir / "run.json").read_text())).settings
    return settings, [load_partition(p) for p in partition_files(run_dir / "data")]


def test_accuracy(model: torch.nn.Module, parts: list[Partition]) -> float:
    """Over the union of the clients' test splits."""
    correct = total = 0
    for part in parts:
        c, t, _ = evaluate(model, part.x_test, part.y_test)
        correct, total = correct + c, total + t
    return correct / total


def central(settings: RunSettings, parts: list[Partition], epochs: int) -> list[float]:
    """Test accuracy after each epoch of training on the pooled train splits."""
    x = torch.cat([p.x_train for p in parts])
    y = torch.cat([p.y_train for p in parts])
    model = initial_model(parts[0].channels, parts[0].num_classes, settings.seed)
    accs = []
    for epoch in range(epochs):
        train(model, x, y, epochs=1, batch_size=settings.batch_size, lr=settings.lr,
              seed=settings.seed * 1000 + epoch)
        accs.append(test_accuracy(model, parts))
    return accs


def fedavg(settings: RunSettings, parts: list[Partition]) -> list[float]:
    """Test accuracy of the global model after each round (every client takes part)."""
    channels, classes = parts[0].channels, parts[0].num_classes
    global_state = initial_model(channels, classes, settings.seed).state_dict()
    model = LeNet5(channels, classes)
    total_weight = sum(p.num_train for p in parts)
    accs = []
    for server_round in range(1, settings.rounds + 1):
        summed: dict[str, np.ndarray] = {}
        for pid, part in enumerate(parts):
            model.load_state_dict(global_state)
            train(model, part.x_train, part.y_train, epochs=settings.local_epochs,
                  batch_size=settings.batch_size, lr=settings.lr,
                  seed=settings.seed * 1_000_003 + server_round * 10_007 + pid)
            weight = part.num_train / total_weight
            for key, value in model.state_dict().items():
                term = value.numpy() * weight
                summed[key] = term if key not in summed else summed[key] + term
        global_state = {k: torch.from_numpy(np.asarray(v)).to(global_state[k].dtype) for k, v in summed.items()}
        model.load_state_dict(global_state)
        accs.append(test_accuracy(model, parts))
    return accs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--central-epochs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings, parts = load_run(args.run_dir)
    central_accs = central(settings, parts, args.central_epochs)
    fedavg_accs = fedavg(settings, parts)
    print(json.dumps({
        "run": Path(args.run_dir).resolve().name,
        "central": {"epochs": args.central_epochs, "per_epoch": central_accs, "final": central_accs[-1]},
        "fedavg": {"rounds": settings.rounds, "per_round": fedavg_accs, "final": fedavg_accs[-1]},
    }))


if __name__ == "__main__":
    main()
