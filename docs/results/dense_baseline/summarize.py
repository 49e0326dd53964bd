"""Summarise the dense-baseline study (issue 17): round 0 of LeNet-300-100 at 50K
iterations, 5 seeds, under each data.normalize choice.

    python docs/results/dense_baseline/summarize.py WORKSPACE [WORKSPACE ...] > summary.csv

Each WORKSPACE is a directory where `snakemake` ran the round-0 trainings of this folder's
params_<normalize>.yaml, or of the reference run (see README.md there); every runs/<experiment>/seed*/round00 found
under it becomes one row.
"""

import json
import sys
from pathlib import Path

import pandas as pd


def rows(workspace: Path):
    params = __import__("yaml").safe_load((workspace / "params.yaml").read_text())
    for d in sorted(workspace.glob("runs/*/seed*/round00")):
        if not (d / "metrics.json").exists():
            continue
        metrics = json.loads((d / "metrics.json").read_text())
        curve = pd.read_csv(d / "curve.csv")
        late = curve[curve.iteration >= 20_000]
        experiment = d.parts[-3]
        # the study's experiments are named dense_<normalize>; others use the workspace's choice
        normalize = experiment.removeprefix("dense_") if experiment.startswith("dense_") \
            else params["data"]["normalize"]
        yield {"experiment": experiment, "normalize": normalize,
               "seed": metrics["seed"], "threads": params["runtime"]["threads"],
               "early_stop_iteration": metrics["early_stop_iteration"],
               "early_stop_test_accuracy": metrics["early_stop_test_accuracy"],
               "final_test_accuracy": metrics["final_test_accuracy"],
               "mean_test_accuracy_20k_50k": late.test_accuracy.mean(),
               "max_test_accuracy": curve.test_accuracy.max(),
               "min_validation_loss": metrics["early_stop_validation_loss"]}


if __name__ == "__main__":
    table = pd.DataFrame([r for w in sys.argv[1:] for r in rows(Path(w))])
    table.sort_values(["normalize", "seed"]).to_csv(sys.stdout, index=False, float_format="%.6g")
