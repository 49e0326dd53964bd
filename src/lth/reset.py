"""The `reset` and `reinit` stages. What a round starts from: the mask applied to the starting weights (theta_0 or the
rewind point), with the kept weights' values chosen by a "mask-1 action" (Zhou et al. 2019).

Pruned weights are exactly zero; what is never pruned (biases, BatchNorm's scale and
shift, and its running statistics) goes back to its starting values with the weights.
The actions, each a pure function of (start, mask, rng, std) for one layer, `std` the
standard deviation of the layer's initial distribution (`model.init`: INIT_STD):

- original: the starting values (Frankle & Carbin's winning ticket);
- random_reinit: fresh values from the layer's initial distribution (N(0, std^2));
- random_reshuffle: the layer's kept starting values, permuted among the kept positions;
- signed_reinit / signed_reshuffle: as above, but each weight keeps its original sign;
- signed_constant: +-std with the original sign; rand_signed_constant: +-std with random signs.

What the pruned weights hold while the round trains is the "mask-0 action" (training
never moves them: their gradient is masked):

- zero: exactly zero (Frankle & Carbin);
- freeze_init: their starting values;
- variant1: zero if their magnitude fell during the training that ranked them
  (|trained| < |start|), else their starting value (the authors' freeze_init_zero_mask);
- variant2: as variant1, and kept weights whose magnitude fell start at zero too
  (the authors' freeze_init_zero_all).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lth import masks
from lth.artifacts import Arrays, load_arrays, save_arrays
from lth.masks import Mask
from lth.outputs import made_by
from lth.params import ResetParams


def glorot_std(shape: tuple[int, ...]) -> float:
    """Standard deviation of Glorot (xavier) normal init for a weight of this shape."""
    receptive = math.prod(shape[2:])
    return math.sqrt(2.0 / (shape[1] * receptive + shape[0] * receptive))


def kaiming_std(shape: tuple[int, ...]) -> float:
    """Standard deviation of Kaiming (He) normal init, fan_in, for ReLU: sqrt(2 / fan_in)."""
    return math.sqrt(2.0 / (shape[1] * math.prod(shape[2:])))


# per `model.init`, the standard deviation of a weight's initial distribution (models.INITS)
INIT_STD: dict[str, Callable[[tuple[int, ...]], float]] = {
    "glorot_normal": glorot_std,
    "kaiming_normal": kaiming_std,
}


def _reshuffled(w: np.ndarray, m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = w.copy()
    out[m] = rng.permutation(w[m])
    return out


def _fresh(w: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    return rng.normal(0.0, std, w.shape).astype(w.dtype)


Action = Callable[[np.ndarray, np.ndarray, np.random.Generator, float], np.ndarray]
ACTIONS: dict[str, Action] = {
    "original": lambda w, m, rng, std: w,
    "random_reinit": lambda w, m, rng, std: _fresh(w, rng, std),
    "random_reshuffle": lambda w, m, rng, std: _reshuffled(w, m, rng),
    "signed_reinit": lambda w, m, rng, std: np.sign(w) * np.abs(_fresh(w, rng, std)),
    "signed_reshuffle": lambda w, m, rng, std: np.sign(w) * np.abs(_reshuffled(w, m, rng)),
    "signed_constant": lambda w, m, rng, std: np.sign(w) * np.full(w.shape, std, w.dtype),
    "rand_signed_constant": lambda w, m, rng, std: rng.choice(np.array([-1, 1], w.dtype), w.shape) * std,
}


PRUNED_ACTIONS = ("zero", "freeze_init", "variant1", "variant2")


def ticket(start: Arrays, mask: Mask, kept: str = "original", seed: int = 0, pruned: str = "zero",
           trained: Arrays | None = None, init: str = "glorot_normal") -> Arrays:
    """Kept weights = kept-action(start), pruned weights = pruned-action; the rest (biases,
    BatchNorm) as they start. `init`: the weights' initial distribution (`model.init`), which
    the random and constant actions draw from; `trained` (the weights the mask was ranked
    on) is needed by variant1 and variant2."""
    if pruned not in PRUNED_ACTIONS:
        raise ValueError(f"unknown mask-0 action {pruned!r}; choose one of {PRUNED_ACTIONS}")
    if pruned in ("variant1", "variant2") and trained is None:
        raise ValueError(f"mask-0 action {pruned!r} needs the trained weights the mask was ranked on")
    rng = np.random.default_rng(seed)
    out = {}
    for name in sorted(start):
        w = start[name]
        if name not in mask:
            out[name] = w.copy()
            continue
        values = ACTIONS[kept](w, mask[name], rng, INIT_STD[init](w.shape)).astype(w.dtype)
        zero = np.zeros((), w.dtype)
        frozen = zero if pruned == "zero" else w
        if pruned in ("variant1", "variant2"):
            fell = np.abs(trained[name]) < np.abs(w)
            frozen = np.where(fell, zero, w)
            if pruned == "variant2":
                values = np.where(fell, zero, values)
        out[name] = np.where(mask[name], values, frozen)
    return out


def run(params: ResetParams, seed: int, start_path: Path, trained_path: Path, mask_path: Path, out: Path,
        init: str = "glorot_normal") -> None:
    """The `reset` stage: the ticket of the mask at `mask_path`, from the weights at
    `start_path` (theta_0 or the rewind point), written to `out`."""
    start = load_arrays(start_path, made_by=made_by(start_path))
    trained = load_arrays(trained_path, made_by=made_by(trained_path))
    mask = masks.load(mask_path, made_by=made_by(mask_path))
    masks.check(mask, start, str(mask_path))
    save_arrays(out, ticket(start, mask, params.kept, seed, params.pruned, trained, init))


# BatchNorm scales that `model.init` draws at random (models.BATCHNORM_SCALE): U(0, 1)
RANDOM_BATCHNORM_SCALE = {"kaiming_normal"}


def reinit(theta0: Arrays, mask: Mask, seed: int, init: str = "glorot_normal") -> Arrays:
    """The reinit control's ticket: every prunable weight drawn afresh from its initial
    distribution, then masked; BatchNorm scales drawn afresh where the init draws them, else
    (like biases, BatchNorm shifts and running statistics) at their initial values, theta_0's."""
    out = ticket(theta0, mask, "random_reinit", seed, init=init)
    if init in RANDOM_BATCHNORM_SCALE:
        rng = np.random.default_rng([seed, 1])  # a stream apart from the weights' draws
        for name in sorted(out):
            if masks.is_batchnorm(name) and name.endswith(".weight"):
                out[name] = rng.random(out[name].shape).astype(out[name].dtype)
    return out


def run_reinit(seed: int, theta0_path: Path, mask_path: Path, out: Path, init: str = "glorot_normal") -> None:
    """The `reinit` stage (a control): the mask at `mask_path` over a fresh draw from the
    initial distribution (theta_0 gives the shapes, biases and BatchNorm's initial state),
    written to `out`."""
    theta0 = load_arrays(theta0_path, made_by=made_by(theta0_path))
    mask = masks.load(mask_path, made_by=made_by(mask_path))
    masks.check(mask, theta0, str(mask_path))
    save_arrays(out, reinit(theta0, mask, seed, init))
