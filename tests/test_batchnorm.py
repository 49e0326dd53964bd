"""BatchNorm through a lineage: never pruned, reset with the weights, its running statistics
in every artifact and checkpoint, evaluation with them. A tiny ResNet runs the `lth` stage
commands (init, train, prune, reset, reinit, train) on the synthetic 28x28x1 data."""

import json

import numpy as np
import pytest
import torch
import yaml

from lth import loop, masks, models, train
from lth.artifacts import load_arrays
from lth.checkpoint import Checkpoint
from lth.cli import main
from lth.params import TrainParams

MODEL = "resnet8_4"  # 4, 8 and 16 filters, a block per stage: seconds on a CPU
PARAMS = {
    "seeds": [0],
    "runtime": {"device": "cpu", "threads": 1},
    "data": {"normalize": "standardize", "validation_size": 60, "split_seed": 0, "train_subset": None,
             "test_subset": None},
    "experiments": {"deep": {
        "dataset": "mnist",
        "model": {"name": MODEL, "init": "kaiming_normal"},
        "train": {"lr": 0.01, "batch_size": 20, "iterations": 12, "eval_every": 4},
        "prune": {"schedule": "iterative", "scope": "global", "criterion": "large_final",
                  "rates": {"conv": 0.2, "output": 0.0}, "rounds": 1},
        "reset": {"rewind_iteration": 4, "kept": "original", "pruned": "zero"},
        "controls": ["reinit"],
    }},
    "figures": {"formats": ["png"], "dpi": 60, "curve_percents": [100]},
}


def batchnorm(arrays):
    return {n: a for n, a in arrays.items() if masks.is_batchnorm(n)}


def same(a, b):
    return set(a) == set(b) and all(np.array_equal(a[n], b[n]) for n in a)


def test_a_resnet_lineage_through_the_stage_commands(tmp_path, prepared):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    p = ["--params", str(tmp_path / "params.yaml"), "--experiment", "deep"]
    f = {k: str(tmp_path / v) for k, v in {
        "theta0": "theta0.safetensors", "r0": "round00", "mask0": "round00/mask.safetensors",
        "trained0": "round00/trained.safetensors", "rewind": "round00/rewind.safetensors",
        "r1": "round01", "mask1": "round01/mask.safetensors", "ticket1": "round01/ticket.safetensors",
        "reinit": "round01/reinit/ticket.safetensors"}.items()}
    assert main(["init", *p, "--seed", "0", "--out", f["theta0"], "--mask", f["mask0"]]) == 0
    assert main(["train", *p, "--seed", "0", "--data", str(prepared), "--ticket", f["theta0"], "--mask", f["mask0"],
                 "--out", f["r0"]]) == 0
    assert main(["prune", *p, "--steps", "1", "--initial", f["rewind"], "--trained", f["trained0"],
                 "--mask", f["mask0"], "--out", f["mask1"]]) == 0
    assert main(["reset", *p, "--seed", "1", "--theta0", f["rewind"], "--trained", f["trained0"],
                 "--mask", f["mask1"], "--out", f["ticket1"]]) == 0
    assert main(["reinit", *p, "--seed", "2", "--theta0", f["theta0"], "--mask", f["mask1"], "--out", f["reinit"]]) == 0
    assert main(["train", *p, "--seed", "0", "--data", str(prepared), "--ticket", f["ticket1"], "--mask", f["mask1"],
                 "--out", f["r1"]]) == 0
    theta0, trained0, rewind, mask1, ticket1, reinit = (
        load_arrays(f[k], "test") for k in ("theta0", "trained0", "rewind", "mask1", "ticket1", "reinit"))

    # every artifact carries the running statistics; training moved them, and the rewind point
    # holds those of iteration 4 (4 batches seen)
    for arrays in (theta0, trained0, rewind, ticket1, reinit):
        assert "blocks.1.shortcut.bn.running_var" in arrays and "bn.num_batches_tracked" in arrays
    assert theta0["bn.num_batches_tracked"].tolist() == [0] and np.all(theta0["bn.running_var"] == 1)
    assert rewind["bn.num_batches_tracked"].tolist() == [4] and trained0["bn.num_batches_tracked"].tolist() == [12]
    assert not np.array_equal(trained0["bn.running_mean"], rewind["bn.running_mean"])
    # the mask: global over conv weights, the output layer whole, no BatchNorm; the report counts no BatchNorm
    assert not batchnorm(mask1) and mask1["output.weight"].all()
    sparsity = json.loads((tmp_path / "round01" / "sparsity.json").read_text())
    assert sparsity["total"] == sum(m.size for m in mask1.values())
    # the ticket: BatchNorm (scale, shift, statistics) at the rewind point, with the weights
    assert same(batchnorm(ticket1), batchnorm(rewind))
    assert all(np.array_equal(ticket1[n][m], rewind[n][m]) and not ticket1[n][~m].any() for n, m in mask1.items())
    # the reinit control: BatchNorm at its init (Kaiming, open_lth's: a fresh U(0, 1) scale)
    for name, value in batchnorm(reinit).items():
        if name.endswith(".weight"):
            assert not np.array_equal(value, theta0[name]) and value.min() >= 0 and value.max() < 1
        else:
            assert np.array_equal(value, theta0[name]), name

    # round 1 trained its BatchNorm (not masked) and kept its pruned weights at zero
    trained1 = load_arrays(tmp_path / "round01" / "trained.safetensors", "train")
    assert not np.array_equal(trained1["bn.weight"], ticket1["bn.weight"])
    assert all(not trained1[n][~m].any() for n, m in mask1.items())
    # evaluation used the running statistics (eval mode): the curve's last test loss is the
    # loaded network's in eval mode, and batch statistics would give another
    splits = loop.load_splits(prepared, torch.device("cpu"))
    model = models.load_arrays_into(models.build(MODEL, (1, 28, 28), 10), trained1)
    curve = (tmp_path / "round01" / "curve.csv").read_text().splitlines()
    last_test_loss = float(curve[-1].split(",")[5])
    assert loop.evaluate(model.eval(), splits["test"])[0] == last_test_loss
    assert loop.evaluate(model.train(), splits["test"])[0] != pytest.approx(last_test_loss)
    metrics = json.loads((tmp_path / "round01" / "metrics.json").read_text())
    assert metrics["weights_total"] == sparsity["total"] and metrics["params"]["experiment"]["model"]["init"] == \
        "kaiming_normal"


def test_a_checkpointed_batchnorm_training_resumes_bit_identical(tmp_path, prepared, capsys):
    """The running statistics are part of the checkpoint: a resumed training ends with the
    same weights and statistics as an uninterrupted one."""
    theta0 = models.make_theta0(MODEL, "mnist", seed=0)
    splits = loop.load_splits(prepared, torch.device("cpu"))
    params = TrainParams(1e-2, 20, 20, 5)
    results = []
    for _ in range(2):  # the first leaves iteration 14's checkpoint
        model = models.load_arrays_into(models.build(MODEL, (1, 28, 28), 10), theta0)
        mask = {n: torch.ones(w.shape) for n, w in theta0.items() if masks.is_prunable(n)}
        checkpoint = Checkpoint(tmp_path / "checkpoint.safetensors", 7, "f")
        curve, snapshot = train.train(model, mask, splits, params, seed=3, progress=False, checkpoint=checkpoint,
                                      snapshot_at=4)
        results.append((curve, models.state_arrays(model), snapshot))
    (first, first_weights, first_rewind), (resumed, resumed_weights, resumed_rewind) = results
    assert f"resumed from {checkpoint.path} at iteration 14" in capsys.readouterr().out
    assert json.dumps(resumed) == json.dumps(first)
    assert same(first_weights, resumed_weights) and same(first_rewind, resumed_rewind)
    assert first_weights["bn.num_batches_tracked"].tolist() == [20]
    assert first_rewind["bn.num_batches_tracked"].tolist() == [4]
