"""Local training, evaluation and prediction on tensors already in memory.

    losses = train(model, part.x_train, part.y_train, epochs=1, batch_size=32,
                       lr=1e-3, seed=7)
    correct, total, loss = evaluate(model, part.x_test, part.y_test)
"""

from __future__ import annotations

import torch
from torch import nn


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    on_epoch=None,
    proximal_mu: float = 0.0,
) -> list[float]:
    """Adam over shuffled mini-batches; returns the mean loss of each epoch.

    With ``proximal_mu`` > 0 (FedProx) the loss minimised adds
    mu/2 * ||w - w_received||^2, keeping the update near the received model;
    the loss reported is the data term alone.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    anchor = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else []
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    n = x.shape[0]
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size].to(x.device)
            if idx.numel() < 2 and n >= 2:  # BatchNorm needs two samples
                continue
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            if anchor:
                proximal = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
                (loss + proximal_mu / 2 * proximal).backward()
            else:
                loss.backward()
            optimizer.step()
            total += loss.item() * idx.numel()
            count += idx.numel()
        losses.append(total / max(count, 1))
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    return losses


def warm_up(channels: int = 1, num_classes: int = 2) -> None:
    """One forward, backward and Adam step on two blank images.

    The first step in a process costs ~0.7 s and ~70 MB of lazily imported modules;
    a process that serves many tasks (or forks many clients) pays it once, here.
    """
    from simulator.model import LeNet5  # noqa: PLC0415 (model imports nothing from here)

    x = torch.zeros(2, channels, 32, 32)
    y = torch.arange(2) % num_classes
    model = LeNet5(channels, num_classes)
    train(model, x, y, epochs=1, batch_size=2, lr=1e-3, seed=0)
    evaluate(model, x, y)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> tuple[int, int, float]:
    """Returns (correct, total, mean cross-entropy)."""
    if model.training:  # a model shared by read-only tasks is switched once, not walked again per client
        model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    correct, loss = 0, 0.0
    for i in range(0, x.shape[0], batch_size):
        out = model(x[i : i + batch_size])
        loss += loss_fn(out, y[i : i + batch_size]).item()
        correct += int((out.argmax(1) == y[i : i + batch_size]).sum())
    total = int(x.shape[0])
    return correct, total, loss / max(total, 1)
