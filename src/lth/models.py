"""The torch models of the architectures in `architectures`, and their initialization (theta_0).

Layer names carry their kind for pruning: `conv*`, `fc*`, and `output` for the last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lth import LthError, architectures


class Network(nn.Module):
    """LeNet-300-100 and Conv-2/4/6 (Frankle & Carbin, Fig. 2), built from their layers in
    `architectures`: 3x3 convs (ReLU, 'same' padding) with 2x2 max-pooling after each pair,
    then fully connected layers (ReLU, dropout) and the output layer."""

    def __init__(self, name: str, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.conv_names, self.fc_names = [], []  # in the order the input passes them
        for layer in architectures.layers(name, input_shape, num_classes):
            if layer.kind == "conv":
                module = nn.Conv2d(layer.inputs, layer.outputs, architectures.KERNEL,
                                   padding=architectures.KERNEL // 2)
                self.conv_names.append(layer.name)
            else:
                module = nn.Linear(layer.inputs, layer.outputs)
                self.fc_names += [layer.name] if layer.kind == "fc" else []
            self.add_module(layer.name, module)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, name in enumerate(self.conv_names):
            x = torch.relu(getattr(self, name)(x))
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        x = x.flatten(1)
        for name in self.fc_names:
            x = self.dropout(torch.relu(getattr(self, name)(x)))
        return self.output(x)


class ModelError(LthError, ValueError):
    """Weights that do not fit the model, or an unknown model."""


def build(name: str, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    if name not in architectures.ARCHITECTURES:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(architectures.ARCHITECTURES))}")
    return Network(name, input_shape, num_classes, dropout)


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


def make_theta0(model_name: str, dataset: str, seed: int) -> dict:
    """theta_0 for (model, dataset, seed) as numpy arrays (from the dataset's shape, before the data)."""
    shape, classes = architectures.input_shape(dataset), architectures.num_classes(dataset)
    return state_arrays(initialize(build(model_name, shape, classes), seed))
