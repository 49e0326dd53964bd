"""Facts about the datasets and architectures, without torch: input shapes, classes, layers.

`models` builds the torch modules from these layers; params validation, the report and the
benchmark read them without building a model. Architectures are Frankle & Carbin's (ICLR
2019, arXiv 1803.03635, Figure 2): 3x3 convs with 'same' padding, 2x2 max-pooling after
each pair, then fully connected layers, ReLU throughout.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dataset:
    input_shape: tuple[int, int, int]  # channels, height, width
    classes: int
    train_examples: int  # in the official training files, before the validation split


DATASETS = {
    "mnist": Dataset((1, 28, 28), 10, 60_000),
    "fashion_mnist": Dataset((1, 28, 28), 10, 60_000),
    "cifar10": Dataset((3, 32, 32), 10, 50_000),
}


def input_shape(dataset: str) -> tuple[int, int, int]:
    return DATASETS[dataset].input_shape


def num_classes(dataset: str) -> int:
    return DATASETS[dataset].classes


@dataclass(frozen=True)
class Architecture:
    convs: tuple[int, ...]  # output channels of each conv layer
    hidden: tuple[int, ...]  # widths of the fully connected layers before the output layer
    paper_iterations: int  # training iterations per round in Frankle & Carbin
    paper_dataset: str  # the dataset they train it on


ARCHITECTURES = {
    "lenet_300_100": Architecture((), (300, 100), 50_000, "mnist"),
    "conv2": Architecture((64, 64), (256, 256), 20_000, "cifar10"),
    "conv4": Architecture((64, 64, 128, 128), (256, 256), 25_000, "cifar10"),
    "conv6": Architecture((64, 64, 128, 128, 256, 256), (256, 256), 30_000, "cifar10"),
}
KERNEL = 3  # conv kernels are KERNEL x KERNEL


@dataclass(frozen=True)
class Layer:
    """A layer with weights. Its name starts with its kind (conv, fc, output), which is
    what the pruning rates are keyed by."""

    name: str
    kind: str
    inputs: int  # input channels (conv) or features (fc, output)
    outputs: int

    @property
    def weights(self) -> int:
        return self.inputs * self.outputs * (KERNEL * KERNEL if self.kind == "conv" else 1)


def layers(model: str, shape: tuple[int, ...], classes: int) -> list[Layer]:
    """The layers of `model` for inputs of `shape` (channels, height, width), in order."""
    arch = ARCHITECTURES[model]
    channels, height, width = shape
    out = []
    for i, out_channels in enumerate(arch.convs):
        out.append(Layer(f"conv{i + 1}", "conv", channels, out_channels))
        channels = out_channels
    pools = len(arch.convs) // 2
    features = channels * (height >> pools) * (width >> pools)
    for i, units in enumerate(arch.hidden):
        out.append(Layer(f"fc{i + 1}", "fc", features, units))
        features = units
    return out + [Layer("output", "output", features, classes)]


def dataset_layers(model: str, dataset: str) -> list[Layer]:
    return layers(model, input_shape(dataset), num_classes(dataset))
