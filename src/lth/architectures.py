"""Facts about the datasets and architectures, without torch: input shapes, classes, layers.

`models` builds the torch modules from these facts; params validation, the report and the
benchmark read them without building a model. Three families:

- Frankle & Carbin's (ICLR 2019, arXiv 1803.03635, Figure 2) LeNet-300-100 and Conv-2/4/6:
  3x3 convs with 'same' padding, 2x2 max-pooling after each pair, then fully connected
  layers, ReLU throughout (`Plain`);
- `vgg11`, `vgg13`, `vgg16`, `vgg19`: the CIFAR VGG of their Section 5 and of open_lth's
  cifar_vgg (`VGG`);
- `resnet<D>` and `resnet<D>_<W>`: He et al.'s CIFAR ResNet (`ResNet`); resnet20 is
  Frankle & Carbin's "Resnet-18".

Layer names carry their kind (conv, fc, output), which the pruning rates are keyed by; the
kind is read from the module that holds the weight, the name's last part before `.weight`
(masks.layer_kind), so nested blocks name their layers `blocks.3.conv1` and the like.
BatchNorm layers are named `bn*`: they are not pruned and are not listed here.
"""

from __future__ import annotations

import re
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


KERNEL = 3  # conv kernels are KERNEL x KERNEL, but for ResNet's 1x1 shortcut projections


@dataclass(frozen=True)
class Layer:
    """A layer with prunable weights. Its name ends with a module name that starts with its
    kind (conv, fc, output), which is what the pruning rates are keyed by."""

    name: str
    kind: str
    inputs: int  # input channels (conv) or features (fc, output)
    outputs: int
    kernel: int = 1  # conv kernels are kernel x kernel

    @property
    def weights(self) -> int:
        return self.inputs * self.outputs * self.kernel * self.kernel


@dataclass(frozen=True)
class Plain:
    """LeNet-300-100 and Conv-2/4/6 (Frankle & Carbin, Fig. 2)."""

    convs: tuple[int, ...]  # output channels of each conv layer
    hidden: tuple[int, ...]  # widths of the fully connected layers before the output layer
    paper_iterations: int | None  # training iterations per round in Frankle & Carbin
    paper_dataset: str  # the dataset they train it on
    batchnorm = False

    def layers(self, shape: tuple[int, ...], classes: int) -> list[Layer]:
        channels, height, width = shape
        out = []
        for i, out_channels in enumerate(self.convs):
            out.append(Layer(f"conv{i + 1}", "conv", channels, out_channels, KERNEL))
            channels = out_channels
        pools = len(self.convs) // 2
        features = channels * (height >> pools) * (width >> pools)
        for i, units in enumerate(self.hidden):
            out.append(Layer(f"fc{i + 1}", "fc", features, units))
            features = units
        return out + [Layer("output", "output", features, classes)]


@dataclass(frozen=True)
class VGG:
    """The CIFAR VGG (open_lth's cifar_vgg; Simonyan & Zisserman's configurations A, B, D, E):
    stages of 3x3 convs, each followed by BatchNorm and ReLU, a 2x2 max-pool between stages,
    a global average pool, and one fully connected layer to the classes (`output`). Layers
    `conv1`..`convN` with BatchNorm `bn1`..`bnN`. The global average pool makes it run on
    any input of at least 16x16 (28x28 ends at 1x1, 32x32 at 2x2)."""

    stages: tuple[tuple[int, ...], ...]  # output channels of each conv, per stage
    paper_iterations: int | None
    paper_dataset: str = "cifar10"
    batchnorm = True

    def layers(self, shape: tuple[int, ...], classes: int) -> list[Layer]:
        channels, out = shape[0], []
        for width in (w for stage in self.stages for w in stage):
            out.append(Layer(f"conv{len(out) + 1}", "conv", channels, width, KERNEL))
            channels = width
        return out + [Layer("output", "output", channels, classes)]


@dataclass(frozen=True)
class Block:
    """One basic block of a ResNet: two 3x3 convs (the first with `stride`), and a 1x1
    projection shortcut when the shape changes."""

    name: str  # blocks.<i>
    inputs: int
    outputs: int
    stride: int

    @property
    def projection(self) -> bool:
        return self.stride != 1 or self.inputs != self.outputs


@dataclass(frozen=True)
class ResNet:
    """He et al.'s CIFAR ResNet (Deep Residual Learning, 2016, Section 4.2; open_lth's
    cifar_resnet_D_W): a 3x3 conv (`conv`, `bn`) of W filters, three stages of (D-2)/6
    basic blocks (`blocks.<i>.conv1/bn1/conv2/bn2`) with W, 2W and 4W filters, the first
    block of stages 2 and 3 halving the resolution (stride 2), a global average pool and
    one fully connected layer to the classes (`output`).

    Where a block changes the shape, its shortcut is a 1x1 convolution with stride 2 and
    BatchNorm (`blocks.<i>.shortcut.conv/bn`, He et al.'s option B), as open_lth does: so
    that results compare with open_lth's, and Frankle & Carbin's count of Resnet-18's conv
    weights (270K) includes these projections (without them it is 268K). The projections
    are conv layers like the others: pruned at the conv rate (open_lth prunes them too)."""

    depth: int
    width: int = 16
    paper_iterations: int | None = None
    paper_dataset: str = "cifar10"
    batchnorm = True

    def blocks(self) -> list[Block]:
        per_stage, out, channels = (self.depth - 2) // 6, [], self.width
        for stage in range(3):
            for i in range(per_stage):
                width = self.width << stage
                out.append(Block(f"blocks.{len(out)}", channels, width, 2 if stage and not i else 1))
                channels = width
        return out

    def layers(self, shape: tuple[int, ...], classes: int) -> list[Layer]:
        out = [Layer("conv", "conv", shape[0], self.width, KERNEL)]
        for b in self.blocks():
            out += [Layer(f"{b.name}.conv1", "conv", b.inputs, b.outputs, KERNEL),
                    Layer(f"{b.name}.conv2", "conv", b.outputs, b.outputs, KERNEL)]
            if b.projection:
                out.append(Layer(f"{b.name}.shortcut.conv", "conv", b.inputs, b.outputs))
        return out + [Layer("output", "output", self.width * 4, classes)]


Architecture = Plain | VGG | ResNet

ARCHITECTURES: dict[str, Plain | VGG] = {
    "lenet_300_100": Plain((), (300, 100), 50_000, "mnist"),
    "conv2": Plain((64, 64), (256, 256), 20_000, "cifar10"),
    "conv4": Plain((64, 64, 128, 128), (256, 256), 25_000, "cifar10"),
    "conv6": Plain((64, 64, 128, 128, 256, 256), (256, 256), 30_000, "cifar10"),
    "vgg11": VGG(((64,), (128,), (256, 256), (512, 512), (512, 512)), None),
    "vgg13": VGG(((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)), None),
    "vgg16": VGG(((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3), None),
    # Frankle & Carbin Section 5: 112K iterations (160 epochs at batch 64)
    "vgg19": VGG(((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4), 112_000),
}
RESNET = re.compile(r"resnet(\d+)(?:_(\d+))?")
RESNET_PAPER_ITERATIONS = {(20, 16): 30_000}  # Frankle & Carbin's "Resnet-18"
KNOWN = f"{', '.join(ARCHITECTURES)}, or resnet<D>[_<W>] (D = 6n+2: 20, 32, 44, 56, 110; W filters, 16 by default)"


class UnknownModel(ValueError):
    """A model name that names no architecture; the message says what would."""


def architecture(name: str) -> Architecture:
    """The architecture of a model name; UnknownModel (saying what is allowed) if none."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    match = RESNET.fullmatch(name)
    if not match:
        raise UnknownModel(f"{name!r} is not a known model; choose one of {KNOWN}")
    depth, width = int(match[1]), int(match[2] or 16)
    if depth < 8 or (depth - 2) % 6:
        below = max(8, (depth - 2) // 6 * 6 + 2)
        raise UnknownModel(f"{name!r}: a CIFAR ResNet's depth is 6n+2 (n >= 1 blocks per stage), and {depth} is "
                           f"not; use resnet{below} or resnet{below + 6}{'' if match[2] is None else f'_{width}'}")
    if width < 1:
        raise UnknownModel(f"{name!r}: the width W in resnet<D>_<W> must be at least 1 (16 by default)")
    return ResNet(depth, width, RESNET_PAPER_ITERATIONS.get((depth, width)))


def layers(model: str, shape: tuple[int, ...], classes: int) -> list[Layer]:
    """The prunable layers of `model` for inputs of `shape` (channels, height, width), in order."""
    return architecture(model).layers(shape, classes)


def dataset_layers(model: str, dataset: str) -> list[Layer]:
    return layers(model, input_shape(dataset), num_classes(dataset))
