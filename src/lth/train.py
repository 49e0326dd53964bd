"""The `train` stage: train a (masked) network, evaluate it, find its early-stop point.

The whole dataset lives on the device as tensors and batches are index slices of a
seeded permutation (no DataLoader; see loop.py). LeNet-300-100 trains with an autograd-free step
(mlp_step: written-out backward, CSR layers at high sparsity); other models with
autograd. The optimizer, learning-rate schedule and augmentation are the experiment's
`train` recipe (optim.py, augment.py; the default is plain Adam). Pruned weights'
gradients are zeroed before every step, so their optimizer state stays zero and the
weights never move: they hold their ticket values (zero, or a frozen value under Zhou et
al.'s mask-0 actions) at every step. Validation and test are
evaluated every `eval_every` iterations; the early-stop iteration is the one of minimum
validation loss (the test set is never used to choose anything). A long training saves
its state now and then and resumes from it (checkpoint.py). On CUDA, LeNet at a constant
learning rate runs graphed.py's loop (captured CUDA graphs) instead of the eager one; run
uncaptured on the CPU, it gives the eager loop's bits (tests/test_graphed.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lth import LthError, architectures, augment, graphed, loop, masks, mlp_step, models, optim, outputs, provenance
from lth.artifacts import load_arrays, save_arrays, write_json, write_text
from lth.checkpoint import Checkpoint, fingerprint, load_checkpoint, save_checkpoint
from lth.loop import BatchOrder, Progress, Split, curve_csv, evaluate, load_splits, resolve_device
from lth.outputs import made_by
from lth.params import DataParams, Experiment, RuntimeParams, TrainParams

CURVE_COLUMNS = ("iteration", "train_loss", "train_accuracy", "validation_loss",
                 "validation_accuracy", "test_loss", "test_accuracy")
# the modules that train: a checkpoint of an earlier version of them is not resumed
CODE = (__file__, loop.__file__, mlp_step.__file__, optim.__file__, models.__file__, augment.__file__,
        graphed.__file__)


def early_stop(curve: list[dict]) -> dict:
    """The row of minimum validation loss (the first such row on ties)."""
    return min(curve, key=lambda row: row["validation_loss"])


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
        self.advance(1)

    def advance(self, iterations: int) -> None:
        """Count `iterations` slots as filled (graphed.py fills them on the device)."""
        self.filled += iterations
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


def step(model: torch.nn.Module, optimizer: optim.Optimizer,
         masked: list[tuple[torch.Tensor, torch.Tensor]], images: torch.Tensor,
         labels: torch.Tensor) -> torch.Tensor:
    """One optimizer step in which pruned weights get zero gradient; returns the logits."""
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    for p, m in masked:
        p.grad.mul_(m)
    optimizer.step()
    return logits.detach()


class AutogradStep:
    """The general step: autograd, gradients of pruned weights zeroed, the recipe's optimizer."""

    sparse_layers: list[str] = []

    def __init__(self, model: torch.nn.Module, mask: dict[str, torch.Tensor], recipe: TrainParams):
        params = dict(model.named_parameters())
        self.model, self.masked = model, [(params[n], m) for n, m in mask.items()]
        self.optimizer = optim.build(model.parameters(), recipe)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return step(self.model, self.optimizer, self.masked, images, labels)

    def write_back(self) -> None:
        """The model's parameters are the trained tensors: nothing to copy."""

    def reload(self) -> None:
        """The model's parameters are the trained tensors: nothing to reload."""


def make_step(model: torch.nn.Module, mask: dict[str, torch.Tensor],
              recipe: TrainParams) -> AutogradStep | mlp_step.MLPStep:
    """LeNet-300-100 without dropout takes the autograd-free step (mlp_step, with either
    optimizer; CSR layers on the CPU only); the rest autograd."""
    if mlp_step.supports(model, mask):
        return mlp_step.MLPStep(model, mask, recipe, sparse=next(model.parameters()).device.type != "cuda")
    return AutogradStep(model, mask, recipe)


EVALUATED = ("validation", "test")  # the splits of each record, in this order


def step_inputs(train_step: mlp_step.MLPStep, splits: dict[str, Split]) -> dict[str, Split]:
    """The evaluated splits as the LeNet step evaluates them: a features-major copy made once
    (its CSR layers then multiply contiguous matrices)."""
    return {n: Split(train_step.evaluation_inputs(splits[n].images), splits[n].labels) for n in EVALUATED}


def evaluators(train_step: AutogradStep | mlp_step.MLPStep, model: torch.nn.Module,
               splits: dict[str, Split]) -> dict[str, Callable[[], tuple[float, float]]]:
    """Validation and test evaluations during training. The LeNet step evaluates from its own
    tensors (step_inputs); other models evaluate the model itself."""
    if isinstance(train_step, mlp_step.MLPStep):
        prepared = step_inputs(train_step, splits)
        return {n: partial(evaluate, train_step.logits, prepared[n], axis=1) for n in EVALUATED}
    return {n: partial(evaluate, model, splits[n]) for n in EVALUATED}


def train(model: torch.nn.Module, mask: dict[str, torch.Tensor], splits: dict[str, Split],
          params: TrainParams, seed: int, progress: bool | None = None,
          snapshot_at: int | None = None, checkpoint: Checkpoint | None = None,
          on_record: Callable[[dict], None] | None = None, schedule_start: int = 0,
          round_index: int = 0, progress_every: float = 30.0,
          graphs: bool | None = None) -> tuple[list[dict], dict | None]:
    """Train in place for params.iterations; return the evaluation curve and the weights
    at iteration `snapshot_at` (the rewind point), if asked for. Everything random (batch
    order, augmentation draws) derives from `seed`; the augmentation's draws from `round_index`
    too, so that each round of a trial sees other crops and flips. Iteration i trains at the
    schedule's step schedule_start + i - 1 (optim.Schedule: a rewound round starts at the
    rewind iteration's place). With `checkpoint`, save the whole state every
    `checkpoint.every` iterations and resume from a matching one: the result is
    bit-identical to an uninterrupted run on the CPU. `on_record` is called with each row of
    the curve as it is evaluated (not with rows a resumed run restores), for logging or
    timing. A loss that is no longer finite at an evaluation stops it (LthError). Progress
    shows as loop.Progress says (a line every `progress_every` s in a log). `graphs`: run the
    iterations as graphed.py's loop (None: where graphed.applies, i.e. on CUDA; True forces
    it, run eagerly off CUDA: tests; False: the eager loop)."""
    device = splits["train"].images.device
    train_step = make_step(model, mask, params)
    train_split = splits["train"]
    streams = {"order": BatchOrder(len(train_split.labels), params.batch_size, seed)}
    if params.augment:
        streams["augment"] = augment.Augment(seed, train_split.black, round_index=round_index)
    order, crop_and_flip = streams["order"], streams.get("augment")
    schedule = optim.Schedule.of(params)
    group = train_step.optimizer.param_groups[0]
    window = Window(min(params.eval_every, params.iterations, WINDOW_CAPACITY), params.batch_size, device)
    if graphs is None:
        graphs = graphed.applies(device, model, mask, params)
    if graphs:
        if not graphed.supports(model, mask, params):
            raise ValueError("the graphed loop runs the LeNet step at a constant lr without augmentation")
        runner = graphed.Graphed(train_step, train_split, step_inputs(train_step, splits), window,
                                 capture=device.type == "cuda")
        evaluate_all = runner.evaluate
    else:
        evaluate_on = evaluators(train_step, model, splits)
        evaluate_all = lambda: {n: evaluate_on[n]() for n in EVALUATED}  # noqa: E731

    def record(iteration: int) -> dict:
        model.eval()
        evaluated = evaluate_all()
        (val_loss, val_acc), (test_loss, test_acc) = evaluated["validation"], evaluated["test"]
        model.train()
        train_loss, train_acc = window.take()
        if iteration and not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            # checked here, not at every step: the LeNet step computes no loss of its own
            loss = train_loss if not math.isfinite(train_loss) else val_loss
            raise LthError(f"training diverged at iteration {iteration} (loss {loss}): lower train.lr "
                           f"(now {params.lr:g})")
        row = {"iteration": iteration, "train_loss": train_loss, "train_accuracy": train_acc,
               "validation_loss": val_loss, "validation_accuracy": val_acc,
               "test_loss": test_loss, "test_accuracy": test_acc}
        bar.record(iteration, {"validation loss": f"{val_loss:.4f}", "test accuracy": f"{test_acc:.4f}"})
        if on_record:
            on_record(row)
        return row

    loop.mark("ready")
    resumed = load_checkpoint(checkpoint, model, train_step, streams, window) if checkpoint else None
    bar = Progress("train", params.iterations, resumed[0] - 1 if resumed else 0, progress, progress_every)
    if resumed:
        start, curve, snapshot = resumed
    else:
        start, curve = 1, [record(0)]
        snapshot = models.state_arrays(model) if snapshot_at == 0 else None
    model.train()

    def after(iteration: int) -> None:
        """What the host does after an iteration: the snapshot, a record, a checkpoint."""
        nonlocal snapshot
        if iteration == snapshot_at:
            train_step.write_back()
            snapshot = models.state_arrays(model)
        if iteration % params.eval_every == 0 or iteration == params.iterations:
            curve.append(record(iteration))
        if checkpoint and iteration % checkpoint.every == 0 and iteration < params.iterations:
            save_checkpoint(checkpoint, iteration, model, train_step, streams, window, curve, snapshot)

    loop.mark("first_step")
    if graphs:  # segments of iterations between the host's events, each left to the device
        every = (params.eval_every, checkpoint.every) if checkpoint else (params.eval_every,)
        iteration = start - 1
        while iteration < params.iterations:
            end = graphed.segment_end(iteration, params.iterations, every, snapshot_at,
                                      len(window.labels) - window.filled)
            runner.train_segment(order, end - iteration)
            after(end)
            bar.update(end - iteration)
            iteration = end
    else:
        for iteration in range(start, params.iterations + 1):
            if not schedule.constant:
                group["lr"] = schedule.at(schedule_start + iteration - 1)  # a float: the step reads it
            idx = order.next().to(device, non_blocking=True)
            labels = torch.index_select(train_split.labels, 0, idx, out=window.labels_slot())
            images = train_split.images.index_select(0, idx)
            window.add(train_step(crop_and_flip(images) if crop_and_flip else images, labels))
            after(iteration)
            bar.update()
    bar.close()
    train_step.write_back()
    return curve, snapshot


def run(experiment: Experiment, runtime: RuntimeParams, data: DataParams, data_path: Path, ticket_path: Path,
        mask_path: Path, out_dir: Path, seed: int, schedule_start: int = 0, round_index: int = 0) -> dict:
    """Train the ticket at `ticket_path` under `mask_path`; write into `out_dir` the trained
    weights, the weights at the rewind iteration, the curve and the metrics (with the params
    and provenance of the training). `schedule_start`: the learning-rate schedule's step of
    the first iteration (the plan passes reset.rewind_iteration for the rounds after 0);
    `round_index`: the round, which seeds the augmentation's draws with `seed`."""
    torch.set_num_threads(runtime.threads)
    torch.manual_seed(seed)  # dropout
    device = resolve_device(runtime.device, runtime.tf32)
    # the checkpoint's fingerprint hashes the input files as they are now (MNIST: 55 MB), on a
    # second thread while this one loads and scales them (hashlib runs without the GIL)
    with ThreadPoolExecutor(max_workers=1) as pool:
        fingerprinted = pool.submit(fingerprint, experiment, runtime, seed, data.normalize,
                                    (data_path, ticket_path, mask_path), CODE, schedule_start, round_index) \
            if runtime.checkpoint_every else None
        weights = load_arrays(ticket_path, made_by=made_by(ticket_path))
        mask_np = masks.load(mask_path, made_by=made_by(mask_path))
        masks.check(mask_np, weights, str(mask_path))
        splits = load_splits(data_path, device, data.normalize)
        input_shape = tuple(splits["train"].images.shape[1:])
        model = models.build(experiment.model.name, input_shape, architectures.num_classes(experiment.dataset),
                             dropout=experiment.model.dropout)
        models.load_arrays_into(model, weights)
        model.to(device)
        mask = {n: torch.from_numpy(m).to(device=device, dtype=torch.float32) for n, m in mask_np.items()}
        checkpoint = Checkpoint(out_dir / outputs.CHECKPOINT, runtime.checkpoint_every, fingerprinted.result()) \
            if fingerprinted else None
    graphs = runtime.cuda_graphs and graphed.applies(device, model, mask, experiment.train)
    curve, rewind = train(model, mask, splits, experiment.train, seed,
                          snapshot_at=experiment.reset.rewind_iteration, checkpoint=checkpoint,
                          schedule_start=schedule_start, round_index=round_index,
                          progress_every=runtime.progress_every, graphs=graphs)
    final_train_loss, final_train_acc = evaluate(model.eval(), splits["train"])
    stop = early_stop(curve)
    sparsity = masks.report(mask_np)
    metrics = {
        "seed": seed,
        "iterations": experiment.train.iterations,
        "schedule_start": schedule_start,
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
        "params": provenance.params(experiment, runtime, data, seed),
        "provenance": provenance.record(str(device), runtime.threads, seed, runtime.tf32,
                                        loop="cuda_graphs" if graphs else "eager"),
    }
    trained = models.state_arrays(model)
    # the masking invariant: pruned weights hold their ticket values (zero, or frozen: mask-0 actions)
    if any(not np.array_equal(trained[n][~m], weights[n][~m]) for n, m in mask_np.items()):
        raise AssertionError("a pruned weight moved during training")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_arrays(out_dir / outputs.TRAINED, trained)
    save_arrays(out_dir / outputs.REWIND, rewind)
    write_text(out_dir / outputs.CURVE, curve_csv(curve, CURVE_COLUMNS))
    write_json(out_dir / outputs.METRICS, metrics)
    if checkpoint:
        checkpoint.path.unlink(missing_ok=True)
    return metrics
