"""Architectures, registered in a plain dict, and their initialization (theta_0).

Layer names carry their kind for pruning: `conv*`, `fc*`, and `output` for the last.
"""

from __future__ import annotations

import torch
from torch import nn


class LeNet300100(nn.Module):
    """LeNet-300-100: 784-300-100-10 fully connected, ReLU (Frankle & Carbin, Fig. 2)."""

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        n_in = 1
        for d in input_shape:
            n_in *= d
        self.fc1 = nn.Linear(n_in, 300)
        self.fc2 = nn.Linear(300, 100)
        self.output = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.output(x)


MODELS: dict[str, type[nn.Module]] = {
    "lenet_300_100": LeNet300100,
}


def build(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](input_shape, num_classes)


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
        raise ValueError(f"weights {sorted(arrays)} do not match model parameters {sorted(params)}")
    with torch.no_grad():
        for name, p in params.items():
            if tuple(p.shape) != arrays[name].shape:
                raise ValueError(f"{name}: shape {arrays[name].shape} != model's {tuple(p.shape)}")
            p.copy_(torch.from_numpy(arrays[name]))
    return model


# Input shape and number of classes per dataset, so theta_0 can be made before the data.
DATASETS = {"mnist": ((1, 28, 28), 10)}


def make_theta0(model_name: str, dataset: str, seed: int) -> dict:
    """theta_0 for (model, dataset, seed) as numpy arrays."""
    input_shape, classes = DATASETS[dataset]
    return state_arrays(initialize(build(model_name, input_shape, classes), seed))
