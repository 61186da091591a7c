"""The model: LeNet5 as in Flower's IoT tutorial (with BatchNorm), or a user's torch module.

    from simulator.model import LeNet5, build_model
    LeNet5(channels=1, num_classes=10)(torch.zeros(2, 1, 32, 32)).shape
    # torch.Size([2, 10])
    build_model("mymodels:TinyNet", channels=1, num_classes=10, search_path="/home/me/exp")

A user's class (``--model module:Class``) is built with whichever of
``channels`` (or ``in_channels``) and ``num_classes`` its constructor takes,
and must map a batch of the data set's images to one logit per class.
``search_path`` (the folder fl-launch was started in) is appended to
``sys.path`` so a module next to the user's data imports in every process.
"""

from __future__ import annotations

import importlib
import inspect
import sys

import torch
from torch import nn

from contract.errors import InputError

BUILT_IN = ""  # the empty spec: LeNet5


class LeNet5(nn.Module):
    def __init__(self, channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(5),  # 5x5 already at 32x32 (a no-op there); lets 28x28 and others in
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ModelError(InputError):
    """A --model that cannot be imported, built or run on the data set's shape (one line)."""


def _named(spec: str) -> str:
    return f"--model {spec}" if spec else "the built-in LeNet5 (--model)"


def model_class(spec: str, search_path: str = "") -> type[nn.Module]:
    if spec == BUILT_IN:
        return LeNet5
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ModelError(f"--model {spec!r} must be module:Class, e.g. mymodels:TinyNet")
    if search_path and search_path not in sys.path:
        sys.path.append(search_path)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 (any import failure of the user's module is one line)
        raise ModelError(f"--model {spec}: cannot import {module_name} ({type(err).__name__}: {err})") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelError(f"--model {spec}: {module_name} has no torch.nn.Module class {class_name}")
    return cls


def build_model(spec: str, channels: int, num_classes: int, search_path: str = "") -> nn.Module:
    cls = model_class(spec, search_path)
    if cls is LeNet5:
        return LeNet5(channels, num_classes)
    params = inspect.signature(cls).parameters
    kwargs = {"num_classes": num_classes} if "num_classes" in params else {}
    for name in ("channels", "in_channels"):
        if name in params:
            kwargs[name] = channels
    try:
        return cls(**kwargs)
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"--model {spec}: {cls.__name__}(**{kwargs}) failed ({type(err).__name__}: {err})") from None


def check_model(spec: str, shape: tuple[int, ...], num_classes: int, search_path: str = "") -> None:
    """Build the model and run two blank images of ``shape`` (C, H, W) through it, before anything starts."""
    model = build_model(spec, shape[0], num_classes, search_path)
    if any(nn.parameter.is_lazy(p) for p in model.parameters()):
        raise ModelError(f"--model {spec}: has lazy (unsized) parameters; give every layer its sizes, so all "
                         "clients start from the same weights")
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *shape))
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"{_named(spec)}: a batch of {tuple(shape)} images fails ({type(err).__name__}: {err})") \
            from None
    if tuple(out.shape) != (2, num_classes):
        raise ModelError(f"{_named(spec)}: gives {tuple(out.shape)} for 2 images; needs (2, {num_classes}), "
                         "one logit per class")


def initial_model(channels: int, num_classes: int, seed: int, spec: str = BUILT_IN,
                  search_path: str = "") -> nn.Module:
    """The same seed gives the same initial weights, on any host."""
    torch.manual_seed(seed)
    return build_model(spec, channels, num_classes, search_path)


def model_for(settings, seed: int | None = None):
    """The run's model (contract.run_settings.RunSettings) for its data set's shape; seeded when ``seed`` is given."""
    if seed is None:
        return build_model(settings.model, settings.channels, settings.num_classes, settings.model_path)
    return initial_model(settings.channels, settings.num_classes, seed, settings.model, settings.model_path)
