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
import hashlib
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lth import LthError, masks, mlp_step, models, outputs, provenance
from lth.artifacts import load_arrays, save_arrays, write_json, write_text
from lth.params import Experiment, RuntimeParams, TrainParams
from lth.outputs import made_by

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


NORMALIZATIONS = ("l2_per_example", "standardize", "unit_range")


def normalized(images: torch.Tensor, how: str, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images as float32 inputs, scaled as `data.normalize` says (params.schema.yaml)."""
    if how == "standardize":
        return (images.float() / 255.0 - mean) / std
    if how == "unit_range":
        return images.float() / 255.0
    if how == "l2_per_example":
        # each example divided by its L2 norm, in float64 then cast, as keras.utils.normalize
        # in Frankle & Carbin's code; an all-zero image stays zero
        x = images.double()
        norms = torch.linalg.vector_norm(x.flatten(1), dim=1)
        norms[norms == 0] = 1.0
        return (x / norms.view(-1, *[1] * (x.dim() - 1))).float()
    raise LthError(f"data.normalize = {how!r} is not known; choose one of {NORMALIZATIONS}")


def load_splits(path: Path, device: torch.device, normalize: str = "standardize") -> dict[str, Split]:
    arrays = load_arrays(path, made_by=made_by(path))
    # per-channel mean and std of the training split, shape (2, C)
    mean, std = (torch.from_numpy(v).float().to(device)[:, None, None] for v in arrays["normalization"])
    splits = {}
    for name in ("train", "validation", "test"):
        images = normalized(torch.from_numpy(arrays[f"{name}_images"]).to(device), normalize, mean, std)
        splits[name] = Split(images, torch.from_numpy(arrays[f"{name}_labels"]).to(device))
    return splits


@torch.inference_mode()
def evaluate(model: Callable[[torch.Tensor], torch.Tensor], split: Split,
             batch_size: int = 1_000, axis: int = 0) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy over a whole split (model: images -> logits;
    the examples run along `axis` of split.images). Batches of 1000 keep the activations in
    cache: 15K LeNet examples take 49 ms, against 75 ms at 10000 (benchmarks/bench.py's machine)."""
    total_loss, correct, n = 0.0, 0, len(split.labels)
    for start in range(0, n, batch_size):
        logits = model(split.images.narrow(axis, start, min(batch_size, n - start)))
        labels = split.labels[start:start + batch_size]
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
    return total_loss / n, correct / n


def early_stop(curve: list[dict]) -> dict:
    """The row of minimum validation loss (the first such row on ties)."""
    return min(curve, key=lambda row: row["validation_loss"])


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


WINDOW_CAPACITY = 1_000  # iterations: 2.4 MB of LeNet logits at batch 60


class Window:
    """The minibatches since the last evaluation, for the curve's training loss and accuracy.
    Each iteration gathers its labels into, and copies its logits to, the next slot; the loss
    and accuracy are reduced over whole windows of up to `capacity` iterations, instead of
    five small operations an iteration. Its state is part of a training checkpoint."""

    PARTS = ("logits", "labels", "sums")  # its state, as a checkpoint holds it

    def __init__(self, capacity: int, batch: int, device: torch.device):
        self.labels = torch.zeros(capacity, batch, dtype=torch.long, device=device)
        self.logits: torch.Tensor | None = None  # capacity x batch x classes, at the first add
        # the slots as views made once (indexing a tensor every iteration is a dispatch each)
        self.label_slots, self.logit_slots = self.labels.unbind(), ()
        self.filled, self.loss_sum, self.correct, self.seen = 0, 0.0, 0, 0

    def labels_slot(self) -> torch.Tensor:
        return self.label_slots[self.filled]

    def add(self, logits: torch.Tensor) -> None:
        if self.logits is None:
            self.allocate(logits.shape[-1])
        self.logit_slots[self.filled].copy_(logits)
        self.filled += 1
        if self.filled == len(self.logits):
            self.fold()

    def allocate(self, classes: int) -> None:
        self.logits = torch.zeros((*self.labels.shape, classes), device=self.labels.device)
        self.logit_slots = self.logits.unbind()

    def fold(self) -> None:
        if not self.filled:
            return
        logits = self.logits[:self.filled].flatten(0, 1)
        labels = self.labels[:self.filled].flatten()
        self.loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        self.correct += int((logits.argmax(1) == labels).sum().item())
        self.seen += len(labels)
        self.filled = 0

    def take(self) -> tuple[float, float]:
        """Mean loss and accuracy since the last take (NaN before any iteration); starts over."""
        self.fold()
        seen, loss_sum, correct = self.seen, self.loss_sum, self.correct
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0
        return (loss_sum / seen, correct / seen) if seen else (math.nan, math.nan)

    def state(self) -> dict[str, np.ndarray]:
        return {"logits": self.logits[:self.filled].cpu().numpy(), "labels": self.labels[:self.filled].cpu().numpy(),
                "sums": np.array([self.loss_sum, self.correct, self.seen], dtype=np.float64)}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.filled = len(state["logits"])
        if self.logits is None:
            self.allocate(state["logits"].shape[-1])
        self.logits[:self.filled].copy_(torch.from_numpy(state["logits"].copy()))
        self.labels[:self.filled].copy_(torch.from_numpy(state["labels"].copy()))
        loss_sum, correct, seen = state["sums"].tolist()
        self.loss_sum, self.correct, self.seen = loss_sum, int(correct), int(seen)


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    # the fused kernel: one pass over each tensor (benchmarks/bench.py: 2.5x the foreach step on a CPU)
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         masked: list[tuple[torch.Tensor, torch.Tensor]], images: torch.Tensor,
         labels: torch.Tensor) -> torch.Tensor:
    """One Adam step in which pruned weights get zero gradient; returns the logits."""
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    for p, m in masked:
        p.grad.mul_(m)
    optimizer.step()
    return logits.detach()


class AutogradStep:
    """The general step: autograd, gradients of pruned weights zeroed, fused Adam."""

    sparse_layers: list[str] = []

    def __init__(self, model: torch.nn.Module, mask: dict[str, torch.Tensor], lr: float):
        params = dict(model.named_parameters())
        self.model, self.masked = model, [(params[n], m) for n, m in mask.items()]
        self.optimizer = make_optimizer(model, lr)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return step(self.model, self.optimizer, self.masked, images, labels)

    def write_back(self) -> None:
        """The model's parameters are the trained tensors: nothing to copy."""

    def reload(self) -> None:
        """The model's parameters are the trained tensors: nothing to reload."""


def make_step(model: torch.nn.Module, mask: dict[str, torch.Tensor], lr: float) -> AutogradStep | mlp_step.MLPStep:
    """LeNet-300-100 without dropout takes the autograd-free step (mlp_step); the rest autograd."""
    if mlp_step.supports(model, mask):
        return mlp_step.MLPStep(model, mask, lr)
    return AutogradStep(model, mask, lr)


def evaluators(train_step: AutogradStep | mlp_step.MLPStep, model: torch.nn.Module,
               splits: dict[str, Split]) -> dict[str, Callable[[], tuple[float, float]]]:
    """Validation and test evaluations during training. The LeNet step evaluates from its own
    tensors, on a features-major copy of the splits made once (its CSR layers then multiply
    contiguous matrices); other models evaluate the model itself."""
    names = ("validation", "test")
    if isinstance(train_step, mlp_step.MLPStep):
        prepared = {n: Split(train_step.evaluation_inputs(splits[n].images), splits[n].labels) for n in names}
        return {n: partial(evaluate, train_step.logits, prepared[n], axis=1) for n in names}
    return {n: partial(evaluate, model, splits[n]) for n in names}


def progress_bar(total: int, progress: bool | None) -> tqdm:
    # on a terminal only (disable=None), so pipeline logs stay quiet
    return tqdm(total=total, desc="train", unit="it", mininterval=1.0, leave=False,
                disable=None if progress is None else not progress)


@dataclass
class Checkpoint:
    """Where and how often a training saves its resumable state, and the fingerprint of
    what it trains (a checkpoint of other inputs is never resumed)."""

    path: Path
    every: int
    fingerprint: str


def train(model: torch.nn.Module, mask: dict[str, torch.Tensor], splits: dict[str, Split],
          params: TrainParams, seed: int, progress: bool | None = None,
          snapshot_at: int | None = None, checkpoint: Checkpoint | None = None,
          on_record: Callable[[dict], None] | None = None) -> tuple[list[dict], dict | None]:
    """Train in place for params.iterations; return the evaluation curve and the weights
    at iteration `snapshot_at` (the rewind point), if asked for. With `checkpoint`, save
    the whole state every `checkpoint.every` iterations and resume from a matching one:
    the result is bit-identical to an uninterrupted run on the CPU. `on_record` is called
    with each row of the curve as it is evaluated (not with rows a resumed run restores),
    for logging or timing."""
    device = splits["train"].images.device
    train_step = make_step(model, mask, params.lr)
    order = BatchOrder(len(splits["train"].labels), params.batch_size, seed)
    train_split = splits["train"]
    window = Window(min(params.eval_every, params.iterations, WINDOW_CAPACITY), params.batch_size, device)
    evaluate_on = evaluators(train_step, model, splits)

    def record(iteration: int) -> dict:
        model.eval()
        val_loss, val_acc = evaluate_on["validation"]()
        test_loss, test_acc = evaluate_on["test"]()
        model.train()
        train_loss, train_acc = window.take()
        row = {"iteration": iteration, "train_loss": train_loss, "train_accuracy": train_acc,
               "validation_loss": val_loss, "validation_accuracy": val_acc,
               "test_loss": test_loss, "test_accuracy": test_acc}
        if on_record:
            on_record(row)
        return row

    resumed = load_checkpoint(checkpoint, model, train_step, order, window) if checkpoint else None
    if resumed:
        start, curve, snapshot = resumed
    else:
        start, curve = 1, [record(0)]
        snapshot = models.state_arrays(model) if snapshot_at == 0 else None
    model.train()
    bar = progress_bar(params.iterations, progress)
    bar.update(start - 1)
    for iteration in range(start, params.iterations + 1):
        idx = order.next().to(device, non_blocking=True)
        labels = torch.index_select(train_split.labels, 0, idx, out=window.labels_slot())
        window.add(train_step(train_split.images.index_select(0, idx), labels))
        if iteration == snapshot_at:
            train_step.write_back()
            snapshot = models.state_arrays(model)
        if iteration % params.eval_every == 0 or iteration == params.iterations:
            curve.append(record(iteration))
            bar.set_postfix(val_loss=f"{curve[-1]['validation_loss']:.4f}",
                            test_acc=f"{curve[-1]['test_accuracy']:.4f}", refresh=False)
        if checkpoint and iteration % checkpoint.every == 0 and iteration < params.iterations:
            save_checkpoint(checkpoint, iteration, model, train_step, order, window, curve, snapshot)
        bar.update()
    bar.close()
    train_step.write_back()
    return curve, snapshot


def save_checkpoint(checkpoint: Checkpoint, iteration: int, model: torch.nn.Module, train_step,
                    order: BatchOrder, window: Window, curve: list[dict], snapshot: dict | None) -> None:
    """Everything the rest of the training depends on, in one safetensors file (atomic)."""
    train_step.write_back()
    arrays = {f"model/{n}": a for n, a in models.state_arrays(model).items()}
    for i, p in enumerate(train_step.optimizer.param_groups[0]["params"]):
        for key, value in train_step.optimizer.state[p].items():
            arrays[f"optimizer/{i}/{key}"] = value.detach().cpu().numpy().reshape(-1 if value.ndim else 1)
    arrays.update({f"order/{k}": v for k, v in order.state().items()})
    arrays.update({f"window/{k}": v for k, v in window.state().items()})
    arrays["torch_rng"] = torch.get_rng_state().numpy()  # dropout
    if snapshot is not None:
        arrays.update({f"snapshot/{n}": a for n, a in snapshot.items()})
    meta = {"fingerprint": checkpoint.fingerprint, "iteration": iteration, "curve": curve}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    save_arrays(checkpoint.path, arrays)


def part(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays saved under `prefix/`, keyed by the rest of their name."""
    return {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def load_checkpoint(checkpoint: Checkpoint, model: torch.nn.Module, train_step, order: BatchOrder,
                    window: Window) -> tuple[int, list[dict], dict | None] | None:
    """Restore a checkpoint of this very training; None when there is none (or it is of
    other inputs, or unreadable: then training starts over, which is always correct)."""
    if not checkpoint.path.exists():
        return None
    try:
        arrays = load_arrays(checkpoint.path, made_by="train")
        meta = json.loads(arrays["meta"].tobytes())
    except (LthError, KeyError, ValueError) as err:
        print(f"train: ignoring checkpoint {checkpoint.path}: {err}")
        return None
    if meta["fingerprint"] != checkpoint.fingerprint:
        print(f"train: ignoring checkpoint {checkpoint.path}: it is of other inputs or params")
        return None
    # checked before anything is restored: a checkpoint missing a part must leave the start intact
    params = train_step.optimizer.param_groups[0]["params"]
    needed = {"torch_rng", *(f"model/{n}" for n, _ in model.named_parameters()), *(f"order/{k}" for k in order.state()),
              *(f"window/{k}" for k in Window.PARTS),
              *(f"optimizer/{i}/{k}" for i in range(len(params)) for k in ("step", "exp_avg", "exp_avg_sq"))}
    missing = needed - set(arrays)
    if missing:
        print(f"train: ignoring checkpoint {checkpoint.path}: it lacks {', '.join(sorted(missing)[:3])}")
        return None
    models.load_arrays_into(model, part(arrays, "model"))
    train_step.reload()
    for i, p in enumerate(params):
        state = part(arrays, f"optimizer/{i}")
        current = train_step.optimizer.state[p]  # restored in place: the LeNet step holds these tensors
        for k, v in state.items():
            value = torch.from_numpy(v.copy()).to(p.device).reshape(() if k == "step" else p.shape)
            if k in current:
                current[k].copy_(value)
            else:
                current[k] = value
    order.load(part(arrays, "order"))
    window.load(part(arrays, "window"))
    torch.set_rng_state(torch.from_numpy(arrays["torch_rng"].copy()))
    snapshot = part(arrays, "snapshot") or None
    print(f"train: resumed from {checkpoint.path} at iteration {meta['iteration']}")
    return meta["iteration"] + 1, meta["curve"], snapshot


def curve_csv(curve: list[dict], columns: tuple[str, ...] = CURVE_COLUMNS) -> str:
    """Rows as CSV: floats in full precision (repr), NaN as an empty field."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in curve:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                             (repr(v) if isinstance(v, float) else v)) for k, v in row.items()})
    return buffer.getvalue()


def run(experiment: Experiment, runtime: RuntimeParams, data_path: Path, ticket_path: Path,
        mask_path: Path, out_dir: Path, seed: int, normalize: str = "standardize") -> dict:
    """Train the ticket at `ticket_path` under `mask_path`; write into `out_dir` the trained
    weights, the weights at the rewind iteration, the curve and the metrics. `normalize`:
    data.normalize."""
    torch.set_num_threads(runtime.threads)
    torch.manual_seed(seed)  # dropout
    device = resolve_device(runtime.device)
    weights = load_arrays(ticket_path, made_by=made_by(ticket_path))
    mask_np = masks.load(mask_path, made_by=made_by(mask_path))
    masks.check(mask_np, weights, str(mask_path))
    splits = load_splits(data_path, device, normalize)
    input_shape = tuple(splits["train"].images.shape[1:])
    model = models.build(experiment.model.name, input_shape, num_classes=10,
                         dropout=experiment.model.dropout)
    models.load_arrays_into(model, weights)
    model.to(device)
    mask = {n: torch.from_numpy(m).to(device=device, dtype=torch.float32) for n, m in mask_np.items()}

    checkpoint = Checkpoint(out_dir / outputs.CHECKPOINT, runtime.checkpoint_every,
                            fingerprint(experiment, runtime, seed, normalize, data_path, ticket_path, mask_path)) \
        if runtime.checkpoint_every else None
    curve, rewind = train(model, mask, splits, experiment.train, seed,
                          snapshot_at=experiment.reset.rewind_iteration, checkpoint=checkpoint)
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
        "provenance": provenance.record(str(device), runtime.threads, seed),
    }
    trained = models.state_arrays(model)
    # the masking invariant: pruned weights hold their ticket values (zero, or frozen: mask-0 actions)
    if any(not np.array_equal(trained[n][~m], weights[n][~m]) for n, m in mask_np.items()):
        raise AssertionError("a pruned weight moved during training")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_arrays(out_dir / outputs.TRAINED, trained)
    save_arrays(out_dir / outputs.REWIND, rewind)
    write_text(out_dir / outputs.CURVE, curve_csv(curve))
    write_json(out_dir / outputs.METRICS, metrics)
    if checkpoint:
        checkpoint.path.unlink(missing_ok=True)
    return metrics


def fingerprint(experiment: Experiment, runtime: RuntimeParams, seed: int, normalize: str, *inputs: Path) -> str:
    """What a training's result depends on: its input files' bytes, its params and the
    code that trains. A checkpoint with another fingerprint is never resumed."""
    digest = hashlib.sha256()
    for path in inputs:
        digest.update(Path(path).read_bytes())
    for module in (__file__, mlp_step.__file__, models.__file__):
        digest.update(Path(module).read_bytes())
    digest.update(json.dumps([repr(experiment.model), repr(experiment.train), experiment.reset.rewind_iteration,
                              runtime.device, runtime.threads, seed, normalize, torch.__version__]).encode())
    return digest.hexdigest()
