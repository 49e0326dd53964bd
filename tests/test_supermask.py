import json

import numpy as np
import pandas as pd
import pytest
import torch

from lth import loop, masks, models, outputs, pruning, reset, supermask
from lth.artifacts import load_arrays, save_arrays
from lth.params import (
    DataParams,
    Experiment,
    LearnedParams,
    ModelParams,
    PruneParams,
    ResetParams,
    RuntimeParams,
    SupermaskParams,
    TrainParams,
    UntrainedParams,
)
from lth.params import experiment as parse_experiment

RUNTIME = RuntimeParams(device="cpu", threads=1)
DATA = DataParams(validation_size=60, split_seed=0)  # what made the `prepared` fixture, as params
RATES = {"fc": 0.5, "output": 0.2}


def experiment(untrained=None, learned=None):
    return Experiment(name="z", dataset="mnist", model=ModelParams("lenet_300_100"),
                      train=TrainParams(lr=1.2e-3, batch_size=20, iterations=40, eval_every=10),
                      prune=PruneParams("one_shot", "layerwise", "large_final", RATES, 2),
                      reset=ResetParams(0, "original"), supermask=SupermaskParams(untrained, learned))


@pytest.fixture
def weights(tmp_path):
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    rng = np.random.default_rng(5)  # stand-in "trained" weights: theta_0 plus noise
    trained = {n: (w + rng.normal(0, 0.05, w.shape)).astype(np.float32) for n, w in theta0.items()}
    save_arrays(tmp_path / "theta0.safetensors", theta0)
    save_arrays(tmp_path / "trained.safetensors", trained)
    return theta0, trained


def test_untrained_evaluates_every_criterion_action_and_percent(tmp_path, prepared, weights):
    theta0, trained = weights
    ask = UntrainedParams(criteria=("large_final", "small_init"), actions=("original", "signed_constant"),
                          rates=RATES, steps=2)
    out = tmp_path / "untrained.csv"
    supermask.run_untrained(experiment(untrained=ask), RUNTIME, DATA, prepared, tmp_path / "theta0.safetensors",
                            tmp_path / "trained.safetensors", out, seed=0)
    table = pd.read_csv(out)
    assert len(table) == 2 * 3 * 2 and list(table.columns) == list(supermask.UNTRAINED_COLUMNS)
    # every criterion reaches the same percent at the same step; percents fall with the steps
    percents = table.groupby(["steps", "criterion"])["percent_remaining"].first().unstack()
    assert (percents["large_final"] == percents["small_init"]).all()
    assert percents["large_final"].is_monotonic_decreasing and percents.loc[0, "large_final"] == 100
    # one row recomputed by hand: theta_0 with signed constants under a large_final mask, 1 step
    mask = pruning.prune(trained, masks.dense(theta0), RATES, "large_final", initial=theta0, steps=1)
    model = models.load_arrays_into(models.build("lenet_300_100", (1, 28, 28), 10),
                                    reset.ticket(theta0, mask, "signed_constant")).eval()
    splits = loop.load_splits(prepared, torch.device("cpu"))
    row = table[(table.criterion == "large_final") & (table.action == "signed_constant") & (table.steps == 1)]
    assert row["test_accuracy"].item() == loop.evaluate(model, splits["test"])[1]
    assert row["validation_loss"].item() == pytest.approx(loop.evaluate(model, splits["validation"])[0], rel=1e-12)


def test_straight_through_gradient_of_a_bernoulli_mask():
    model = models.build("lenet_300_100", (1, 28, 28), 10)
    theta0 = models.state_arrays(model)
    sm = supermask.Supermask(model, theta0, torch.device("cpu"), torch.Generator().manual_seed(0))
    with torch.no_grad():
        sm.scores["fc1.weight"].normal_()
    mask = sm.sample(straight_through=True)
    m = mask["fc1.weight"]
    assert set(torch.unique(m.detach()).tolist()) <= {0.0, 1.0}
    c = torch.randn_like(m)
    (m * c).sum().backward()
    p = torch.sigmoid(sm.scores["fc1.weight"].detach())
    # d mask / d score is taken as d p / d score = p (1 - p)
    assert torch.allclose(sm.scores["fc1.weight"].grad, c * p * (1 - p))


def learned(iterations=60):
    return LearnedParams(iterations=iterations, batch_size=20, lr=300.0, momentum=0.9, weights="signed_constant",
                         eval_every=20, samples=3)


def test_learned_supermask_trains_scores_not_weights_and_is_reproducible(tmp_path, prepared, weights):
    e = experiment(learned=learned())
    a = supermask.run(e, RUNTIME, DATA, prepared, tmp_path / "theta0.safetensors", tmp_path / "a", seed=3)
    b = supermask.run(e, RUNTIME, DATA, prepared, tmp_path / "theta0.safetensors", tmp_path / "b", seed=3)
    assert a == b
    made = json.loads((tmp_path / "a" / outputs.METRICS).read_text())  # how it was made, parsed back
    assert parse_experiment(e.name, made["params"]["experiment"]) == e and made["provenance"]["seed"] == 3
    assert (tmp_path / "a" / "curve.csv").read_bytes() == (tmp_path / "b" / "curve.csv").read_bytes()
    scores = load_arrays(tmp_path / "a" / "scores.safetensors", "supermask")
    assert set(scores) == {n for n in weights[0] if masks.is_prunable(n)}
    assert all(np.any(s != 0) for s in scores.values())  # scores moved from their start at 0
    curve = pd.read_csv(tmp_path / "a" / "curve.csv")
    assert list(curve["iteration"]) == [0, 20, 40, 60]
    assert curve.loc[0, "percent_expected"] == 50.0  # sigmoid(0) everywhere
    # masking alone makes the frozen network learn this data (chance is 0.1)
    assert a["final_sampled_test_accuracy"] > 0.5 > curve.loc[0, "sampled_test_accuracy"]
    stop = curve.loc[curve["sampled_validation_loss"].idxmin()]
    assert a["early_stop_iteration"] == stop["iteration"]
