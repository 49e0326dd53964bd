"""The `train` stage: train a (masked) network, evaluate it, find its early-stop point.

The whole dataset lives on the device as tensors and batches are index slices of a
seeded permutation (no DataLoader). LeNet-300-100 trains with an autograd-free step
(mlp_step: written-out backward, CSR layers at high sparsity); other models with
autograd. Pruned weights' gradients are zeroed before every Adam step, so their Adam
moments stay zero and the weights never move: they hold their ticket values (zero, or a
frozen value under Zhou et al.'s mask-0 actions) at every step. Validation and test are
evaluated every `eval_every` iterations; the early-stop iteration is the one of minimum
validation loss (the test set is never used to choose anything).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lth import LthError, masks, mlp_step, models
from lth.artifacts import load_arrays, save_arrays, write_json, write_text
from lth.params import Experiment, RuntimeParams, TrainParams
from lth.plan import made_by

CURVE_COLUMNS = ("iteration", "train_loss", "train_accuracy", "validation_loss",
                 "validation_accuracy", "test_loss", "test_accuracy")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise LthError("runtime.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(device)


@dataclass
class Split:
    images: torch.Tensor  # normalised float32, N x C x H x W
    labels: torch.Tensor


def load_splits(path: Path, device: torch.device) -> dict[str, Split]:
    arrays = load_arrays(path, made_by=made_by(path))
    # per-channel mean and std of the training split, shape (2, C)
    mean, std = (torch.from_numpy(v).float().to(device)[:, None, None] for v in arrays["normalization"])
    splits = {}
    for name in ("train", "validation", "test"):
        images = torch.from_numpy(arrays[f"{name}_images"]).to(device)
        images = (images.float() / 255.0 - mean) / std
        splits[name] = Split(images, torch.from_numpy(arrays[f"{name}_labels"]).to(device))
    return splits


@torch.inference_mode()
def evaluate(model: Callable[[torch.Tensor], torch.Tensor], split: Split,
             batch_size: int = 10_000) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy over a whole split (model: images -> logits)."""
    total_loss, correct, n = 0.0, 0, len(split.labels)
    for start in range(0, n, batch_size):
        logits = model(split.images[start:start + batch_size])
        labels = split.labels[start:start + batch_size]
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
    return total_loss / n, correct / n


def early_stop(curve: list[dict]) -> dict:
    """The row of minimum validation loss (the first such row on ties)."""
    return min(curve, key=lambda row: row["validation_loss"])


def batches(n: int, batch: int, iterations: int, generator: torch.Generator):
    """Index batches for iterations 1..iterations: a seeded permutation per epoch, with the
    ragged tail of each epoch dropped."""
    order, cursor = torch.randperm(n, generator=generator), 0
    for iteration in range(1, iterations + 1):
        if cursor + batch > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        yield iteration, order[cursor:cursor + batch]
        cursor += batch


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    # the fused kernel: one pass over each tensor (benchmarks/bench.py: 2.5x the foreach step on a CPU)
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         masked: list[tuple[torch.Tensor, torch.Tensor]], images: torch.Tensor,
         labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Adam step in which pruned weights get zero gradient; returns (loss, logits)."""
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    for p, m in masked:
        p.grad.mul_(m)
    optimizer.step()
    return loss.detach(), logits.detach()


class AutogradStep:
    """The general step: autograd, gradients of pruned weights zeroed, fused Adam."""

    sparse_layers: list[str] = []

    def __init__(self, model: torch.nn.Module, mask: dict[str, torch.Tensor], lr: float):
        params = dict(model.named_parameters())
        self.model, self.masked = model, [(params[n], m) for n, m in mask.items()]
        self.optimizer = make_optimizer(model, lr)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return step(self.model, self.optimizer, self.masked, images, labels)

    def write_back(self) -> None:
        """The model's parameters are the trained tensors: nothing to copy."""


def make_step(model: torch.nn.Module, mask: dict[str, torch.Tensor], lr: float) -> AutogradStep | mlp_step.MLPStep:
    """LeNet-300-100 without dropout takes the autograd-free step (mlp_step); the rest autograd."""
    if mlp_step.supports(model, mask):
        return mlp_step.MLPStep(model, mask, lr)
    return AutogradStep(model, mask, lr)


def progress_bar(total: int, progress: bool | None) -> tqdm:
    # on a terminal only (disable=None), so pipeline logs stay quiet
    return tqdm(total=total, desc="train", unit="it", mininterval=1.0, leave=False,
                disable=None if progress is None else not progress)


def train(model: torch.nn.Module, mask: dict[str, torch.Tensor], splits: dict[str, Split],
          params: TrainParams, seed: int, progress: bool | None = None,
          snapshot_at: int | None = None) -> tuple[list[dict], dict | None]:
    """Train in place for params.iterations; return the evaluation curve and the weights
    at iteration `snapshot_at` (the rewind point), if asked for."""
    device = splits["train"].images.device
    train_step = make_step(model, mask, params.lr)
    generator = torch.Generator().manual_seed(seed)
    train_split = splits["train"]
    running_loss = torch.zeros((), device=device)
    running_correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0

    def record(iteration: int) -> dict:
        train_step.write_back()
        model.eval()
        val_loss, val_acc = evaluate(model, splits["validation"])
        test_loss, test_acc = evaluate(model, splits["test"])
        model.train()
        train_loss = running_loss.item() / seen if seen else math.nan
        train_acc = running_correct.item() / seen if seen else math.nan
        return {"iteration": iteration, "train_loss": train_loss, "train_accuracy": train_acc,
                "validation_loss": val_loss, "validation_accuracy": val_acc,
                "test_loss": test_loss, "test_accuracy": test_acc}

    curve = [record(0)]
    snapshot = models.state_arrays(model) if snapshot_at == 0 else None
    model.train()
    bar = progress_bar(params.iterations, progress)
    for iteration, idx in batches(len(train_split.labels), params.batch_size, params.iterations, generator):
        idx = idx.to(device, non_blocking=True)
        images, labels = train_split.images[idx], train_split.labels[idx]
        loss, logits = train_step(images, labels)
        running_loss += loss * len(labels)
        running_correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
        if iteration == snapshot_at:
            train_step.write_back()
            snapshot = models.state_arrays(model)
        if iteration % params.eval_every == 0 or iteration == params.iterations:
            curve.append(record(iteration))
            running_loss.zero_(), running_correct.zero_()
            seen = 0
            bar.set_postfix(val_loss=f"{curve[-1]['validation_loss']:.4f}",
                            test_acc=f"{curve[-1]['test_accuracy']:.4f}", refresh=False)
        bar.update()
    bar.close()
    train_step.write_back()
    return curve, snapshot


def curve_csv(curve: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in curve:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                             (repr(v) if isinstance(v, float) else v)) for k, v in row.items()})
    return buffer.getvalue()


def run(experiment: Experiment, runtime: RuntimeParams, data_path: Path, ticket_path: Path,
        mask_path: Path, out_dir: Path, seed: int) -> dict:
    """Train the ticket at `ticket_path` under `mask_path`; write into `out_dir` the trained
    weights, the weights at the rewind iteration, the curve and the metrics."""
    torch.set_num_threads(runtime.threads)
    torch.manual_seed(seed)  # dropout
    device = resolve_device(runtime.device)
    weights = load_arrays(ticket_path, made_by=made_by(ticket_path))
    mask_np = masks.load(mask_path, made_by=made_by(mask_path))
    masks.check(mask_np, weights, str(mask_path))
    splits = load_splits(data_path, device)
    input_shape = tuple(splits["train"].images.shape[1:])
    model = models.build(experiment.model.name, input_shape, num_classes=10,
                         dropout=experiment.model.dropout)
    models.load_arrays_into(model, weights)
    model.to(device)
    mask = {n: torch.from_numpy(m).to(device=device, dtype=torch.float32) for n, m in mask_np.items()}

    curve, rewind = train(model, mask, splits, experiment.train, seed,
                          snapshot_at=experiment.reset.rewind_iteration)
    final_train_loss, final_train_acc = evaluate(model.eval(), splits["train"])
    stop = early_stop(curve)
    sparsity = masks.report(mask_np)
    metrics = {
        "seed": seed,
        "iterations": experiment.train.iterations,
        "percent_remaining": sparsity["percent_remaining"],
        "weights_remaining": sparsity["remaining"],
        "weights_total": sparsity["total"],
        "early_stop_iteration": stop["iteration"],
        "early_stop_validation_loss": stop["validation_loss"],
        "early_stop_validation_accuracy": stop["validation_accuracy"],
        "early_stop_test_accuracy": stop["test_accuracy"],
        "final_test_accuracy": curve[-1]["test_accuracy"],
        "final_validation_accuracy": curve[-1]["validation_accuracy"],
        "final_train_accuracy": final_train_acc,
        "final_train_loss": final_train_loss,
    }
    trained = models.state_arrays(model)
    # the masking invariant: pruned weights hold their ticket values (zero, or frozen: mask-0 actions)
    if any(not np.array_equal(trained[n][~m], weights[n][~m]) for n, m in mask_np.items()):
        raise AssertionError("a pruned weight moved during training")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_arrays(out_dir / "trained.safetensors", trained)
    save_arrays(out_dir / "rewind.safetensors", rewind)
    write_text(out_dir / "curve.csv", curve_csv(curve))
    write_json(out_dir / "metrics.json", metrics)
    return metrics
