"""The `stability` stage: instability analysis (Frankle, Dziugaite, Roy & Carbin 2020).

A branch off one round of a lineage, at one iteration k. The round's starting network
(theta_0 densely for round 0, else the round's ticket under its mask) is trained k
iterations in the trial's own data order: the "trunk", the very weights the round's
training has at iteration k (tested). From there two copies train to the end of the
round's training, train.iterations - k iterations each (the paper: from k to T), in two
other data orders (and dropout draws), seeded by the plan (plan.copy_seeds). Like a
rewound ticket, a copy takes the trunk's weights only: its optimizer state starts afresh.
The paper's sparse networks at k > 0, IMP subnetworks rewound to k (the dense weights at k
under a mask found with rewinding to k), are this stage at k = 0 of an experiment with
`reset.rewind_iteration: k` (whose copies then train the whole train.iterations).

Then the test loss and error at `points` evenly spaced alphas on the line
(1 - alpha) * copy_a + alpha * copy_b, both ends included. The error barrier (the paper's
instability) is the highest error on the path minus the mean of the two ends' errors;
the paper calls a network stable when it is within about 2 points.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from lth import LthError, architectures, masks, models, outputs, provenance, train
from lth.artifacts import Arrays, load_arrays, save_arrays, write_json, write_text
from lth.loop import Split, curve_csv, evaluate, load_splits, resolve_device
from lth.outputs import made_by
from lth.params import DataParams, Experiment, RuntimeParams, TrainParams

PATH_COLUMNS = ("alpha", "test_loss", "test_accuracy", "test_error")


def network(experiment: Experiment, splits: dict[str, Split], weights: Arrays, seed: int) -> torch.nn.Module:
    """A network holding `weights`, with the global generator (dropout) seeded as train.run
    seeds it: before the model is built, whose construction draws from it."""
    torch.manual_seed(seed)
    model = models.build(experiment.model.name, tuple(splits["train"].images.shape[1:]),
                         architectures.num_classes(experiment.dataset), dropout=experiment.model.dropout)
    models.load_arrays_into(model, weights)
    return model.to(splits["train"].images.device)


def segment(experiment: Experiment, splits: dict[str, Split], weights: Arrays, mask: dict[str, torch.Tensor],
            start: int, stop: int, seed: int, schedule_start: int = 0, round_index: int = 0,
            graphs: bool | None = None) -> Arrays:
    """`weights` trained from iteration `start` to `stop` of the round's training, in data
    order (and augmentation draws) `seed` (train.train). The learning-rate schedule goes on
    from the round's place, schedule_start + start, as a rewound ticket's does. Evaluated
    only at its ends: the weights do not depend on it. `graphs`: train.train's (False:
    runtime.cuda_graphs is off)."""
    if stop == start:
        return weights
    params: TrainParams = dataclasses.replace(experiment.train, iterations=stop - start, eval_every=stop - start)
    model = network(experiment, splits, weights, seed)
    train.train(model, mask, splits, params, seed, schedule_start=schedule_start + start, round_index=round_index,
                graphs=graphs)
    return models.state_arrays(model)


def interpolate(a: Arrays, b: Arrays, alpha: float, mask: masks.Mask) -> Arrays:
    """(1 - alpha) * a + alpha * b, array by array. The ends are a and b themselves, bit for
    bit (arithmetic would turn a -0.0 into 0.0). Pruned weights keep their value, which both
    copies share (the ticket's: zero, or frozen). Every array of the state is interpolated:
    BatchNorm's running statistics too, once models have them (see `path`); arrays that are
    not floating point (counters) are a's."""
    if alpha == 0:
        return dict(a)
    if alpha == 1:
        return dict(b)
    out = {}
    for name, x in a.items():
        if not np.issubdtype(x.dtype, np.floating):
            out[name] = x
            continue
        mixed = ((1 - alpha) * x + alpha * b[name]).astype(x.dtype)
        out[name] = np.where(mask[name], mixed, x) if name in mask else mixed
    return out


def path(model: torch.nn.Module, a: Arrays, b: Arrays, mask: masks.Mask, split: Split, points: int) -> list[dict]:
    """Test loss and error at `points` evenly spaced alphas from a (0) to b (1)."""
    rows = []
    for alpha in np.linspace(0.0, 1.0, points):  # exactly 0.0 and 1.0 at the ends
        models.load_arrays_into(model, interpolate(a, b, alpha, mask))
        # BatchNorm, when models have it: the running statistics are interpolated with the
        # weights above. Recomputing them on training data instead (Jordan et al. 2022) goes here.
        loss, accuracy = evaluate(model.eval(), split)
        rows.append({"alpha": float(alpha), "test_loss": loss, "test_accuracy": accuracy, "test_error": 1 - accuracy})
    return rows


def barrier(values: list[float]) -> float:
    """The highest value on the path minus the mean of its two ends (Frankle et al. 2020)."""
    return max(values) - (values[0] + values[-1]) / 2


def run(experiment: Experiment, runtime: RuntimeParams, data: DataParams, data_path: Path, ticket_path: Path,
        mask_path: Path, out_dir: Path, seed: int, copy_seeds: tuple[int, int], k: int,
        schedule_start: int = 0, round_index: int = 0) -> dict:
    """Branch the training of the ticket at `ticket_path` (under `mask_path`) at iteration k;
    write the two copies, the path between them and its barriers into `out_dir`.
    `schedule_start` and `round_index` are the round's, as its `lth train` gets them."""
    torch.set_num_threads(runtime.threads)
    device = resolve_device(runtime.device, runtime.tf32)
    start = load_arrays(ticket_path, made_by=made_by(ticket_path))
    mask_np = masks.load(mask_path, made_by=made_by(mask_path))
    masks.check(mask_np, start, str(mask_path))
    splits = load_splits(data_path, device, data.normalize)
    mask = {n: torch.from_numpy(m).to(device=device, dtype=torch.float32) for n, m in mask_np.items()}
    end = experiment.train.iterations
    if not 0 <= k < end:
        raise LthError(f"--rewind-iteration {k}: the copies train from k to train.iterations = {end}; "
                       f"use 0 <= k < {end}")
    graphs = None if runtime.cuda_graphs else False
    trunk = segment(experiment, splits, start, mask, 0, k, seed, schedule_start, round_index, graphs)
    a, b = (segment(experiment, splits, trunk, mask, k, end, s, schedule_start, round_index, graphs)
            for s in copy_seeds)
    if any(not np.array_equal(a[n][~m], b[n][~m]) for n, m in mask_np.items()):
        raise AssertionError("the copies' pruned weights differ: the path would unprune them")
    rows = path(network(experiment, splits, a, seed), a, b, mask_np, splits["test"], experiment.stability.points)
    errors, losses = [r["test_error"] for r in rows], [r["test_loss"] for r in rows]
    highest = max(range(len(rows)), key=errors.__getitem__)
    metrics = {
        "seed": seed, "copy_seeds": list(copy_seeds), "rewind_iteration": k, "iterations": end,
        "copy_iterations": end - k, "points": len(rows),
        "percent_remaining": masks.report(mask_np)["percent_remaining"],
        "error_barrier": barrier(errors), "loss_barrier": barrier(losses),
        "test_error_a": errors[0], "test_error_b": errors[-1],
        "highest_error": errors[highest], "highest_error_alpha": rows[highest]["alpha"],
        "params": provenance.params(experiment, runtime, data, seed),
        "provenance": provenance.record(str(device), runtime.threads, seed, runtime.tf32),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    save_arrays(out_dir / outputs.COPY_A, a)
    save_arrays(out_dir / outputs.COPY_B, b)
    write_text(out_dir / outputs.INTERPOLATION, curve_csv(rows, PATH_COLUMNS))
    write_json(out_dir / outputs.INSTABILITY, metrics)
    return metrics
