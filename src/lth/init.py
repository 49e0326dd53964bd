"""The `init` stage: theta_0 of an experiment's model for a seed (weights from `model.init`,
Glorot normal by default; zero biases; BatchNorm at its initial state), and the dense mask
that round 0 trains under."""

from __future__ import annotations

from pathlib import Path

from lth import masks, models
from lth.artifacts import save_arrays
from lth.params import Experiment


def run(experiment: Experiment, seed: int, theta0_path: Path, mask_path: Path) -> None:
    """Write theta_0 to `theta0_path` and the dense mask (with its report) to `mask_path`."""
    theta0 = models.make_theta0(experiment.model.name, experiment.dataset, seed, experiment.model.init)
    save_arrays(theta0_path, theta0)
    masks.save(mask_path, masks.dense(theta0))
