"""Supermasks (Zhou et al. 2019): masks that make an *untrained* network accurate.

- `untrained` stage: one-shot masks computed from round 0's training (every criterion
  asked for, at 0..steps pruning steps of supermask.untrained.rates) applied to theta_0 with each
  mask-1 action, and evaluated without any training. One stage per seed; a mask costs
  one pruning and one evaluation pass. The authors evaluate one-shot masks the same way
  (their get_init_loss_train_lottery.py).
- `supermask` stage: a learned supermask. The weights stay at their initial values (or
  signed constants); one score per weight is trained. The forward pass uses
  mask ~ Bernoulli(sigmoid(score)); the backward pass treats the sample as if it were its
  probability (straight-through). Evaluated with the expected mask (weights *
  sigmoid(score)) and with sampled masks (mean over `samples` draws), as the authors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from lth import architectures, masks, models, optim, outputs, provenance, pruning, reset
from lth.artifacts import load_arrays, save_arrays, write_json, write_text
from lth.loop import BatchOrder, Progress, Split, curve_csv, evaluate, load_splits, mark, resolve_device
from lth.outputs import made_by
from lth.params import DataParams, Experiment, LearnedParams, RuntimeParams

UNTRAINED_COLUMNS = ("seed", "criterion", "action", "steps", "percent_remaining", "validation_loss",
                     "validation_accuracy", "test_loss", "test_accuracy")
CURVE_COLUMNS = ("iteration", "percent_expected", "expected_validation_loss", "expected_validation_accuracy",
                 "expected_test_accuracy", "sampled_validation_loss", "sampled_validation_accuracy",
                 "sampled_test_accuracy")


def _setup(experiment: Experiment, runtime: RuntimeParams, data_path: Path, normalize: str):
    torch.set_num_threads(runtime.threads)
    device = resolve_device(runtime.device, runtime.tf32)
    splits = load_splits(data_path, device, normalize)
    classes = architectures.num_classes(experiment.dataset)
    model = models.build(experiment.model.name, tuple(splits["train"].images.shape[1:]), classes,
                         dropout=experiment.model.dropout).to(device).eval()
    return device, splits, model


def run_untrained(experiment: Experiment, runtime: RuntimeParams, data: DataParams, data_path: Path,
                  theta0_path: Path, trained_path: Path, out: Path, seed: int) -> list[dict]:
    """The `untrained` stage: evaluate theta_0 under one-shot masks of each criterion, with
    each mask-1 action; write the table to `out` and return its rows."""
    ask = experiment.supermask.untrained
    theta0 = load_arrays(theta0_path, made_by=made_by(theta0_path))
    trained = load_arrays(trained_path, made_by=made_by(trained_path))
    device, splits, model = _setup(experiment, runtime, data_path, data.normalize)
    dense = masks.dense(theta0)
    rows = []
    mark("ready")  # its steps are evaluations: the first begins now
    for criterion in ask.criteria:
        for steps in range(ask.steps + 1):
            mask = dense if steps == 0 else pruning.prune(
                trained, dense, ask.rates, criterion, experiment.prune.scope,
                initial=theta0, steps=steps)
            percent = masks.report(mask)["percent_remaining"]
            for action in ask.actions:
                models.load_arrays_into(model, reset.ticket(theta0, mask, action, seed, init=experiment.model.init))
                val_loss, val_acc = evaluate(model, splits["validation"])
                test_loss, test_acc = evaluate(model, splits["test"])
                rows.append({"seed": seed, "criterion": criterion, "action": action, "steps": steps,
                             "percent_remaining": percent, "validation_loss": val_loss,
                             "validation_accuracy": val_acc, "test_loss": test_loss, "test_accuracy": test_acc})
    write_text(out, curve_csv(rows, UNTRAINED_COLUMNS))
    return rows


class Supermask:
    """Frozen weights and a trainable score per prunable weight."""

    def __init__(self, model: torch.nn.Module, weights: dict[str, np.ndarray], device: torch.device,
                 generator: torch.Generator):
        self.model = model
        self.weights = {n: torch.from_numpy(w).to(device) for n, w in weights.items()}
        self.scores = {n: torch.zeros_like(w, requires_grad=True) for n, w in self.weights.items()
                       if masks.is_prunable(n)}
        self.generator = generator

    def probabilities(self) -> dict[str, torch.Tensor]:
        return {n: torch.sigmoid(s) for n, s in self.scores.items()}

    def sample(self, straight_through: bool) -> dict[str, torch.Tensor]:
        out = {}
        for n, p in self.probabilities().items():
            drawn = torch.bernoulli(p.detach(), generator=self.generator)
            out[n] = drawn + (p - p.detach()) if straight_through else drawn  # exactly 0 or 1 forward
        return out

    def forward(self, mask: dict[str, torch.Tensor]):
        params = {n: w * mask[n] if n in mask else w for n, w in self.weights.items()}
        return lambda images: functional_call(self.model, params, (images,))

    def percent_expected(self) -> float:
        with torch.no_grad():
            total = sum(p.numel() for p in self.scores.values())
            return 100.0 * sum(p.sum().item() for p in self.probabilities().values()) / total


@torch.no_grad()
def _evaluate_sampled(sm: Supermask, split: Split, samples: int) -> tuple[float, float]:
    results = [evaluate(sm.forward(sm.sample(straight_through=False)), split) for _ in range(samples)]
    return float(np.mean([r[0] for r in results])), float(np.mean([r[1] for r in results]))


def run(experiment: Experiment, runtime: RuntimeParams, data: DataParams, data_path: Path, theta0_path: Path,
        out_dir: Path, seed: int, progress: bool | None = None) -> dict:
    """The `supermask` stage: train a supermask over frozen weights; write scores, curve and
    metrics (with the params and provenance of the run) into `out_dir`; return the metrics."""
    params: LearnedParams = experiment.supermask.learned
    torch.manual_seed(seed)  # dropout
    theta0 = load_arrays(theta0_path, made_by=made_by(theta0_path))
    device, splits, model = _setup(experiment, runtime, data_path, data.normalize)
    weights = reset.ticket(theta0, masks.dense(theta0), params.weights, seed, init=experiment.model.init)
    sm = Supermask(model, weights, device, torch.Generator(device=device).manual_seed(seed))
    optimizer = optim.SGD(list(sm.scores.values()), lr=params.lr, momentum=params.momentum)

    def record(iteration: int) -> dict:
        model.eval()
        with torch.no_grad():
            expected = sm.forward(sm.probabilities())
            exp_val_loss, exp_val_acc = evaluate(expected, splits["validation"])
            _, exp_test_acc = evaluate(expected, splits["test"])
        samp_val_loss, samp_val_acc = _evaluate_sampled(sm, splits["validation"], params.samples)
        _, samp_test_acc = _evaluate_sampled(sm, splits["test"], params.samples)
        model.train()
        bar.record(iteration, {"sampled test accuracy": f"{samp_test_acc:.4f}"})
        return {"iteration": iteration, "percent_expected": sm.percent_expected(),
                "expected_validation_loss": exp_val_loss, "expected_validation_accuracy": exp_val_acc,
                "expected_test_accuracy": exp_test_acc, "sampled_validation_loss": samp_val_loss,
                "sampled_validation_accuracy": samp_val_acc, "sampled_test_accuracy": samp_test_acc}

    mark("ready")
    bar = Progress("supermask", params.iterations, 0, progress, runtime.progress_every)
    curve = [record(0)]
    train_split = splits["train"]
    order = BatchOrder(len(train_split.labels), params.batch_size, seed)
    mark("first_step")
    for iteration in range(1, params.iterations + 1):
        idx = order.next().to(device, non_blocking=True)
        logits = sm.forward(sm.sample(straight_through=True))(train_split.images[idx])
        loss = F.cross_entropy(logits, train_split.labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if iteration % params.eval_every == 0 or iteration == params.iterations:
            curve.append(record(iteration))
        bar.update()
    bar.close()

    # early stop on the sampled masks' validation loss (the network as it is used), never on test
    stop = min(curve, key=lambda row: row["sampled_validation_loss"])
    final = curve[-1]
    metrics = {
        "seed": seed, "iterations": params.iterations, "weights": params.weights,
        "final_percent_expected": final["percent_expected"],
        "final_expected_test_accuracy": final["expected_test_accuracy"],
        "final_sampled_test_accuracy": final["sampled_test_accuracy"],
        "early_stop_iteration": stop["iteration"],
        "early_stop_sampled_test_accuracy": stop["sampled_test_accuracy"],
        "early_stop_expected_test_accuracy": stop["expected_test_accuracy"],
        "early_stop_percent_expected": stop["percent_expected"],
        "params": provenance.params(experiment, runtime, data, seed),
        "provenance": provenance.record(str(device), runtime.threads, seed, runtime.tf32),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    save_arrays(out_dir / outputs.SCORES, {n: s.detach().cpu().numpy() for n, s in sm.scores.items()})
    write_text(out_dir / outputs.CURVE, curve_csv(curve, CURVE_COLUMNS))
    write_json(out_dir / outputs.METRICS, metrics)
    return metrics
