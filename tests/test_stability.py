"""The stability stage (instability analysis, Frankle et al. 2020) on the synthetic dataset."""

import numpy as np
import pandas as pd
import pytest
import torch

from lth import LthError, loop, masks, models, outputs, reset, stability, train
from lth.artifacts import load_arrays, read_json, save_arrays
from lth.params import DataParams, Experiment, ModelParams, PruneParams, ResetParams, RuntimeParams, \
    StabilityParams, TrainParams

RUNTIME = RuntimeParams(device="cpu", threads=1)
DATA = DataParams(validation_size=60, split_seed=0)  # what made the `prepared` fixture, as params


def experiment(dropout=0.0, rewind=0, points=5):
    return Experiment(name="t", dataset="mnist", model=ModelParams("lenet_300_100", dropout=dropout),
                      train=TrainParams(lr=1.2e-3, batch_size=20, iterations=30, eval_every=10),
                      prune=PruneParams("iterative", "layerwise", "large_final", {"fc": 0.2, "output": 0.1}, 1),
                      reset=ResetParams(rewind_iteration=rewind, kept="original"),
                      stability=StabilityParams(rounds=(0,), rewind_iterations=(0, 10), points=points))


def sparse_mask(theta0, density):
    """fc1 at `density` (below 10%: the LeNet step keeps it in CSR), the other layers dense."""
    rng = np.random.default_rng(5)
    mask = masks.dense(theta0)
    mask["fc1.weight"] = rng.random(theta0["fc1.weight"].shape) < density
    return mask


@pytest.fixture
def start(tmp_path):
    """theta_0 and a dense mask, as files."""
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    save_arrays(tmp_path / "theta0.safetensors", theta0)
    masks.save(tmp_path / "mask.safetensors", masks.dense(theta0))
    return tmp_path / "theta0.safetensors", tmp_path / "mask.safetensors"


def test_the_ends_of_the_path_are_the_copies_bit_for_bit_and_pruned_weights_stay():
    a = {"fc1.weight": np.array([[-0.0, 0.5], [0.1, 0.3]], np.float32), "fc1.bias": np.array([-0.0, 1.0], np.float32)}
    b = {"fc1.weight": np.array([[0.25, -0.5], [0.1, 0.7]], np.float32), "fc1.bias": np.array([0.5, 2.0], np.float32)}
    mask = {"fc1.weight": np.array([[True, True], [False, True]])}  # the pruned weight is frozen at 0.1
    for alpha, end in ((0.0, a), (1.0, b)):
        point = stability.interpolate(a, b, alpha, mask)
        assert all(point[n].tobytes() == end[n].tobytes() for n in end)  # -0.0 stays -0.0
    for alpha in (1 / 3, 0.5, 0.9):
        point = stability.interpolate(a, b, alpha, mask)
        assert point["fc1.weight"][1, 0] == np.float32(0.1)
        assert point["fc1.weight"][0, 1] == pytest.approx((1 - alpha) * 0.5 - alpha * 0.5)
        assert point["fc1.bias"][1] == pytest.approx(1 + alpha) and point["fc1.bias"].dtype == np.float32


def test_the_barrier_is_the_highest_error_minus_the_mean_of_the_ends():
    assert stability.barrier([0.02, 0.05, 0.09, 0.04]) == pytest.approx(0.09 - 0.03)
    assert stability.barrier([0.03, 0.02, 0.01]) == pytest.approx(0.03 - 0.02)  # the higher end: half the gap


@pytest.mark.parametrize("dropout, density", [(0.0, None), (0.0, 0.05), (0.5, None)])
def test_the_trunk_is_the_rounds_training_at_iteration_k(tmp_path, prepared, start, dropout, density):
    """What the copies start from is what the train stage holds at iteration k (its rewind
    snapshot), bit for bit: the same data order, dropout draws and step (dense, CSR, autograd)."""
    theta0_path, mask_path = start
    if density:  # a sparse round: the ticket under its mask
        mask = sparse_mask(load_arrays(theta0_path, "init"), density)
        masks.save(mask_path, mask)
        save_arrays(theta0_path, reset.ticket(load_arrays(theta0_path, "init"), mask))
    e = experiment(dropout=dropout, rewind=10)
    train.run(e, RUNTIME, DATA, prepared, theta0_path, mask_path, tmp_path / "round", seed=3)
    rewind = load_arrays(tmp_path / "round" / outputs.REWIND, "train")
    splits = loop.load_splits(prepared, torch.device("cpu"))
    mask = {n: torch.from_numpy(m).float() for n, m in masks.load(mask_path).items()}
    trunk = stability.segment(e, splits, load_arrays(theta0_path, "init"), mask, 0, 10, seed=3)
    assert trunk.keys() == rewind.keys()
    assert all(trunk[n].tobytes() == rewind[n].tobytes() for n in rewind)
    other = stability.segment(e, splits, load_arrays(theta0_path, "init"), mask, 0, 10, seed=4)
    assert not np.array_equal(other["fc1.weight"], trunk["fc1.weight"])  # the seed is the data order


def test_two_copies_differ_and_the_path_ends_are_their_test_errors(tmp_path, prepared, start):
    e = experiment()
    out = tmp_path / "stability"
    metrics = stability.run(e, RUNTIME, DATA, prepared, *start, out, seed=0, copy_seeds=(7, 8), k=10)
    a, b = (load_arrays(out / f, "stability") for f in (outputs.COPY_A, outputs.COPY_B))
    assert not np.array_equal(a["fc1.weight"], b["fc1.weight"])  # different data orders
    table = pd.read_csv(out / outputs.INTERPOLATION)
    assert list(table.alpha) == [0.0, 0.25, 0.5, 0.75, 1.0]
    # each end of the path is its copy, evaluated on its own: exactly the same loss and error
    model = models.build("lenet_300_100", (1, 28, 28), 10).eval()
    test = loop.load_splits(prepared, torch.device("cpu"))["test"]
    for row, copy in ((table.iloc[0], a), (table.iloc[-1], b)):
        loss, accuracy = loop.evaluate(models.load_arrays_into(model, copy), test)
        assert (row.test_loss, row.test_error) == (loss, 1 - accuracy)
    assert metrics["error_barrier"] == stability.barrier(list(table.test_error))
    assert metrics["test_error_a"] == table.test_error.iloc[0]
    assert (metrics["copy_iterations"], metrics["rewind_iteration"], metrics["copy_seeds"]) == (20, 10, [7, 8])
    written = read_json(out / outputs.INSTABILITY, "stability")
    assert written["error_barrier"] == metrics["error_barrier"]
    assert written["params"]["experiment"]["stability"]["points"] == 5


def test_the_stage_is_bit_identical_for_the_same_seeds_and_keeps_the_mask(tmp_path, prepared, start):
    theta0_path, mask_path = start
    theta0 = load_arrays(theta0_path, "init")
    mask = sparse_mask(theta0, 0.3)
    masks.save(mask_path, mask)
    save_arrays(theta0_path, reset.ticket(theta0, mask))
    e = experiment()
    for out in ("one", "two"):
        stability.run(e, RUNTIME, DATA, prepared, theta0_path, mask_path, tmp_path / out, seed=0,
                      copy_seeds=(7, 8), k=0)
    for name in outputs.names("stability"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    a = load_arrays(tmp_path / "one" / outputs.COPY_A, "stability")
    assert not a["fc1.weight"][~mask["fc1.weight"]].any()
    metrics = read_json(tmp_path / "one" / outputs.INSTABILITY, "stability")
    assert metrics["percent_remaining"] < 100 and metrics["copy_iterations"] == 30


def test_a_branch_point_beyond_the_training_is_refused(tmp_path, prepared, start):
    with pytest.raises(LthError, match="--rewind-iteration 30.*0 <= k < 30"):
        stability.run(experiment(), RUNTIME, DATA, prepared, *start, tmp_path, seed=0, copy_seeds=(7, 8), k=30)

