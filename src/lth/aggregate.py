"""The `aggregate` stage: every training's metrics and curve -> two tidy tables.

rounds.csv: one row per training (experiment, seed, round, branch) with percent remaining,
early-stop iteration and accuracies, and the experiment's criterion and mask-1/mask-0
actions. curves.csv: one row per evaluation of each training. `branch` is `ticket` for
the lineage itself and `reinit` / `random` for its controls. untrained.csv: every
masked untrained network evaluated (Zhou et al.'s supermasks); supermask.csv: one row
per learned supermask. Both are empty (header only) when no experiment asks for them.
stability.csv (one row per instability analysis: its barriers and ends) and
stability_path.csv (one row per point of each path): only when an experiment asks for them.

For dvc, per experiment (means over trials): metrics/<experiment>.json, early-stop iteration
and test accuracy at early stop of the ticket and each control at the first, middle and last
of the rounds that Fig. 3 draws (figures.curve_percents), few enough for `dvc exp show`;
plots/<experiment>/curves.csv (test accuracy during training at Fig. 3's rounds) and
early_stop.csv (every round), which dvc.yaml declares as plots.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lth import outputs, plan
from lth.artifacts import atomic_path, read, read_json, write_text
from lth.params import Params

KEYS = ["experiment", "dataset", "model", "schedule", "criterion", "kept", "pruned", "branch", "seed", "round"]
METRICS = ["percent_remaining", "early_stop_iteration", "early_stop_test_accuracy",
           "early_stop_validation_loss", "early_stop_validation_accuracy", "final_train_accuracy",
           "final_train_loss", "final_test_accuracy", "final_validation_accuracy", "iterations",
           "weights_remaining", "weights_total"]


def collect(p: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    rounds, curves = [], []
    for e, seed, k, branch, d in plan.trained_dirs(p):
        keys = {"experiment": e.name, "dataset": e.dataset, "model": e.model.name,
                "schedule": e.prune.schedule, "criterion": e.prune.criterion, "kept": e.reset.kept,
                "pruned": e.reset.pruned, "branch": branch, "seed": seed, "round": k}
        metrics = read_json(Path(d) / outputs.METRICS, made_by="train")
        made = metrics.get("provenance", {})
        rounds.append({**keys, **{m: metrics[m] for m in METRICS},
                       **{f"made_by_{k}": made.get(k) for k in ("code", "torch", "device", "threads")}})
        curve = read(Path(d) / outputs.CURVE, "train", pd.read_csv)
        curves.append(curve.assign(**keys, percent_remaining=metrics["percent_remaining"]))
    curves = pd.concat(curves, ignore_index=True)
    front = KEYS + ["percent_remaining"]
    return pd.DataFrame(rounds), curves[front + [c for c in curves.columns if c not in front]]


def collect_supermasks(p: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    untrained, learned = [], []
    for e in p.experiments.values():
        keys = {"experiment": e.name, "dataset": e.dataset, "model": e.model.name}
        for seed in p.seeds:
            if e.supermask.untrained:
                untrained.append(read(plan.untrained_table(e, seed), "untrained", pd.read_csv).assign(**keys))
            if e.supermask.learned:
                metrics = read_json(Path(plan.supermask_dir(e, seed)) / outputs.METRICS, made_by="supermask")
                # one row of numbers: its params and provenance stay in its metrics.json
                learned.append({**keys, **{k: v for k, v in metrics.items() if k not in ("params", "provenance")}})
    front = ["experiment", "dataset", "model"]
    untrained = pd.concat(untrained, ignore_index=True) if untrained else pd.DataFrame(columns=front)
    learned = pd.DataFrame(learned) if learned else pd.DataFrame(columns=front)
    return (untrained[front + [c for c in untrained.columns if c not in front]],
            learned[front + [c for c in learned.columns if c not in front]])


STABILITY_KEYS = ["experiment", "dataset", "model", "seed", "round", "percent_remaining", "rewind_iteration"]
STABILITY_METRICS = ["error_barrier", "loss_barrier", "test_error_a", "test_error_b", "highest_error",
                     "highest_error_alpha", "iterations", "copy_iterations"]


def collect_stability(p: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    barriers, paths = [], []
    for e, seed, r, k, d in plan.stability_dirs(p):
        metrics = read_json(Path(d) / outputs.INSTABILITY, made_by="stability")
        keys = {"experiment": e.name, "dataset": e.dataset, "model": e.model.name, "seed": seed, "round": r,
                "percent_remaining": metrics["percent_remaining"], "rewind_iteration": k}
        barriers.append({**keys, **{m: metrics[m] for m in STABILITY_METRICS}})
        paths.append(read(Path(d) / outputs.INTERPOLATION, "stability", pd.read_csv).assign(**keys))
    paths = pd.concat(paths, ignore_index=True)
    return pd.DataFrame(barriers), paths[STABILITY_KEYS + [c for c in paths.columns if c not in STABILITY_KEYS]]


def views(p: Params, rounds: pd.DataFrame, curves: pd.DataFrame) -> dict[str, tuple[dict, pd.DataFrame, pd.DataFrame]]:
    """Per experiment: its dvc metrics, and its curves and early-stop plot tables (means over trials)."""
    out = {}
    for e in p.experiments.values():
        mine = rounds[rounds.experiment == e.name]
        mean = mine.groupby(["round", "branch"], sort=False)[
            ["percent_remaining", "early_stop_iteration", "early_stop_test_accuracy"]].mean().reset_index()
        order = {b: i for i, b in enumerate(plan.branches(e))}
        mean = mean.sort_values(["branch", "round"], key=lambda c: c.map(order) if c.name == "branch" else c)
        mean.insert(0, "line", mean.branch.map(plan.BRANCH_LABELS))
        ticket = mean[mean.branch == "ticket"]
        chosen = plan.nearest_rounds(dict(zip(ticket["round"], ticket.percent_remaining, strict=True)),
                                     p.figures.curve_percents)
        metrics = {}
        for k in metric_rounds(chosen):
            at_k = mean[mean["round"] == k]
            label = plan.percent_label(at_k.percent_remaining.iloc[0]) + "%"
            metrics[label] = {row.branch: {"iteration": _number(row.early_stop_iteration),
                                           "test_accuracy": _number(row.early_stop_test_accuracy)}
                              for row in at_k.itertuples()}
        trained = curves[(curves.experiment == e.name) & curves["round"].isin(chosen)]
        during = trained.groupby(["round", "branch", "iteration"], sort=False)[
            ["percent_remaining", "test_accuracy"]].mean().reset_index()
        during.insert(0, "line", during.percent_remaining.map(plan.percent_label) + "%")
        out[e.name] = (metrics, during.drop(columns="round"),
                       mean.drop(columns="round").rename(columns={"early_stop_test_accuracy": "test_accuracy"}))
    return out


def metric_rounds(rounds: list[int]) -> list[int]:
    """The rounds of the dvc metrics: of Fig. 3's rounds the first, the middle and the last
    (the main job: 100, 21.1 and 3.6%, the paper's headline points), so that `dvc exp show`
    with its file columns dropped fits a terminal (docs/operations.md); all of them if three
    or fewer."""
    return rounds if len(rounds) <= 3 else [rounds[0], rounds[len(rounds) // 2], rounds[-1]]


def _number(x: float) -> float | int:
    """A mean as JSON shows it best: whole numbers without a fraction, others to 6 digits."""
    return int(x) if float(x).is_integer() else float(f"{x:.6g}")


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def run(p: Params, out_dir: Path) -> pd.DataFrame:
    rounds, curves = collect(p)
    untrained, learned = collect_supermasks(p)
    tables = [rounds, curves, untrained, learned]
    if plan.tables(p) != outputs.TABLES:
        tables += collect_stability(p)
    for name, table in zip(plan.tables(p), tables, strict=True):
        write_csv(table, out_dir / name)
    for experiment, (metrics, during, early_stop) in views(p, rounds, curves).items():
        # in the order of the rounds, not sorted: `dvc exp show` keeps the file's order
        write_text(out_dir / outputs.METRICS_DIR / f"{experiment}.json", json.dumps(metrics, indent=2) + "\n")
        write_csv(during, out_dir / outputs.PLOTS_DIR / experiment / outputs.PLOT_CURVES)
        write_csv(early_stop, out_dir / outputs.PLOTS_DIR / experiment / outputs.PLOT_EARLY_STOP)
    return rounds
