"""The same LeNet5 trained centrally on the pooled data of a run's clients: the reference for FedAvg.

    python -m benchmarks.central_baseline logs/latest --epochs 20

Reads the run's own partition files (the union of the clients' train splits, and
of their test splits), trains with the run's batch size and learning rate, and
prints the test accuracy after each epoch as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from simulator.client_data import load_partition
from simulator.model import initial_model
from simulator.training import evaluate, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    run_dir = Path(args.run_dir).resolve()
    settings = json.loads((run_dir / "run.json").read_text())["settings"]
    torch.set_num_threads(1)
    parts = [load_partition(p) for p in sorted((run_dir / "data").glob("client_*.npz"))]
    x_train = torch.cat([p.x_train for p in parts]); y_train = torch.cat([p.y_train for p in parts])
    x_test = torch.cat([p.x_test for p in parts]); y_test = torch.cat([p.y_test for p in parts])
    model = initial_model(parts[0].channels, parts[0].num_classes, settings["seed"])
    accs = []
    for epoch in range(args.epochs):
        train(model, x_train, y_train, epochs=1, batch_size=settings["batch-size"], lr=settings["lr"],
              seed=settings["seed"] * 1000 + epoch)
        correct, total, _ = evaluate(model, x_test, y_test)
        accs.append(round(correct / total, 4))
    print(json.dumps({"run": run_dir.name, "train_samples": len(y_train), "test_samples": len(y_test),
                      "epochs": args.epochs, "accuracy_per_epoch": accs, "final_accuracy": accs[-1]}))


if __name__ == "__main__":
    main()
