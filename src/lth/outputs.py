"""The files each stage writes, named here once.

The planner lays them out (plan.py), the stages write them under these names, the
Snakemake rules declare them, and `made_by` reads this table to name the stage behind a
damaged or missing file. Torch-free: every stage and tool imports it.
"""

from __future__ import annotations

from pathlib import PurePath

THETA0 = "theta0.safetensors"
MASK = "mask.safetensors"
SPARSITY = "sparsity.json"  # a mask's per-layer report, written beside it
TICKET = "ticket.safetensors"
TRAINED = "trained.safetensors"
REWIND = "rewind.safetensors"
CURVE = "curve.csv"
METRICS = "metrics.json"
SCORES = "scores.safetensors"
UNTRAINED = "untrained.csv"
# the stability stage's (names no other stage writes): the two copies, the path between them
COPY_A, COPY_B = "copy_a.safetensors", "copy_b.safetensors"
INTERPOLATION, INSTABILITY = "interpolation.csv", "instability.json"
ROUNDS, CURVES, LEARNED = "rounds.csv", "curves.csv", "supermask.csv"
TABLES = (ROUNDS, CURVES, UNTRAINED, LEARNED)  # aggregate's: UNTRAINED gathers every seed's
# aggregate's too, only when an experiment asks for stability (plan.tables): barriers, paths
STABILITY_BARRIERS, STABILITY_PATHS = "stability.csv", "stability_path.csv"
STABILITY_TABLES = (STABILITY_BARRIERS, STABILITY_PATHS)
# aggregate's views for dvc: results/metrics/<experiment>.json, results/plots/<experiment>/*.csv
METRICS_DIR, PLOTS_DIR = "metrics", "plots"
PLOT_CURVES, PLOT_EARLY_STOP = "curves.csv", "early_stop.csv"
REPORT = "report.md"
CHECKED = "checked.txt"  # dvc's `check` stage: params.yaml and dvc.yaml agree (plan.check_stage)
# not an output: a training's resumable state, removed when the training is done
CHECKPOINT = "checkpoint.safetensors"

# Directories whose name tells apart stages that write files of the same name
ROUND0 = "round00"
REINIT, RANDOM = "reinit", "random"  # the controls' branches of a round
SUPERMASK = "supermask"
STABILITY = "stability"  # runs/<exp>/seed<s>/stability/round<rr>/k<k>/
RAW, PREPARED = "data/raw", "data/prepared"
RESULTS = "results"

# What each stage writes, as the end of each file's path: its name, under the directory
# that tells it apart where another stage writes a file of that name.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "check": (f"{RESULTS}/{CHECKED}",),  # under dvc only: Snakemake reads params.yaml itself
    "data": (f"{RAW}/*", f"{PREPARED}/*.safetensors"),  # one of each per dataset
    "init": (THETA0, f"{ROUND0}/{MASK}", f"{ROUND0}/{SPARSITY}"),
    "train": (TRAINED, REWIND, CURVE, METRICS),
    "prune": (MASK, SPARSITY),
    "reset": (TICKET,),
    "reinit": (f"{REINIT}/{TICKET}",),
    "shuffle": (f"{RANDOM}/{MASK}", f"{RANDOM}/{SPARSITY}"),
    "untrained": (UNTRAINED,),
    "supermask": (f"{SUPERMASK}/{SCORES}", f"{SUPERMASK}/{CURVE}", f"{SUPERMASK}/{METRICS}"),
    "stability": (COPY_A, COPY_B, INTERPOLATION, INSTABILITY),
    "aggregate": (*(f"{RESULTS}/{t}" for t in TABLES + STABILITY_TABLES), f"{RESULTS}/{METRICS_DIR}/*.json",
                  *(f"{RESULTS}/{PLOTS_DIR}/*/{f}" for f in (PLOT_CURVES, PLOT_EARLY_STOP))),
    "figures": (f"{RESULTS}/figures/*",),  # one per figure and format (plan.figure_files)
    "report": (f"{RESULTS}/{REPORT}",),
}


def names(stage: str) -> tuple[str, ...]:
    """The names of the files a stage writes (into the directory it is given)."""
    return tuple(PurePath(end).name for end in OUTPUTS[stage])


def made_by(path: str | PurePath) -> str:
    """The stage that writes a file (for error messages): the one of OUTPUTS whose entry
    matches the longest end of its path; "unknown" for a name no stage writes."""
    path = PurePath(path)
    matches = [(len(PurePath(end).parts), stage) for stage, ends in OUTPUTS.items() for end in ends
               if path.match(end)]
    return max(matches)[1] if matches else "unknown"
