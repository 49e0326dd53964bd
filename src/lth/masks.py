"""Masks: which weights of each prunable layer survive, and how many.

A mask maps a prunable tensor name to a boolean array of the same shape. Prunable are the
`*.weight` tensors of conv and fully connected layers; biases, BatchNorm's scale and shift
(`bn*.weight`, `bn*.bias`) and its running statistics are never pruned, and are not
counted in the percent remaining. Layer kinds, which select the pruning rate, follow from
the name of the module that holds the tensor (the part before `.weight`): `conv*`, `fc*`,
and `output` for the last layer. In LeNet and Conv-2/4/6 that is the first part of the
name (`conv1.weight`); in nested blocks the last (`blocks.3.conv1.weight`,
`blocks.3.shortcut.conv.weight`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lth import LthError, outputs
from lth.artifacts import Arrays, load_arrays, save_arrays, write_json

Mask = dict[str, np.ndarray]


class MaskError(LthError, ValueError):
    """A mask that does not fit the weights it is applied to."""


LAYER_KINDS = ("conv", "fc", "output")


def module_of(name: str) -> str:
    """The name of the module that holds a tensor: `conv` of `blocks.3.shortcut.conv.weight`."""
    return name.rpartition(".")[0].rpartition(".")[2]


def is_batchnorm(name: str) -> bool:
    """A tensor of a BatchNorm layer (scale, shift, running statistics): modules named `bn*`."""
    return module_of(name).startswith("bn")


def is_prunable(name: str) -> bool:
    """Conv and fully connected weights; a `.weight` of a module that is neither fails in
    layer_kind, rather than going unpruned unnoticed."""
    return name.endswith(".weight") and not is_batchnorm(name)


def layer_kind(name: str) -> str:
    layer = module_of(name)
    for kind in LAYER_KINDS:
        if layer.startswith(kind):
            return kind
    raise ValueError(f"tensor {name!r}: its module's name ({layer!r}) must start with one of {LAYER_KINDS}")


def dense(weights: Arrays) -> Mask:
    return {name: np.ones(w.shape, dtype=bool) for name, w in weights.items() if is_prunable(name)}


def check(mask: Mask, weights: Arrays, where: str) -> None:
    """Reject a mask that does not fit the model's prunable layers."""
    expected = {n: w.shape for n, w in weights.items() if is_prunable(n)}
    got = {n: m.shape for n, m in mask.items()}
    if expected != got:
        raise MaskError(f"{where}: mask layers {got} do not match the model's {expected}")
    for name, m in mask.items():
        if m.dtype != np.bool_:
            raise MaskError(f"{where}: mask {name!r} has dtype {m.dtype}; masks are boolean")


def report(mask: Mask) -> dict:
    """Per-layer and total counts and percent of weights remaining (biases excluded)."""
    layers = {}
    for name, m in mask.items():
        kept, total = int(m.sum()), int(m.size)
        layers[name] = {"kind": layer_kind(name), "remaining": kept, "total": total,
                        "percent_remaining": 100.0 * kept / total}
    kept = sum(v["remaining"] for v in layers.values())
    total = sum(v["total"] for v in layers.values())
    return {"layers": layers, "remaining": kept, "total": total,
            "percent_remaining": 100.0 * kept / total}


def save(path: str | Path, mask: Mask) -> dict:
    """Save a mask, and its report (sparsity.json) beside it; return the report."""
    save_arrays(path, mask)
    summary = report(mask)
    write_json(Path(path).with_name(outputs.SPARSITY), summary)
    return summary


def load(path: str | Path, made_by: str = "prune") -> Mask:
    mask = load_arrays(path, made_by)
    for name, m in mask.items():
        if m.dtype != np.bool_:
            raise MaskError(f"{path}: mask {name!r} has dtype {m.dtype}; masks are boolean")
    return mask
