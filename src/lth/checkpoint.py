"""A training's resumable state: saved every `runtime.checkpoint_every` iterations to one
safetensors file in its directory, resumed by a rerun of the same training (inputs,
params and code: its fingerprint), bit-identical to an uninterrupted run on the CPU.

The state: the model (its parameters and buffers, BatchNorm's running statistics), the
optimizer's state (Adam's moments, SGD's momentum buffers), the random streams (the batch
order, the augmentation's generator), the window of minibatches since the last evaluation
(train.Window), the dropout generator, the curve so far and the weights at the rewind
iteration once passed. `train_step` is the training's step (train.AutogradStep or
mlp_step.MLPStep); `streams` maps a name to an object with state() and load()
(loop.BatchOrder, augment.Augment).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lth import LthError, models
from lth.artifacts import load_arrays, save_arrays
from lth.params import Experiment, RuntimeParams


@dataclass
class Checkpoint:
    """Where and how often a training saves its resumable state, and the fingerprint of
    what it trains (a checkpoint of other inputs is never resumed)."""

    path: Path
    every: int
    fingerprint: str


def save_checkpoint(checkpoint: Checkpoint, iteration: int, model: torch.nn.Module, train_step,
                    streams: dict, window, curve: list[dict], snapshot: dict | None) -> None:
    """Everything the rest of the training depends on, in one safetensors file (atomic)."""
    train_step.write_back()
    arrays = {f"model/{n}": a for n, a in models.state_arrays(model).items()}
    for i, p in enumerate(train_step.optimizer.param_groups[0]["params"]):
        for key, value in train_step.optimizer.state[p].items():
            arrays[f"optimizer/{i}/{key}"] = value.detach().cpu().numpy().reshape(-1 if value.ndim else 1)
    for name, stream in streams.items():
        arrays.update({f"{name}/{k}": v for k, v in stream.state().items()})
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


def load_checkpoint(checkpoint: Checkpoint, model: torch.nn.Module, train_step, streams: dict,
                    window) -> tuple[int, list[dict], dict | None] | None:
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
    optimizer = train_step.optimizer
    params = optimizer.param_groups[0]["params"]
    needed = {"torch_rng", *(f"model/{n}" for n in model.state_dict()), *(f"window/{k}" for k in window.PARTS),
              *(f"{name}/{k}" for name, stream in streams.items() for k in stream.state()),
              *(f"optimizer/{i}/{k}" for i in range(len(params)) for k in optimizer.state_keys())}
    missing = needed - set(arrays)
    if missing:
        print(f"train: ignoring checkpoint {checkpoint.path}: it lacks {', '.join(sorted(missing)[:3])}")
        return None
    models.load_arrays_into(model, part(arrays, "model"))
    train_step.reload()
    for i, p in enumerate(params):
        state = part(arrays, f"optimizer/{i}")
        current = optimizer.state[p]  # restored in place: the LeNet step holds these tensors
        for k, v in state.items():
            value = torch.from_numpy(v.copy()).to(p.device).reshape(() if k == "step" else p.shape)
            if k in current:
                current[k].copy_(value)
            else:
                current[k] = value
    for name, stream in streams.items():
        stream.load(part(arrays, name))
    window.load(part(arrays, "window"))
    torch.set_rng_state(torch.from_numpy(arrays["torch_rng"].copy()))
    snapshot = part(arrays, "snapshot") or None
    print(f"train: resumed from {checkpoint.path} at iteration {meta['iteration']}")
    return meta["iteration"] + 1, meta["curve"], snapshot


def fingerprint(experiment: Experiment, runtime: RuntimeParams, seed: int, normalize: str,
                inputs: tuple[Path, ...], code: tuple[str, ...], schedule_start: int = 0,
                round_index: int = 0) -> str:
    """What a training's result depends on: its input files' bytes, its params and the
    code that trains (`code`: the modules' files; this module's too, the checkpoint's
    format). A checkpoint with another fingerprint is never resumed."""
    digest = hashlib.sha256()
    for path in (*inputs, *code, __file__):
        digest.update(Path(path).read_bytes())
    digest.update(json.dumps([repr(experiment.model), repr(experiment.train), experiment.reset.rewind_iteration,
                              runtime.device, runtime.threads, runtime.tf32, seed, normalize, torch.__version__,
                              schedule_start, round_index]).encode())
    return digest.hexdigest()
