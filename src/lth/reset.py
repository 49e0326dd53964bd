"""What a round starts from: the winning ticket m ⊙ theta_0.

Surviving weights go back to their initial values, pruned weights are exactly zero,
biases (never pruned) go back to their initial values too.
"""

from __future__ import annotations

import numpy as np

from lth.artifacts import Arrays
from lth.masks import Mask


def ticket(theta0: Arrays, mask: Mask) -> Arrays:
    out = {}
    for name, w in theta0.items():
        out[name] = np.where(mask[name], w, np.zeros((), w.dtype)) if name in mask else w.copy()
    return out
