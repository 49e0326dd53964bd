"""Layerwise magnitude pruning (Frankle & Carbin): each layer loses a fraction of the
weights it still has, chosen by a criterion's score; the lowest scores go first.

Criteria live in a plain registry of pure functions `score(initial, final) -> array`
(higher = keep), so Zhou et al.'s criteria can be added beside `large_final`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lth.artifacts import Arrays
from lth.masks import Mask, layer_kind

Criterion = Callable[[np.ndarray, np.ndarray], np.ndarray]

CRITERIA: dict[str, Criterion] = {
    "large_final": lambda initial, final: np.abs(final),
}


def prune_count(alive: int, rate: float) -> int:
    """How many of a layer's `alive` weights one round removes."""
    return int(round(rate * alive))


def keep_top(score: np.ndarray, alive: np.ndarray, n_keep: int) -> np.ndarray:
    """Boolean mask of the `n_keep` alive entries with the highest score.

    Ties are broken by position (the earlier index is kept), so masks are reproducible.
    """
    flat_alive = np.flatnonzero(alive)
    order = np.argsort(-score.ravel()[flat_alive].astype(np.float64), kind="stable")
    kept = np.zeros(alive.size, dtype=bool)
    kept[flat_alive[order[:n_keep]]] = True
    return kept.reshape(alive.shape)


def prune(final: Arrays, mask: Mask, rates: dict[str, float],
          criterion: str = "large_final", initial: Arrays | None = None) -> Mask:
    """The next round's mask: per layer, drop `rates[kind]` of the surviving weights."""
    score_fn = CRITERIA[criterion]
    initial = initial if initial is not None else final
    new_mask = {}
    for name, alive in mask.items():
        kind = layer_kind(name)
        if kind not in rates:
            raise ValueError(f"no pruning rate for layer kind {kind!r} ({name}); set prune.rates.{kind}")
        n_alive = int(alive.sum())
        n_keep = n_alive - prune_count(n_alive, rates[kind])
        new_mask[name] = keep_top(score_fn(initial[name], final[name]), alive, n_keep)
    return new_mask


def percent_ladder(layer_sizes: dict[str, int], rates: dict[str, float], rounds: int) -> list[float]:
    """Percent of weights remaining after rounds 0..rounds, from layer sizes alone."""
    alive = dict(layer_sizes)
    total = sum(layer_sizes.values())
    ladder = [100.0]
    for _ in range(rounds):
        for name, n in alive.items():
            alive[name] = n - prune_count(n, rates[layer_kind(name)])
        ladder.append(100.0 * sum(alive.values()) / total)
    return ladder
