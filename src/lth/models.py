"""Architectures, registered in a plain dict, and their initialization (theta_0).

Layer names carry their kind for pruning: `conv*`, `fc*`, and `output` for the last.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from lth import LthError


class LeNet300100(nn.Module):
    """LeNet-300-100: 784-300-100-10 fully connected, ReLU (Frankle & Carbin, Fig. 2)."""

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10,
                 dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), 300)
        self.fc2 = nn.Linear(300, 100)
        self.output = nn.Linear(100, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = self.dropout(torch.relu(self.fc1(x)))
        x = self.dropout(torch.relu(self.fc2(x)))
        return self.output(x)


class ConvNet(nn.Module):
    """Conv-2/4/6 (Frankle & Carbin, Fig. 2): pairs of 3x3 convs (ReLU, 'same' padding), each
    pair followed by 2x2 max-pooling, then fc 256-256-10. Built for any input shape."""

    def __init__(self, widths: tuple[int, ...], input_shape: tuple[int, ...] = (3, 32, 32),
                 num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        channels, height, width = input_shape
        for i, out in enumerate(widths):
            self.add_module(f"conv{i + 1}", nn.Conv2d(channels, out, 3, padding=1))
            channels = out
        self.n_convs = len(widths)
        pools = len(widths) // 2
        flat = channels * (height >> pools) * (width >> pools)
        self.fc1 = nn.Linear(flat, 256)
        self.fc2 = nn.Linear(256, 256)
        self.output = nn.Linear(256, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.n_convs):
            x = torch.relu(getattr(self, f"conv{i + 1}")(x))
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        x = x.flatten(1)
        x = self.dropout(torch.relu(self.fc1(x)))
        x = self.dropout(torch.relu(self.fc2(x)))
        return self.output(x)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet_300_100": LeNet300100,
    "conv2": partial(ConvNet, (64, 64)),
    "conv4": partial(ConvNet, (64, 64, 128, 128)),
    "conv6": partial(ConvNet, (64, 64, 128, 128, 256, 256)),
}


class ModelError(LthError, ValueError):
    """Weights that do not fit the model, or an unknown model."""


def build(name: str, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](input_shape=input_shape, num_classes=num_classes, dropout=dropout)


def initialize(model: nn.Module, seed: int) -> nn.Module:
    """Gaussian Glorot (xavier normal) weights, zero biases, from `seed` alone."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".weight"):
                nn.init.xavier_normal_(p, generator=generator)
            else:
                p.zero_()
    return model


def state_arrays(model: nn.Module) -> dict:
    """The model's parameters as numpy arrays on the CPU, keyed by parameter name."""
    return {n: p.detach().cpu().numpy().copy() for n, p in model.named_parameters()}


def load_arrays_into(model: nn.Module, arrays: dict) -> nn.Module:
    params = dict(model.named_parameters())
    if set(params) != set(arrays):
        raise ModelError(f"weights {sorted(arrays)} do not match model parameters {sorted(params)}")
    with torch.no_grad():
        for name, p in params.items():
            if tuple(p.shape) != arrays[name].shape:
                raise ModelError(f"{name}: shape {arrays[name].shape} != model's {tuple(p.shape)}")
            p.copy_(torch.from_numpy(arrays[name]))
    return model


# Input shape and number of classes per dataset, so theta_0 can be made before the data.
DATASETS = {"mnist": ((1, 28, 28), 10), "fashion_mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10)}


def make_theta0(model_name: str, dataset: str, seed: int) -> dict:
    """theta_0 for (model, dataset, seed) as numpy arrays."""
    input_shape, classes = DATASETS[dataset]
    return state_arrays(initialize(build(model_name, input_shape, classes), seed))
