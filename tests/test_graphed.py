"""The graph-shaped LeNet loop (graphed.py), run eagerly on the CPU: the eager loop's bits.

On CUDA the same functions are captured and replayed (benchmarks/device_check.py checks that
on a GPU); here they run as plain calls, so every test runs without a GPU."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lth import graphed, loop, masks, models, train
from lth.artifacts import load_arrays, save_arrays
from lth.checkpoint import Checkpoint
from lth.params import TrainParams

CUDA, CPU = SimpleNamespace(type="cuda"), torch.device("cpu")
ADAM = TrainParams(lr=1.2e-3, batch_size=20, iterations=45, eval_every=10)


@pytest.fixture
def splits(tmp_path):
    """Synthetic MNIST-shaped splits; validation and test longer than one evaluation chunk
    (ragged), so the float64 loss sum adds several chunks."""
    rng = np.random.default_rng(1)
    arrays = {"normalization": np.array([[0.1], [0.3]])}
    for split, n in (("train", 300), ("validation", 2300), ("test", 1100)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 50, (n, 1, 28, 28)).astype(np.uint8)
        images[np.arange(n), 0, labels, labels] = 255
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.astype(np.int64)
    save_arrays(tmp_path / "data.safetensors", arrays)
    return loop.load_splits(tmp_path / "data.safetensors", CPU)


def lenet(keep: float = 1.0, dropout: float = 0.0):
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    rng = np.random.default_rng(3)
    mask_np = {n: rng.random(w.shape) < keep for n, w in theta0.items() if masks.is_prunable(n)}
    weights = {n: w * mask_np[n] if n in mask_np else w for n, w in theta0.items()}
    model = models.load_arrays_into(models.build("lenet_300_100", (1, 28, 28), 10, dropout=dropout), weights)
    return model, {n: torch.from_numpy(m).float() for n, m in mask_np.items()}


def trained(splits, recipe, graphs, keep=1.0, **kwargs):
    model, mask = lenet(keep)
    curve, snapshot = train.train(model, mask, splits, recipe, seed=5, progress=False, graphs=graphs, **kwargs)
    return json.dumps(curve), models.state_arrays(model), snapshot


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("recipe, keep, capacity", [
    (ADAM, 1.0, train.WINDOW_CAPACITY),
    (ADAM, 0.5, 4),  # masked dense layers; windows fold between evaluations
    (TrainParams(lr=0.05, batch_size=20, iterations=45, eval_every=10, optimizer="sgd", momentum=0.9), 1.0, 7),
])
def test_the_graph_shaped_loop_gives_the_eager_loops_bits(splits, monkeypatch, recipe, keep, capacity):
    """Curve (train, validation and test columns), trained weights and rewind snapshot."""
    monkeypatch.setattr(train, "WINDOW_CAPACITY", capacity)
    eager = trained(splits, recipe, graphs=False, keep=keep, snapshot_at=7)
    shaped = trained(splits, recipe, graphs=True, keep=keep, snapshot_at=7)
    assert shaped[0] == eager[0]
    assert same(shaped[1], eager[1]) and same(shaped[2], eager[2])
    assert len(json.loads(eager[0])) == 6 and not same(eager[1], eager[2])  # 0, 10, ..., 40, 45; it trained


@pytest.mark.parametrize("first, second", [(True, True), (False, True), (True, False)])
def test_a_checkpoint_inside_a_segment_resumes_with_the_same_bits(tmp_path, splits, capsys, first, second):
    """Checkpoints every 7 iterations, evaluations every 10: the checkpoint at 42 lies inside
    a segment and a window; either loop resumes the other's checkpoint."""
    checkpoint = Checkpoint(tmp_path / "checkpoint.safetensors", 7, "f")
    trained(splits, ADAM, graphs=first, checkpoint=checkpoint, snapshot_at=3)  # leaves iteration 42's
    assert len(load_arrays(checkpoint.path, made_by="train")["window/labels"]) == 2
    resumed = trained(splits, ADAM, graphs=second, checkpoint=checkpoint, snapshot_at=3)
    assert "resumed from" in capsys.readouterr().out
    uninterrupted = trained(splits, ADAM, graphs=False, snapshot_at=3)
    assert resumed[0] == uninterrupted[0]
    assert same(resumed[1], uninterrupted[1]) and same(resumed[2], uninterrupted[2])


def test_the_graphed_loop_is_taken_on_cuda_for_the_lenet_step_at_a_constant_lr_only():
    model, mask = lenet()
    assert graphed.applies(CUDA, model, mask, ADAM)
    assert not graphed.applies(CPU, model, mask, ADAM)
    for recipe in (TrainParams(1.2e-3, 20, 45, 10, milestones=(20,)), TrainParams(1.2e-3, 20, 45, 10, warmup=5),
                   TrainParams(1.2e-3, 20, 45, 10, augment=True)):
        assert not graphed.applies(CUDA, model, mask, recipe)
    assert not graphed.applies(CUDA, *lenet(dropout=0.5), ADAM)
    conv = models.build("conv2", (1, 28, 28), 10)
    assert not graphed.applies(CUDA, conv, {n: torch.ones(p.shape) for n, p in conv.named_parameters()
                                            if masks.is_prunable(n)}, ADAM)


def test_the_cpu_runs_the_eager_loop_unless_forced(splits, monkeypatch):
    made = []
    monkeypatch.setattr(graphed, "Graphed", lambda *a, **k: made.append(a) or pytest.fail("graphed on the CPU"))
    trained(splits, TrainParams(1.2e-3, 20, 5, 5), graphs=None)
    assert made == []
    with pytest.raises(ValueError, match="constant lr"):
        trained(splits, TrainParams(1.2e-3, 20, 5, 5, milestones=(2,)), graphs=True)


def test_a_segment_ends_where_the_host_acts():
    # evaluations every 10, checkpoints every 7, the snapshot at 3, 4 free window slots
    assert graphed.segment_end(0, 45, (10, 7), 3, 4) == 3
    assert graphed.segment_end(3, 45, (10, 7), 3, 4) == 7
    assert graphed.segment_end(7, 45, (10, 7), 3, 20) == 10
    assert graphed.segment_end(10, 45, (10, 7), None, 20) == 14
    assert graphed.segment_end(14, 45, (10,), None, 2) == 16
    assert graphed.segment_end(40, 45, (10,), None, 20) == 45


def test_tf32_is_set_on_cuda_from_the_param_and_never_on_the_cpu(monkeypatch):
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = matmul.allow_tf32, cudnn.allow_tf32
    try:
        matmul.allow_tf32 = cudnn.allow_tf32 = True
        loop.resolve_device("cpu", tf32=False)
        assert matmul.allow_tf32 and cudnn.allow_tf32  # the CPU has none: untouched
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert loop.resolve_device("cuda").type == "cuda"
        assert not matmul.allow_tf32 and not cudnn.allow_tf32  # off by default, cuDNN's too
        loop.resolve_device("auto", tf32=True)
        assert matmul.allow_tf32 and cudnn.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = before


def test_the_device_check_runs_its_cpu_side_without_a_gpu():
    """The script a GPU session runs must not rot where no GPU is: its CPU part runs here."""
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, str(root / "benchmarks" / "device_check.py"), "--cpu"],
                            capture_output=True, text=True, env={"PYTHONPATH": str(root / "src")}, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("bit-identical") == 2 and "device check (cpu side) passed" in result.stdout
