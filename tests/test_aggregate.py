"""aggregate's views for DVC: compact metrics per experiment and the plot tables."""

import json

import pandas as pd
import yaml
from conftest import REPO, columns

from lth import aggregate, architectures, plan, pruning
from lth.params import from_dict


def synthetic_tables(p) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every training of the plan with its real percent remaining; made-up results."""
    rounds, curves = [], []
    for e, seed, k, branch, _ in plan.trained_dirs(p):
        sizes = {f"{layer.name}.weight": layer.weights for layer in architectures.dataset_layers(e.model.name, e.dataset)}
        percent = pruning.percent_ladder(sizes, e.prune.rates, e.prune.rounds)[k]
        keys = {"experiment": e.name, "seed": seed, "round": k, "branch": branch, "percent_remaining": percent}
        rounds.append({**keys, "early_stop_iteration": 100 * (k + 1), "early_stop_test_accuracy": 0.9 + k / 1000})
        curves += [{**keys, "iteration": i, "test_accuracy": 0.5 + i / 1000} for i in (0, 100)]
    return pd.DataFrame(rounds), pd.DataFrame(curves)


def test_the_main_jobs_dvc_metrics_and_params_fit_40_columns():
    """`dvc exp show` shows Experiment and Created, the metrics, then every key of params.yaml
    (then one column per file dependency, which docs/operations.md's `--drop` removes): for the
    main job, tickets and reinit at the first, middle and last of Fig. 3's rounds, 40 columns."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    p = from_dict(raw)
    metrics, _, _ = aggregate.views(p, *synthetic_tables(p))["lenet_mnist"]
    assert list(metrics) == ["100%", "21.1%", "3.6%"]
    assert list(metrics["21.1%"]) == ["ticket", "reinit"] and list(metrics["100%"]) == ["ticket"]
    assert columns(metrics)[:2] == ["100%.ticket.iteration", "100%.ticket.test_accuracy"]
    assert len(columns(metrics)) == 10 and 2 + len(columns(metrics)) + len(columns(raw)) <= 40


def test_views_are_means_over_trials_at_the_fig3_rounds(tiny_params):
    tiny_params["seeds"] = [0, 1]
    tiny_params["experiments"]["tiny"]["controls"] = ["reinit"]
    p = from_dict(tiny_params)
    rounds, curves = synthetic_tables(p)
    rounds.loc[rounds.seed == 1, "early_stop_test_accuracy"] += 0.02
    metrics, during, early_stop = aggregate.views(p, rounds, curves)["tiny"]
    assert json.loads(json.dumps(metrics)) == {
        "100%": {"ticket": {"iteration": 100, "test_accuracy": 0.91}},
        "64.1%": {"ticket": {"iteration": 300, "test_accuracy": 0.912}, "reinit": {"iteration": 300,
                                                                                   "test_accuracy": 0.912}}}
    # the curves plot: the same rounds, one line per percent remaining, each branch
    assert list(dict.fromkeys(during.line)) == ["100%", "64.1%"] and set(during.branch) == {"ticket", "reinit"}
    # the early-stop plot: every round, ticket then reinit, as the legend reads them
    assert list(early_stop.columns) == ["line", "branch", "percent_remaining", "early_stop_iteration", "test_accuracy"]
    assert list(early_stop.line) == ["winning ticket"] * 3 + ["random reinit"] * 2
