"""The `aggregate` stage: every round's metrics and curve -> two tidy tables.

rounds.csv: one row per (seed, round) with percent remaining, early-stop iteration,
accuracies. curves.csv: one row per (seed, round, evaluation iteration).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lth import plan
from lth.artifacts import atomic_path, read, read_json
from lth.params import Params

ROUND_COLUMNS = ["experiment", "seed", "round", "percent_remaining", "early_stop_iteration",
                 "early_stop_test_accuracy", "early_stop_validation_loss",
                 "early_stop_validation_accuracy", "final_train_accuracy", "final_train_loss",
                 "final_test_accuracy", "final_validation_accuracy", "iterations",
                 "weights_remaining", "weights_total"]


def collect(p: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    rounds, curves = [], []
    for seed in p.seeds:
        for k in range(p.prune.rounds + 1):
            d = Path(plan.round_dir(p, seed, k))
            metrics = read_json(d / "metrics.json", made_by="train")
            rounds.append({"experiment": p.experiment, "round": k, **metrics})
            curve = read(d / "curve.csv", "train", pd.read_csv)
            curve.insert(0, "percent_remaining", metrics["percent_remaining"])
            curve.insert(0, "round", k)
            curve.insert(0, "seed", seed)
            curve.insert(0, "experiment", p.experiment)
            curves.append(curve)
    return pd.DataFrame(rounds)[ROUND_COLUMNS], pd.concat(curves, ignore_index=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def run(p: Params, out_dir: Path) -> pd.DataFrame:
    rounds, curves = collect(p)
    write_csv(rounds, out_dir / "rounds.csv")
    write_csv(curves, out_dir / "curves.csv")
    return rounds
