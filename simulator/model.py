"""LeNet5 as in Flower's IoT tutorial, with BatchNorm, sized from the data set.

    >>> from simulator.model import LeNet5
    >>> net = LeNet5(channels=1, num_classes=10)
    >>> net(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import nn


class LeNet5(nn.Module):
    def __init__(self, channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def initial_model(channels: int, num_classes: int, seed: int) -> LeNet5:
    """The same seed gives the same initial weights, on any host."""
    torch.manual_seed(seed)
    return LeNet5(channels, num_classes)
