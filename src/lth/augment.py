"""Data augmentation of training batches (`train.augment`): a random crop of each image
padded by PADDING pixels on every side, then a horizontal flip with probability 1/2: the
CIFAR-10 recipe of the deep networks (Frankle & Carbin Section 5; open_lth's
RandomCrop(32, 4) and RandomHorizontalFlip).

Done on whole batches on the training device: the batch is padded once, each example's
offsets and flip are drawn at once, and the crops are gathered by one `gather` (no
per-example Python, no PIL): on 1 CPU thread 2-9 ms for a CIFAR batch of 128, under 1% of
a Conv-2 step on that batch (measured side by side). The padding is black: the value a zero pixel takes under
`data.normalize` (`Split.black`), as torchvision pads before normalizing. The draws come
from a generator of their own on the CPU (the same on every device), seeded from the
training's seed, never from torch's global generator; its state is part of a training
checkpoint. Shape-generic: it also runs on 28x28 data, where a flip changes the meaning of
some classes (MNIST digits); the recipe is meant for CIFAR-shaped natural images.
"""

from __future__ import annotations

import numpy as np
import torch

PADDING = 4
STREAM = 1  # the spawn key that separates these draws from the batch order's (seeded by the seed itself)


def generator_seed(seed: int, round_index: int = 0) -> int:
    """A 32-bit seed of its own for a training seed and round: each round of a trial draws
    other crops and flips. torch's CPU generator keeps only the low 32 bits of a seed, so an
    offset such as seed + 2**32 would replay the batch order's stream."""
    return int(np.random.SeedSequence(seed, spawn_key=(STREAM, round_index)).generate_state(1)[0])


class Augment:
    """Random crops and flips of batches, drawn from a generator seeded by `seed`."""

    def __init__(self, seed: int, black: torch.Tensor | None = None, padding: int = PADDING, round_index: int = 0):
        self.generator = torch.Generator().manual_seed(generator_seed(seed, round_index))
        self.black, self.padding = black, padding

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """A batch (N x C x H x W) cropped and flipped: a new tensor, the input untouched."""
        n, c, h, w = images.shape
        p = self.padding
        offsets = torch.randint(0, 2 * p + 1, (n, 2), generator=self.generator).to(images.device)
        flips = torch.randint(0, 2, (n, 1), generator=self.generator, dtype=torch.bool).to(images.device)
        padded = images.new_empty(n, c, h + 2 * p, w + 2 * p)
        padded[:] = 0.0 if self.black is None else self.black.view(1, c, 1, 1)
        padded[:, :, p:p + h, p:p + w] = images
        rows, cols = torch.arange(h, device=images.device), torch.arange(w, device=images.device)
        # example i's pixel (y, x) comes from padded[i, :, dy + y, dx + x], or dx + (w - 1 - x) if flipped:
        # one gather over the flattened padded images (a third of the time of 4-d advanced indexing)
        y = offsets[:, :1] + rows                                          # n x h
        x = offsets[:, 1:] + torch.where(flips, cols.flip(0), cols)        # n x w
        index = (y[:, :, None] * (w + 2 * p) + x[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
        return padded.view(n, c, -1).gather(2, index).view(n, c, h, w)

    def state(self) -> dict[str, np.ndarray]:
        return {"generator": self.generator.get_state().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.generator.set_state(torch.from_numpy(state["generator"].copy()))
