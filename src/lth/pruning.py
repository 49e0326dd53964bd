"""The `prune` and `shuffle` stages. Magnitude pruning (Frankle & Carbin): each round
removes a fraction of the weights that still survive, those with the lowest score first.

- layerwise: every layer loses `rates[kind]` of its own surviving weights;
- global: the layers of one kind share one threshold (kinds with rate 0 are not pruned).
A one-shot schedule prunes round 0's trained weights straight to round k's count
(`steps=k`); the iterative schedule prunes the previous round's (`steps=1`).

Criteria live in a plain registry of pure functions `score(initial, final, alive) -> array`
(higher = keep): Frankle & Carbin's `large_final` and Zhou et al.'s alternatives.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lth import masks
from lth.artifacts import Arrays, load_arrays
from lth.masks import Mask, layer_kind
from lth.outputs import made_by
from lth.params import PruneParams

Criterion = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _ranks(values: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """0 for the largest of the alive values, 1 for the next, ...; dead entries rank last."""
    order = np.argsort(-np.where(alive, values, -np.inf), kind="stable")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(values.size)
    return ranks


def _both(sign: float) -> Criterion:
    """Keep weights in the top set of both |w_i| and |w_f| (sign=+1; bottom sets for -1).

    A weight is in the top-q sets of both rankings iff max(rank_i, rank_f) < q, so keeping
    the lowest max-rank hits the target count exactly: the threshold search Zhou et al. do
    by bisection, without the search.
    """
    def score(initial, final, alive):
        return -np.maximum(_ranks(sign * np.abs(initial), alive), _ranks(sign * np.abs(final), alive))
    return score


def _sign_variant(base: Criterion, keep_same_sign: bool) -> Criterion:
    """Weights whose sign did (same_sign) / did not (diff_sign) change are pruned first."""
    def score(initial, final, alive):
        same = np.sign(initial) == np.sign(final)
        return np.where(same == keep_same_sign, base(initial, final, alive), -np.inf)
    return score


def _random(initial, final, alive):
    # seeded by the weights themselves: reproducible, and different for every trial
    return np.random.default_rng(zlib.crc32(final.tobytes())).random(final.shape)


def _large_final(initial, final, alive):
    return np.abs(final)


def _magnitude_increase(initial, final, alive):
    return np.abs(final) - np.abs(initial)


# Zhou et al. (2019), "Deconstructing Lottery Tickets": score per weight, higher = keep.
CRITERIA: dict[str, Criterion] = {
    "large_final": _large_final,
    "small_final": lambda initial, final, alive: -np.abs(final),
    "large_init": lambda initial, final, alive: np.abs(initial),
    "small_init": lambda initial, final, alive: -np.abs(initial),
    "large_init_large_final": _both(+1.0),
    "small_init_small_final": _both(-1.0),
    "magnitude_increase": _magnitude_increase,
    "movement": lambda initial, final, alive: np.abs(final - initial),
    "random": _random,
    "large_final_same_sign": _sign_variant(_large_final, keep_same_sign=True),
    "large_final_diff_sign": _sign_variant(_large_final, keep_same_sign=False),
    "magnitude_increase_same_sign": _sign_variant(_magnitude_increase, keep_same_sign=True),
    "magnitude_increase_diff_sign": _sign_variant(_magnitude_increase, keep_same_sign=False),
}


def prune_count(alive: int, rate: float) -> int:
    """How many of `alive` weights one round removes."""
    return int(round(rate * alive))


def survivors(alive: int, rate: float, steps: int) -> int:
    for _ in range(steps):
        alive -= prune_count(alive, rate)
    return alive


def groups(mask: Mask, scope: str) -> dict[str, list[str]]:
    """Layers that share one threshold: each layer alone, or all layers of a kind."""
    if scope == "layerwise":
        return {name: [name] for name in mask}
    by_kind: dict[str, list[str]] = {}
    for name in mask:
        by_kind.setdefault(layer_kind(name), []).append(name)
    return by_kind


def keep_top(score: np.ndarray, alive: np.ndarray, n_keep: int) -> np.ndarray:
    """Boolean array of the `n_keep` alive entries with the highest score.

    Ties are broken by position (the earlier index is kept), so masks are reproducible.
    """
    flat_alive = np.flatnonzero(alive)
    order = np.argsort(-score.ravel()[flat_alive].astype(np.float64), kind="stable")
    kept = np.zeros(alive.size, dtype=bool)
    kept[flat_alive[order[:n_keep]]] = True
    return kept.reshape(alive.shape)


def rate_of(name: str, rates: dict[str, float]) -> float:
    kind = layer_kind(name)
    if kind not in rates:
        raise ValueError(f"no pruning rate for layer kind {kind!r} ({name}); set prune.rates.{kind}")
    return rates[kind]


def prune(final: Arrays, mask: Mask, rates: dict[str, float], criterion: str = "large_final",
          scope: str = "layerwise", initial: Arrays | None = None, steps: int = 1) -> Mask:
    """The next mask: each group keeps its `steps`-rounds survivor count of highest scores."""
    score_fn = CRITERIA[criterion]
    initial = initial if initial is not None else final
    new_mask = {}
    for names in groups(mask, scope).values():
        rate = rate_of(names[0], rates)
        alive = np.concatenate([mask[n].ravel() for n in names])
        score = score_fn(np.concatenate([initial[n].ravel() for n in names]),
                         np.concatenate([final[n].ravel() for n in names]), alive)
        kept = keep_top(score, alive, survivors(int(alive.sum()), rate, steps))
        offset = 0
        for n in names:
            new_mask[n] = kept[offset:offset + mask[n].size].reshape(mask[n].shape)
            offset += mask[n].size
    return new_mask


def shuffle(mask: Mask, seed: int) -> Mask:
    """A uniformly random mask with the same number of survivors in every layer."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in sorted(mask):
        m = mask[name]
        kept = np.zeros(m.size, dtype=bool)
        kept[rng.choice(m.size, size=int(m.sum()), replace=False)] = True
        out[name] = kept.reshape(m.shape)
    return out


def run(params: PruneParams, steps: int, initial_path: Path, trained_path: Path, mask_path: Path,
        out: Path) -> dict:
    """The `prune` stage: rank the weights trained under the mask at `mask_path`; write the
    next mask to `out` (with its report beside it) and return the report."""
    initial = load_arrays(initial_path, made_by=made_by(initial_path))
    trained = load_arrays(trained_path, made_by=made_by(trained_path))
    mask = masks.load(mask_path, made_by=made_by(mask_path))
    masks.check(mask, trained, str(mask_path))
    return masks.save(out, prune(trained, mask, params.rates, params.criterion, params.scope, initial=initial,
                                 steps=steps))


def run_shuffle(mask_path: Path, out: Path, seed: int) -> dict:
    """The `shuffle` stage (a control): a random mask with the per-layer sparsity of the one at
    `mask_path`, written to `out` (with its report beside it); return the report."""
    return masks.save(out, shuffle(masks.load(mask_path, made_by=made_by(mask_path)), seed))


def percent_ladder(layer_sizes: dict[str, int], rates: dict[str, float], rounds: int,
                   scope: str = "layerwise") -> list[float]:
    """Percent of weights remaining after rounds 0..rounds, from layer sizes alone."""
    pools: dict[str, int] = {}
    for name, size in layer_sizes.items():
        key = name if scope == "layerwise" else layer_kind(name)
        pools[key] = pools.get(key, 0) + size
    kinds = {key: rate_of(key if scope == "layerwise" else f"{key}.weight", rates) for key in pools}
    total = sum(layer_sizes.values())
    return [100.0 * sum(survivors(n, kinds[key], k) for key, n in pools.items()) / total
            for k in range(rounds + 1)]
