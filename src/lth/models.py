"""The torch models of the architectures in `architectures`, and their initialization (theta_0).

Layer names carry their kind for pruning: `conv*`, `fc*`, and `output` for the last, as
the name of the module that holds the weight (masks.layer_kind); BatchNorm layers are
`bn*`. A model's arrays (`state_arrays`: what theta_0, trained, rewind and ticket artifacts
and training checkpoints hold) are its parameters and its buffers, BatchNorm's running
statistics included, so that every artifact is the whole network as evaluation uses it.
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
                module = nn.Conv2d(layer.inputs, layer.outputs, layer.kernel, padding=layer.kernel // 2)
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


def conv_bn(inputs: int, outputs: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A conv without bias and the BatchNorm after it: BatchNorm's shift makes a conv bias
    redundant (open_lth's VGG keeps one; it changes no function the network can compute)."""
    return (nn.Conv2d(inputs, outputs, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(outputs))


class VGG(nn.Module):
    """architectures.VGG: conv -> BatchNorm -> ReLU, 2x2 max-pool between stages, global
    average pool, output layer."""

    def __init__(self, arch: architectures.VGG, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.pool_after, count = set(), 0  # indices of the last conv of every stage but the last
        for stage in arch.stages[:-1]:
            count += len(stage)
            self.pool_after.add(count)
        self.depth = 0
        for layer in arch.layers(input_shape, num_classes):
            if layer.kind == "conv":
                self.depth += 1
                conv, bn = conv_bn(layer.inputs, layer.outputs, layer.kernel)
                self.add_module(layer.name, conv)
                self.add_module(f"bn{self.depth}", bn)
            else:
                self.output = nn.Linear(layer.inputs, layer.outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.depth + 1):
            x = torch.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
            if i in self.pool_after:
                x = F.max_pool2d(x, 2)
        return self.output(x.mean((2, 3)))


class Shortcut(nn.Module):
    """A block's projection shortcut: 1x1 conv with the block's stride, then BatchNorm."""

    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.conv, self.bn = conv_bn(inputs, outputs, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Block(nn.Module):
    """A basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""

    def __init__(self, block: architectures.Block):
        super().__init__()
        k = architectures.KERNEL
        self.conv1, self.bn1 = conv_bn(block.inputs, block.outputs, k, block.stride)
        self.conv2, self.bn2 = conv_bn(block.outputs, block.outputs, k)
        self.shortcut = Shortcut(block.inputs, block.outputs, block.stride) if block.projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """architectures.ResNet: conv -> BatchNorm -> ReLU, the blocks, global average pool, output layer."""

    def __init__(self, arch: architectures.ResNet, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.conv, self.bn = conv_bn(input_shape[0], arch.width, architectures.KERNEL)
        self.blocks = nn.Sequential(*(Block(b) for b in arch.blocks()))
        self.output = nn.Linear(arch.width * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(torch.relu(self.bn(self.conv(x))))
        return self.output(x.mean((2, 3)))


class ModelError(LthError, ValueError):
    """Weights that do not fit the model, or an unknown model."""


def build(name: str, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    try:
        arch = architectures.architecture(name)
    except architectures.UnknownModel as err:
        raise ModelError(str(err)) from None
    if isinstance(arch, architectures.VGG):
        return VGG(arch, input_shape, num_classes)
    if isinstance(arch, architectures.ResNet):
        return ResNet(arch, input_shape, num_classes)
    return Network(name, input_shape, num_classes, dropout)


# The weights' initial distributions (`model.init`); reset.INIT_STD gives their standard
# deviations to the reinit control and the mask-1 actions that draw from them.
INITS = {
    # Gaussian Glorot, Frankle & Carbin's
    "glorot_normal": lambda p, g: nn.init.xavier_normal_(p, generator=g),
    # open_lth's kaiming_normal: N(0, 2 / fan_in)
    "kaiming_normal": lambda p, g: nn.init.kaiming_normal_(p, mode="fan_in", nonlinearity="relu", generator=g),
}
# BatchNorm's scale under each init: 1 (Frankle & Carbin's frameworks' default), or, as
# open_lth's default for its CIFAR ResNets and VGGs (batchnorm_init 'uniform'), U(0, 1)
BATCHNORM_SCALE = {
    "glorot_normal": lambda p, g: p.fill_(1.0),
    "kaiming_normal": lambda p, g: p.uniform_(0.0, 1.0, generator=g),
}


def initialize(model: nn.Module, seed: int, init: str = "glorot_normal") -> nn.Module:
    """From `seed` alone: conv and fc weights from `init`, BatchNorm scales as BATCHNORM_SCALE
    says, biases and BatchNorm shifts zero (open_lth leaves torch's default uniform biases:
    we keep Frankle & Carbin's zeros under both inits). Parameters are drawn in their order
    in the model, so LeNet and Conv-2/4/6 draw exactly what they always have."""
    if init not in INITS:
        raise ModelError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    generator = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, p in model.named_parameters():
            batchnorm = isinstance(modules[name.rpartition(".")[0]], nn.BatchNorm2d)
            if name.endswith(".weight"):
                (BATCHNORM_SCALE if batchnorm else INITS)[init](p, generator)
            else:
                p.zero_()
    return model


def array_shape(t: torch.Tensor) -> tuple[int, ...]:
    """A tensor's shape in an artifact: a scalar (BatchNorm's num_batches_tracked) as one
    element, the shape safetensors reads it back with."""
    return tuple(t.shape) or (1,)


def state_arrays(model: nn.Module) -> dict:
    """The model's parameters and buffers (BatchNorm's running statistics) as numpy arrays on
    the CPU, keyed by name. A model without buffers gives its parameters alone."""
    return {n: t.detach().cpu().numpy().reshape(array_shape(t)).copy() for n, t in model.state_dict().items()}


def load_arrays_into(model: nn.Module, arrays: dict) -> nn.Module:
    """Copy `arrays` (as state_arrays gives them) into the model's parameters and buffers."""
    tensors = model.state_dict(keep_vars=True)
    if set(tensors) != set(arrays):
        raise ModelError(f"weights {sorted(arrays)} do not match model parameters and buffers {sorted(tensors)}")
    with torch.no_grad():
        for name, t in tensors.items():
            if array_shape(t) != arrays[name].shape:
                raise ModelError(f"{name}: shape {arrays[name].shape} != model's {array_shape(t)}")
            t.copy_(torch.from_numpy(arrays[name]).reshape(t.shape))
    return model


def make_theta0(model_name: str, dataset: str, seed: int, init: str = "glorot_normal") -> dict:
    """theta_0 for (model, dataset, seed) as numpy arrays (from the dataset's shape, before the data)."""
    shape, classes = architectures.input_shape(dataset), architectures.num_classes(dataset)
    return state_arrays(initialize(build(model_name, shape, classes), seed, init))
