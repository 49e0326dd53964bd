import hashlib
import json
import math
import re

import numpy as np
import pytest
import torch

from lth import LthError, loop, masks, models, optim, outputs, pruning, reset, train
from lth.artifacts import load_arrays, save_arrays
from lth.checkpoint import Checkpoint
from lth.params import DataParams, Experiment, ModelParams, PruneParams, ResetParams, RuntimeParams, TrainParams
from lth.params import experiment as parse_experiment

PARAMS = TrainParams(lr=1.2e-3, batch_size=20, iterations=40, eval_every=10)
RUNTIME = RuntimeParams(device="cpu", threads=1)
DATA = DataParams(validation_size=60, split_seed=0)  # what made the `prepared` fixture, as params


def experiment(rewind=0):
    return Experiment(name="t", dataset="mnist", model=ModelParams("lenet_300_100"), train=PARAMS,
                      prune=PruneParams("iterative", "layerwise", "large_final", {"fc": 0.2, "output": 0.1}, 1),
                      reset=ResetParams(rewind_iteration=rewind, kept="original"))


def half_mask(theta0):
    rng = np.random.default_rng(3)
    return {n: rng.random(w.shape) < 0.5 for n, w in theta0.items() if masks.is_prunable(n)}


def test_pruned_weights_and_their_adam_state_stay_exactly_zero(prepared):
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    mask_np = half_mask(theta0)
    model = models.load_arrays_into(models.build("lenet_300_100", (1, 28, 28), 10),
                                    reset.ticket(theta0, mask_np))
    splits = loop.load_splits(prepared, torch.device("cpu"))
    mask = {n: torch.from_numpy(m).float() for n, m in mask_np.items()}
    params = dict(model.named_parameters())
    masked = [(params[n], m) for n, m in mask.items()]
    optimizer = optim.build(model.parameters(), TrainParams(lr=0.01, batch_size=20, iterations=5, eval_every=5))
    for i in range(5):
        idx = torch.arange(i * 20, i * 20 + 20)
        train.step(model, optimizer, masked, splits["train"].images[idx], splits["train"].labels[idx])
        for name, m in mask_np.items():
            p = params[name]
            state = optimizer.state[p]
            assert torch.all(p.detach()[~torch.from_numpy(m)] == 0), f"{name} pruned weight moved"
            assert torch.all(state["exp_avg"][~torch.from_numpy(m)] == 0)
            assert torch.all(state["exp_avg_sq"][~torch.from_numpy(m)] == 0)
            # and the survivors do learn
            assert not torch.equal(p.detach()[torch.from_numpy(m)],
                                   torch.from_numpy(theta0[name][m]))


def test_early_stop_is_the_first_minimum_of_validation_loss():
    losses = [2.0, 0.9, 0.5, 0.7, 0.5, 0.6]
    curve = [{"iteration": 100 * i, "validation_loss": v, "test_accuracy": 0.9 + i / 100}
             for i, v in enumerate(losses)]
    stop = train.early_stop(curve)
    assert stop["iteration"] == 200 and stop["test_accuracy"] == pytest.approx(0.92)


def run_round(tmp_path, prepared, name, mask_np=None, rewind=0, pruned="zero"):
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    mask_np = mask_np if mask_np is not None else masks.dense(theta0)
    save_arrays(tmp_path / f"{name}-ticket.safetensors", reset.ticket(theta0, mask_np, pruned=pruned))
    masks.save(tmp_path / f"{name}-mask.safetensors", mask_np)
    out = tmp_path / name
    metrics = train.run(experiment(rewind), RUNTIME, DATA, prepared, tmp_path / f"{name}-ticket.safetensors",
                        tmp_path / f"{name}-mask.safetensors", out, seed=7)
    return out, metrics


def digest(directory):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir())}


def test_same_params_and_seed_give_bit_identical_outputs(tmp_path, prepared):
    a, _ = run_round(tmp_path, prepared, "a")
    b, _ = run_round(tmp_path, prepared, "b")
    assert digest(a) == digest(b)
    assert set(digest(a)) == set(outputs.names("train"))


def test_metrics_record_the_params_they_were_made_with(tmp_path, prepared):
    """A metrics.json found on disk says how it was made: its experiment's whole section (it
    parses back to the experiment) and what the training used of runtime, data and seeds."""
    out, _ = run_round(tmp_path, prepared, "made", rewind=13)
    recorded = json.loads((out / outputs.METRICS).read_text())
    made = recorded["params"]
    assert parse_experiment(made["experiment"]["name"], made["experiment"]) == experiment(rewind=13)
    assert RuntimeParams(**made["runtime"]) == RUNTIME and DataParams(**made["data"]) == DATA
    assert made["seed"] == recorded["provenance"]["seed"] == 7
    # how it was computed: TF32 off (runtime.tf32's default), the eager loop (the CPU never graphs)
    assert recorded["provenance"]["tf32"] is False and recorded["provenance"]["loop"] == "eager"


def test_run_writes_curve_and_metrics_and_respects_the_mask(tmp_path, prepared):
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    mask_np = pruning.prune(theta0, masks.dense(theta0), {"fc": 0.8, "output": 0.5})
    out, metrics = run_round(tmp_path, prepared, "sparse", mask_np)
    assert metrics["percent_remaining"] == pytest.approx(masks.report(mask_np)["percent_remaining"])
    lines = (out / "curve.csv").read_text().splitlines()
    assert lines[0].startswith("iteration,train_loss")
    assert [int(line.split(",")[0]) for line in lines[1:]] == [0, 10, 20, 30, 40]
    rows = [dict(zip(lines[0].split(","), line.split(","), strict=True)) for line in lines[1:]]
    best = min(rows, key=lambda r: float(r["validation_loss"]))
    assert metrics["early_stop_iteration"] == int(best["iteration"])
    assert metrics["early_stop_test_accuracy"] == pytest.approx(float(best["test_accuracy"]))
    assert metrics["final_train_accuracy"] > 0.3  # well above chance (0.1) on learnable data
    assert not math.isnan(metrics["final_train_loss"])
    from lth.artifacts import load_arrays
    trained = load_arrays(out / "trained.safetensors", "train")
    for name, m in mask_np.items():
        assert np.all(trained[name][~m] == 0)


def test_rewind_point_is_the_weights_at_iteration_k(tmp_path, prepared):
    """Late resetting: the rewind artifact equals a fresh run stopped after k iterations."""
    from lth.artifacts import load_arrays

    full, _ = run_round(tmp_path, prepared, "full", rewind=13)
    rewind = load_arrays(full / "rewind.safetensors", "train")
    short = experiment(rewind=13)
    short = Experiment(**{**short.__dict__, "train": TrainParams(**{**PARAMS.__dict__, "iterations": 13,
                                                                     "eval_every": 13})})
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    train.run(short, RUNTIME, DATA, prepared, tmp_path / "full-ticket.safetensors", tmp_path / "full-mask.safetensors",
              tmp_path / "short", seed=7)
    after_13 = load_arrays(tmp_path / "short" / "trained.safetensors", "train")
    for name in theta0:
        assert np.array_equal(rewind[name], after_13[name])
        assert not np.array_equal(rewind[name], theta0[name]) or name.endswith("bias")
    # the reset of a later round starts the survivors from that point
    mask = pruning.prune(load_arrays(full / "trained.safetensors", "train"), masks.dense(theta0),
                         {"fc": 0.5, "output": 0.5})
    ticket = reset.ticket(rewind, mask)
    m = mask["fc1.weight"]
    assert np.array_equal(ticket["fc1.weight"][m], after_13["fc1.weight"][m])


def test_frozen_pruned_weights_stay_at_their_initial_values(tmp_path, prepared):
    """Mask-0 action freeze_init: pruned weights are nonzero, take part in the forward pass,
    and never move; the kept weights learn."""
    from lth.artifacts import load_arrays

    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    mask_np = half_mask(theta0)
    out, metrics = run_round(tmp_path, prepared, "frozen", mask_np, pruned="freeze_init")
    zeroed, _ = run_round(tmp_path, prepared, "zeroed", mask_np)
    trained = load_arrays(out / "trained.safetensors", "train")
    for name, m in mask_np.items():
        assert np.array_equal(trained[name][~m], theta0[name][~m]) and np.any(trained[name][~m] != 0)
        assert not np.array_equal(trained[name][m], theta0[name][m])
    # the frozen weights change what the network computes
    assert (out / "curve.csv").read_text() != (zeroed / "curve.csv").read_text()


@pytest.mark.parametrize("keep", [1.0, 0.05])
def test_the_curve_follows_the_trained_network(prepared, keep):
    """Training evaluates from the LeNet step's own tensors (the model's are stale until written
    back): the last curve row is what evaluating the returned model gives, dense and CSR."""
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    rng = np.random.default_rng(4)
    mask_np = {n: rng.random(w.shape) < keep for n, w in theta0.items() if masks.is_prunable(n)}
    model = models.load_arrays_into(models.build("lenet_300_100", (1, 28, 28), 10), reset.ticket(theta0, mask_np))
    mask = {n: torch.from_numpy(m).float() for n, m in mask_np.items()}
    assert train.make_step(model, mask, PARAMS).sparse_layers == ([] if keep == 1.0 else ["fc1"])
    splits = loop.load_splits(prepared, torch.device("cpu"))
    recorded = []
    curve, _ = train.train(model, mask, splits, PARAMS, seed=0, progress=False, on_record=recorded.append)
    assert recorded == curve  # each row, as it is evaluated
    model.eval()
    for split in ("validation", "test"):
        loss, accuracy = loop.evaluate(model, splits[split])
        assert curve[-1][f"{split}_loss"] == pytest.approx(loss, rel=1e-5)
        assert curve[-1][f"{split}_accuracy"] == accuracy
        assert curve[-1][f"{split}_loss"] != curve[0][f"{split}_loss"]  # it trained


def test_the_window_reports_the_mean_loss_and_accuracy_of_its_minibatches():
    """Training loss and accuracy are reduced once per window (and per fold of a full window):
    the result is the mean over every minibatch since the last evaluation."""
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(6, 10, generator=g), torch.randint(0, 10, (6,), generator=g)) for _ in range(7)]
    window = train.Window(capacity=3, batch=6, device=torch.device("cpu"))
    assert all(math.isnan(v) for v in window.take())  # before any iteration
    for logits, labels in batches[:5]:
        window.labels_slot().copy_(labels)
        window.add(logits)
    assert window.filled == 2 and window.seen == 18  # one full window folded
    loss, accuracy = window.take()
    logits, labels = torch.cat([b[0] for b in batches[:5]]), torch.cat([b[1] for b in batches[:5]])
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)
    assert accuracy == (logits.argmax(1) == labels).sum().item() / 30
    for logits, labels in batches[5:]:  # the next evaluation sees only what came after
        window.labels_slot().copy_(labels)
        window.add(logits)
    assert window.take()[1] == (torch.cat([b[0] for b in batches[5:]]).argmax(1)
                                == torch.cat([b[1] for b in batches[5:]])).sum().item() / 12


def test_a_checkpoint_in_the_middle_of_a_window_resumes_bit_identical(tmp_path, prepared, monkeypatch, capsys):
    """A checkpoint between evaluations carries the window's logits, labels and folded sums."""
    monkeypatch.setattr(train, "WINDOW_CAPACITY", 7)
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    splits = loop.load_splits(prepared, torch.device("cpu"))
    params = TrainParams(1.2e-3, 20, 300, 50)
    results = []
    for _ in range(2):  # the first leaves iteration 280's checkpoint (4 windows of 7 folded, 2 filled)
        model = models.load_arrays_into(models.build("lenet_300_100", (1, 28, 28), 10), theta0)
        mask = {n: torch.ones(w.shape) for n, w in theta0.items() if masks.is_prunable(n)}
        checkpoint = Checkpoint(tmp_path / "checkpoint.safetensors", 70, "f")
        results.append((train.train(model, mask, splits, params, seed=3, progress=False, checkpoint=checkpoint)[0],
                        models.state_arrays(model)))
    (first, first_weights), (resumed, resumed_weights) = results
    assert f"resumed from {checkpoint.path} at iteration 280" in capsys.readouterr().out
    assert load_arrays(checkpoint.path, made_by="train")["window/logits"].shape == (2, 20, 10)
    assert json.dumps(resumed) == json.dumps(first)  # train_loss and train_accuracy included
    assert first[-1]["train_loss"] != first[-2]["train_loss"]
    assert all(np.array_equal(first_weights[n], resumed_weights[n]) for n in first_weights)


def test_a_batch_larger_than_the_training_split_is_refused():
    with pytest.raises(LthError, match=r"train.batch_size = 60 .* \(50 examples\)"):
        loop.BatchOrder(50, 60, seed=0)


def test_input_normalizations():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (4, 1, 28, 28), dtype=np.uint8))
    images[3] = 0  # an all-zero image stays zero under l2 (keras.utils.normalize does the same)
    mean, std = torch.tensor([[[0.13]]]), torch.tensor([[[0.31]]])
    l2 = loop.normalized(images, "l2_per_example", mean, std)
    assert l2.dtype == torch.float32
    norms = torch.linalg.vector_norm(l2.flatten(1).double(), dim=1)
    assert torch.allclose(norms[:3], torch.ones(3, dtype=torch.float64), atol=1e-6) and norms[3] == 0
    # scale-free: the same image at half the brightness gives the same input
    assert torch.allclose(loop.normalized(images[:1] // 2 * 2, "l2_per_example", mean, std),
                          loop.normalized(images[:1] // 2, "l2_per_example", mean, std))
    assert torch.equal(loop.normalized(images, "standardize", mean, std), (images.float() / 255.0 - mean) / std)
    assert torch.equal(loop.normalized(images, "unit_range", mean, std), images.float() / 255.0)
    with pytest.raises(LthError, match="data.normalize = 'whiten'"):
        loop.normalized(images, "whiten", mean, std)


def spy_on_lrs(monkeypatch) -> list[float]:
    """The lr of every optimizer step, as the update functions receive it (the LeNet step
    calls torch's adam itself; the other steps go through optim.Adam and optim.SGD)."""
    from lth import mlp_step

    lrs = []
    for module, name in ((optim, "adam"), (optim, "sgd"), (mlp_step, "adam")):
        update = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, update=update, **kw: (lrs.append(kw["lr"]), update(*a, **kw))[1])
    return lrs


@pytest.mark.parametrize("dropout", [0.0, 0.5], ids=["lenet-step", "autograd-step"])
@pytest.mark.parametrize("optimizer, momentum", [("sgd", 0.9), ("adam", 0.0)])
@pytest.mark.parametrize("start", [0, 7])
def test_each_iteration_trains_at_the_schedules_lr(prepared, monkeypatch, dropout, optimizer, momentum, start):
    """Iteration i trains at schedule step start + i - 1: a round from theta_0 starts at step 0,
    a rewound round at the rewind iteration's step (warmup before it is not repeated). With
    dropout, LeNet trains with autograd (optim.Adam, optim.SGD); without, with its own step."""
    recipe = TrainParams(lr=0.1, batch_size=20, iterations=20, eval_every=10, optimizer=optimizer, momentum=momentum,
                         milestones=(12, 16), gamma=0.5, warmup=8)
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    model = models.load_arrays_into(models.build("lenet_300_100", (1, 28, 28), 10, dropout=dropout), theta0)
    mask = {n: torch.ones(w.shape) for n, w in theta0.items() if masks.is_prunable(n)}
    lrs = spy_on_lrs(monkeypatch)
    train.train(model, mask, loop.load_splits(prepared, torch.device("cpu")), recipe, seed=0, progress=False,
                schedule_start=start)
    # lr * gamma^(milestones passed) * min(1, step / warmup), step = start + iteration - 1
    formula = [0.1 * 0.5 ** ((t >= 12) + (t >= 16)) * min(1.0, t / 8) for t in range(start, start + 20)]
    assert lrs == pytest.approx(formula, rel=1e-15, abs=0)
    chosen = {0: {1: 0.0, 5: 0.05, 9: 0.1, 13: 0.05, 17: 0.025, 20: 0.025},
              7: {1: 0.0875, 2: 0.1, 5: 0.1, 6: 0.05, 10: 0.025, 20: 0.025}}[start]
    assert {i: lrs[i - 1] for i in chosen} == pytest.approx(chosen, rel=1e-15, abs=0)


def test_a_constant_recipe_never_touches_the_lr(prepared, monkeypatch):
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    model = models.load_arrays_into(models.build("lenet_300_100", (1, 28, 28), 10), theta0)
    mask = {n: torch.ones(w.shape) for n, w in theta0.items() if masks.is_prunable(n)}
    lrs = spy_on_lrs(monkeypatch)
    train.train(model, mask, loop.load_splits(prepared, torch.device("cpu")), PARAMS, seed=0, progress=False,
                schedule_start=7)
    assert lrs == [PARAMS.lr] * PARAMS.iterations


def train_lenet(prepared, recipe: TrainParams, seed: int, global_seed: int = 0) -> dict[str, np.ndarray]:
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    model = models.load_arrays_into(models.build("lenet_300_100", (1, 28, 28), 10), theta0)
    mask = {n: torch.ones(w.shape) for n, w in theta0.items() if masks.is_prunable(n)}
    torch.manual_seed(global_seed)
    train.train(model, mask, loop.load_splits(prepared, torch.device("cpu")), recipe, seed=seed, progress=False)
    return models.state_arrays(model)


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(a[n], b[n]) for n in a)


def test_augmented_training_is_reproducible_and_seeded_by_its_seed_alone(prepared):
    """The augmentation draws come from the training's seed (not torch's global generator):
    the same seed gives the same weights whatever the global state, another seed others."""
    recipe = TrainParams(lr=0.05, batch_size=20, iterations=12, eval_every=6, optimizer="sgd", momentum=0.9,
                         augment=True)
    a = train_lenet(prepared, recipe, seed=1, global_seed=0)
    assert same(a, train_lenet(prepared, recipe, seed=1, global_seed=123))
    assert not same(a, train_lenet(prepared, recipe, seed=2))
    assert not same(a, train_lenet(prepared, TrainParams(**{**recipe.__dict__, "augment": False}), seed=1))


@pytest.mark.parametrize("dropout", [0.0, 0.5])  # the LeNet step (which computes no loss), autograd
def test_a_training_whose_loss_is_no_longer_finite_stops_naming_iteration_and_lr(prepared, dropout):
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    model = models.load_arrays_into(models.build("lenet_300_100", (1, 28, 28), 10, dropout=dropout), theta0)
    mask = {n: torch.ones(w.shape) for n, w in theta0.items() if masks.is_prunable(n)}
    splits = loop.load_splits(prepared, torch.device("cpu"))
    params = TrainParams(lr=1e12, batch_size=20, iterations=40, eval_every=10)
    with pytest.raises(LthError, match=r"^training diverged at iteration 10 \(loss nan\): lower train.lr \(now 1e\+12\)$"):
        train.train(model, mask, splits, params, seed=0)


def test_lth_train_exits_with_the_divergence_and_no_traceback(tmp_path, prepared, tiny_params, capsys):
    """Through the command, as a stage runs it: a ticket whose logits overflow diverges at once."""
    import yaml

    from lth.cli import main

    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    save_arrays(tmp_path / "ticket.safetensors", {n: w * 1e30 for n, w in theta0.items()})
    masks.save(tmp_path / "mask.safetensors", masks.dense(theta0))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params))
    code = main(["train", "--params", str(tmp_path / "params.yaml"), "--experiment", "tiny", "--seed", "0",
                 "--data", str(prepared), "--ticket", str(tmp_path / "ticket.safetensors"),
                 "--mask", str(tmp_path / "mask.safetensors"), "--out", str(tmp_path / "round00")])
    err = capsys.readouterr().err
    assert code == 1 and "lth train: error: training diverged at iteration 10 (loss nan)" in err
    assert "Traceback" not in err and not (tmp_path / "round00" / "trained.safetensors").exists()


def test_a_training_whose_output_is_a_pipe_prints_progress_lines(tmp_path, prepared, tiny_params, capsys):
    """`lth train > log` (as Snakemake and SLURM run it): a line at the first evaluation and then
    whenever `runtime.progress_every` seconds have passed, here at every evaluation."""
    import subprocess
    import sys

    import yaml

    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    save_arrays(tmp_path / "ticket.safetensors", theta0)
    masks.save(tmp_path / "mask.safetensors", masks.dense(theta0))
    tiny_params["runtime"]["progress_every"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params))
    result = subprocess.run(
        [sys.executable, "-m", "lth.cli", "train", "--params", "params.yaml", "--experiment", "tiny", "--seed", "0",
         "--data", str(prepared), "--ticket", "ticket.safetensors", "--mask", "mask.safetensors", "--out", "r0"],
        cwd=tmp_path, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert [line.split(",")[0] for line in lines[:-1]] == [f"train: iteration {i}/30" for i in (0, 10, 20, 30)]
    assert re.fullmatch(r"train: iteration 20/30, validation loss \d\.\d{4}, test accuracy [01]\.\d{4}, "
                        r"[\d.]+ it/s, about \d+ s left", lines[2]), lines[2]
    assert lines[-1].startswith("train: 100.0% remaining") and not result.stderr  # no bar where no terminal
    # the default, every 30 s: a short training shows its first evaluation only
    model = models.load_arrays_into(models.build("lenet_300_100", (1, 28, 28), 10), theta0)
    mask = {n: torch.ones(w.shape) for n, w in theta0.items() if masks.is_prunable(n)}
    train.train(model, mask, loop.load_splits(prepared, torch.device("cpu")), PARAMS, seed=0)
    assert [line.split(",")[0] for line in capsys.readouterr().out.splitlines()] == ["train: iteration 0/40"]


def test_normalizing_in_chunks_gives_the_whole_split_s_bits(monkeypatch):
    """loop.normalized works NORMALIZE_ROWS examples at a time; the inputs are those of the
    formulas applied to the whole split at once, bit for bit (chunks of 3 of 10 examples)."""
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.integers(0, 256, (10, 1, 28, 28), dtype=np.uint8))
    images[4] = 0
    mean, std = torch.tensor([[[0.1307]]]), torch.tensor([[[0.3081]]])
    x = images.double()
    norms = torch.linalg.vector_norm(x.flatten(1), dim=1)
    norms[norms == 0] = 1.0
    whole = {"l2_per_example": (x / norms.view(-1, 1, 1, 1)).float(),
             "standardize": (images.float() / 255.0 - mean) / std, "unit_range": images.float() / 255.0}
    monkeypatch.setattr(loop, "NORMALIZE_ROWS", 3)
    threads = torch.get_num_threads()
    for how, expected in whole.items():
        assert torch.equal(loop.normalized(images, how, mean, std), expected), how
    assert torch.get_num_threads() == threads  # it works on one thread, then gives them back
