"""What the stages that run networks on data share (train, untrained, supermask): the
device, the data splits on it, the batch order, evaluation, progress and curve tables.

The whole dataset lives on the device as tensors and batches are index slices of a
seeded permutation (no DataLoader).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lth import LthError
from lth.artifacts import load_arrays
from lth.outputs import made_by


def resolve_device(device: str, tf32: bool = False) -> torch.device:
    """The device `runtime.device` names. On CUDA, also the matrix products' precision
    (`runtime.tf32`): TF32 only when asked for. torch's own defaults differ (cuBLAS off, cuDNN
    on: convolutions would round their inputs to 10 mantissa bits), so both are set. The CPU
    has no TF32: its results do not depend on the flag."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise LthError("runtime.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    return torch.device(device)


@dataclass
class Split:
    images: torch.Tensor  # normalised float32, N x C x H x W
    labels: torch.Tensor
    black: torch.Tensor | None = None  # per channel, a zero pixel normalised (augment's padding); None: 0


NORMALIZATIONS = ("l2_per_example", "standardize", "unit_range")
NORMALIZE_ROWS = 512  # examples normalised at a time: their float64 temporaries stay in cache


def normalized(images: torch.Tensor, how: str, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images as float32 inputs, scaled as `data.normalize` says (params.schema.yaml).
    Computed NORMALIZE_ROWS examples at a time into one float32 tensor: every operation is per
    element or per example, so the result is the same bit for bit as on the whole split, without
    the split-sized temporaries (690 MB of float64 for MNIST's training split under
    l2_per_example), whose allocation was most of a training's set-up."""
    if how not in NORMALIZATIONS:
        raise LthError(f"data.normalize = {how!r} is not known; choose one of {NORMALIZATIONS}")
    out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    # on one thread: on a shared CPU, the thread pool's fork and join for every small operation
    # cost more than a second core gains (on the project's machine under load: 0.2 s against
    # 0.6-2.5 s with two threads); the bits do not depend on the thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for rows, into in zip(images.split(NORMALIZE_ROWS), out.split(NORMALIZE_ROWS), strict=True):
            into.copy_(_normalized(rows, how, mean, std))
    finally:
        torch.set_num_threads(threads)
    return out


def _normalized(images: torch.Tensor, how: str, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    if how == "standardize":
        return (images.float() / 255.0 - mean) / std
    if how == "unit_range":
        return images.float() / 255.0
    # l2_per_example: each example divided by its L2 norm, in float64 then cast, as
    # keras.utils.normalize in Frankle & Carbin's code; an all-zero image stays zero
    x = images.double()
    norms = torch.linalg.vector_norm(x.flatten(1), dim=1)
    norms[norms == 0] = 1.0
    return (x / norms.view(-1, *[1] * (x.dim() - 1))).float()


def load_splits(path: Path, device: torch.device, normalize: str = "standardize") -> dict[str, Split]:
    arrays = load_arrays(path, made_by=made_by(path))
    # per-channel mean and std of the training split, shape (2, C)
    mean, std = (torch.from_numpy(v).float().to(device)[:, None, None] for v in arrays["normalization"])
    channels = len(mean)
    black = normalized(torch.zeros(1, channels, 1, 1, dtype=torch.uint8, device=device), normalize, mean, std)
    splits = {}
    for name in ("train", "validation", "test"):
        images = normalized(torch.from_numpy(arrays[f"{name}_images"]).to(device), normalize, mean, std)
        splits[name] = Split(images, torch.from_numpy(arrays[f"{name}_labels"]).to(device), black.view(channels))
    return splits


EVALUATION_BATCH = 1_000  # examples a forward pass of evaluation takes at a time


@torch.inference_mode()
def evaluate(model: Callable[[torch.Tensor], torch.Tensor], split: Split,
             batch_size: int = EVALUATION_BATCH, axis: int = 0) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy over a whole split (model: images -> logits;
    the examples run along `axis` of split.images). Batches of 1000 keep the activations in
    cache (benchmarks/bench.py times this pass)."""
    total_loss, correct, n = 0.0, 0, len(split.labels)
    for start in range(0, n, batch_size):
        logits = model(split.images.narrow(axis, start, min(batch_size, n - start)))
        labels = split.labels[start:start + batch_size]
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
    return total_loss / n, correct / n


class BatchOrder:
    """Index batches: a seeded permutation per epoch, the ragged tail of each epoch dropped.
    Its state (permutation, position, generator) is part of a training checkpoint."""

    def __init__(self, n: int, batch: int, seed: int):
        if batch > n:
            raise LthError(f"train.batch_size = {batch} is larger than the training split ({n} examples); "
                           f"use at most {n}")
        self.n, self.batch = n, batch
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.cursor = torch.randperm(n, generator=self.generator), 0

    def next(self) -> torch.Tensor:
        if self.cursor + self.batch > self.n:
            self.order, self.cursor = torch.randperm(self.n, generator=self.generator), 0
        self.cursor += self.batch
        return self.order[self.cursor - self.batch:self.cursor]

    def state(self) -> dict[str, np.ndarray]:
        return {"order": self.order.numpy(), "cursor": np.array([self.cursor]),
                "generator": self.generator.get_state().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.order, self.cursor = torch.from_numpy(state["order"].copy()), int(state["cursor"][0])
        self.generator.set_state(torch.from_numpy(state["generator"].copy()))


class Progress:
    """How a training shows that it moves: a tqdm bar on a terminal; where output goes to a log
    file or a pipe (Snakemake and SLURM logs, `dvc repro > log`), a line at the first
    evaluation and then at the first evaluation at least `every` seconds after the last line
    (runtime.progress_every), so that `tail -f` shows it moving. progress: None decides by the
    terminal, True forces the bar, False shows nothing."""

    def __init__(self, name: str, total: int, start: int = 0, progress: bool | None = None,
                 every: float = 30.0, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.name, self.total, self.every, self.clock = name, total, every, clock
        self.out = out or sys.stdout
        on_terminal = sys.stderr.isatty() if progress is None else progress
        self.lines = progress is None and not on_terminal
        self.bar = tqdm(total=total, initial=start, desc=name, unit="it", mininterval=1.0, leave=False,
                        disable=not on_terminal)
        self.start, self.started, self.last = start, clock(), None

    def update(self, iterations: int = 1) -> None:
        self.bar.update(iterations)

    def record(self, iteration: int, values: dict[str, str]) -> None:
        """At an evaluation: the bar's postfix, or a line if one is due."""
        self.bar.set_postfix(values, refresh=False)
        now = self.clock()
        if not self.lines or (self.last is not None and now - self.last < self.every):
            return
        self.last = now
        parts = [f"iteration {iteration}/{self.total}", *(f"{k} {v}" for k, v in values.items())]
        done = iteration - self.start
        if done > 0 and now > self.started:
            rate = done / (now - self.started)
            parts += [f"{rate:.1f} it/s", f"about {(self.total - iteration) / rate:.0f} s left"]
        print(f"{self.name}: " + ", ".join(parts), file=self.out, flush=True)

    def close(self) -> None:
        self.bar.close()
STARTUP_LOG = "LTH_STARTUP_LOG"


def mark(event: str) -> None:
    """Where the environment variable LTH_STARTUP_LOG names a file, append `<event> <unix time>`
    to it: benchmarks/bench.py times a stage's start-up from the process's own marks, "ready"
    (set-up done, before iteration 0's evaluation) and "first_step"."""
    if path := os.environ.get(STARTUP_LOG):
        with open(path, "a") as log:
            log.write(f"{event} {time.time()!r}\n")


def curve_csv(curve: list[dict], columns: tuple[str, ...]) -> str:
    """Rows as CSV: floats in full precision (repr), NaN as an empty field."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in curve:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                             (repr(v) if isinstance(v, float) else v)) for k, v in row.items()})
    return buffer.getvalue()
