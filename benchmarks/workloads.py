"""The benchmark's workloads, each a set of fl-launch options.

    >>> W["W1"].options(log_dir="bench/logs", tag="w1").client_num
    10

Sample counts are train samples per client, as the tutorials state them; the
partitioner keeps a fifth of each client's share for its test split, so a
client is given train / 0.8 samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from launcher.run.options import LaunchOptions
from simulator.client_data import TEST_FRACTION

_DEFAULT = LaunchOptions()


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    clients: int
    rounds: int
    local_epochs: int
    dataset: str = "synthetic"
    train_samples: int = 0  # per client; 0: the data set's own size split over the clients
    num_classes: int = 10
    partition: str = "iid"
    batch_size: int = 32
    as_given: bool = False  # only --client-num and --rounds: every other option is fl-launch's default

    def options(self, log_dir: str, tag: str) -> LaunchOptions:
        if self.as_given:
            return LaunchOptions(client_num=self.clients, rounds=self.rounds, log_dir=log_dir, kill_tag=tag)
        per_client = math.ceil(self.train_samples / (1 - TEST_FRACTION)) if self.train_samples else 500
        return LaunchOptions(
            client_num=self.clients, rounds=self.rounds, local_epochs=self.local_epochs,
            batch_size=self.batch_size, dataset=self.dataset, samples_per_client=per_client,
            num_classes=self.num_classes, partition=self.partition, log_dir=log_dir, kill_tag=tag,
        )

    def launch_args(self, log_dir: str, tag: str) -> list[str]:
        if self.as_given:
            return ["--client-num", str(self.clients), "--task", "train", "--rounds", str(self.rounds),
                    "--log-dir", log_dir, "--kill-tag", tag]
        o = self.options(log_dir, tag)
        return ["--client-num", str(o.client_num), "--rounds", str(o.rounds), "--local-epochs", str(o.local_epochs),
                "--batch-size", str(o.batch_size), "--dataset", o.dataset, "--samples-per-client",
                str(o.samples_per_client), "--num-classes", str(o.num_classes), "--partition", o.partition,
                "--log-dir", log_dir, "--kill-tag", tag]


W = {w.name: w for w in [
    Workload("W0", "framework latency: 10 clients x 8 samples, 1 epoch, 5 rounds (compute ~0)",
             clients=10, rounds=5, local_epochs=1, train_samples=8),
    Workload("W1", "Flower tutorial shape: 10 clients x 5000 CIFAR-shaped samples, 1 epoch, 5 rounds",
             clients=10, rounds=5, local_epochs=1, train_samples=5000),
    Workload("W2", "MindSpore tutorial shape: 50 clients x 226 FEMNIST-shaped samples (62 classes), "
             "20 epochs, 3 rounds", clients=50, rounds=3, local_epochs=20, train_samples=226, num_classes=62),
    Workload("W3-iid", "accuracy: digits, 10 IID clients, 20 rounds, default options",
             clients=10, rounds=20, local_epochs=_DEFAULT.local_epochs, dataset="digits"),
    Workload("W3-dirichlet", "accuracy: digits, 10 Dirichlet(0.5) clients, 20 rounds, default options",
             clients=10, rounds=20, local_epochs=_DEFAULT.local_epochs, dataset="digits",
             partition="dirichlet"),
    Workload("SEED", "the seed's command: fl-launch --client-num 50 --task train --rounds 5 (its defaults: "
             "digits, 3 local epochs; 50 clients run one process each)", clients=50, rounds=5,
             local_epochs=_DEFAULT.local_epochs, dataset="digits", as_given=True),
]}
