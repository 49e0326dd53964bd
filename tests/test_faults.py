"""Faults: a training killed with SIGKILL resumes from its checkpoint, bit-identical."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
import yaml
from conftest import BIN, TINY, Pipeline, digests, run, tool_env, write_params

from lth import loop, masks, models, outputs, pruning, reset, train
from lth.artifacts import load_arrays, save_arrays
from lth.checkpoint import Checkpoint
from lth.params import TrainParams

OUTPUTS = outputs.names("train")


# the whole recipe at once: SGD with Nesterov momentum and weight decay, warmup, a milestone, augmentation
SGD_RECIPE = {"lr": 0.05, "optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4,
              "warmup": 200, "milestones": [1000], "augment": True}


def training(tmp_path, tiny_params, prepared, name: str, iterations: int = 3000, recipe: dict | None = None,
             model: str = "lenet_300_100"):
    """A workspace for one `lth train` of `model` on the synthetic data, checkpointing every 100."""
    tiny_params["runtime"]["checkpoint_every"] = 100
    e = tiny_params["experiments"]["tiny"]
    e["train"].update(iterations=iterations, eval_every=100, **(recipe or {}))
    e["reset"]["rewind_iteration"] = 150
    if model != "lenet_300_100":  # a BatchNorm ResNet: conv and output layers only
        e["model"] = {"name": model}
        e["prune"].update(scope="global", rates={"conv": 0.2, "output": 0.0})
    ws = tmp_path / name
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump(tiny_params))
    theta0 = models.make_theta0(model, "mnist", seed=0)
    save_arrays(ws / "ticket.safetensors", theta0)
    masks.save(ws / "mask.safetensors", masks.dense(theta0))
    return ws, [str(BIN / "lth"), "train", "--experiment", "tiny", "--seed", "3", "--data", str(prepared),
                "--ticket", "ticket.safetensors", "--mask", "mask.safetensors", "--out", "out"]


@pytest.mark.parametrize(("recipe", "model"), [(None, "lenet_300_100"), (SGD_RECIPE, "resnet8_4")],
                         ids=["adam", "sgd-batchnorm-augment"])
def test_a_killed_training_resumes_bit_identical(tmp_path, tiny_params, prepared, recipe, model):
    iterations = 3000 if model == "lenet_300_100" else 1000  # a ResNet step is slower: it is mid-run longer
    ws_a, cmd = training(tmp_path, tiny_params, prepared, "uninterrupted", iterations, recipe, model)
    subprocess.run(cmd, cwd=ws_a, check=True, env=tool_env(), capture_output=True)
    ws_b, _ = training(tmp_path, tiny_params, prepared, "killed", iterations, recipe, model)
    checkpoint = ws_b / "out" / "checkpoint.safetensors"
    proc = subprocess.Popen(cmd, cwd=ws_b, env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    first = checkpoint.stat().st_mtime_ns
    while checkpoint.stat().st_mtime_ns == first and time.monotonic() < deadline:  # a later one: mid-run
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (ws_b / "out" / "metrics.json").exists()  # nothing a later stage would accept
    resumed = subprocess.run(cmd, cwd=ws_b, check=True, env=tool_env(), capture_output=True, text=True)
    assert "resumed from out/checkpoint.safetensors at iteration" in resumed.stdout
    assert int(resumed.stdout.split("at iteration ")[1].split()[0]) >= 200
    for name in OUTPUTS:
        assert (ws_b / "out" / name).read_bytes() == (ws_a / "out" / name).read_bytes(), name
    assert not checkpoint.exists()  # removed once the training is done


def test_a_damaged_or_foreign_checkpoint_is_ignored(tmp_path, tiny_params, prepared):
    ws_a, cmd = training(tmp_path, tiny_params, prepared, "clean", iterations=300)
    subprocess.run(cmd, cwd=ws_a, check=True, env=tool_env(), capture_output=True)
    ws_b, _ = training(tmp_path, tiny_params, prepared, "damaged", iterations=300)
    (ws_b / "out").mkdir()
    (ws_b / "out" / "checkpoint.safetensors").write_bytes(b"\x00" * 100)  # truncated garbage
    out = subprocess.run(cmd, cwd=ws_b, check=True, env=tool_env(), capture_output=True, text=True).stdout
    assert "ignoring checkpoint" in out and "resumed" not in out
    # a checkpoint of another training (other fingerprint) is not resumed either
    ws_c, _ = training(tmp_path, tiny_params, prepared, "foreign", iterations=300)
    leave_checkpoint(ws_c / "out" / "checkpoint.safetensors", prepared, fingerprint="another training")
    out = subprocess.run(cmd, cwd=ws_c, check=True, env=tool_env(), capture_output=True, text=True).stdout
    assert "of other inputs or params" in out
    for ws in (ws_b, ws_c):
        for name in OUTPUTS:
            assert (ws / "out" / name).read_bytes() == (ws_a / "out" / name).read_bytes(), name


def test_checkpoint_every_changes_no_result(tmp_path, tiny_params, prepared):
    results = []
    for every in (0, 100):
        ws, cmd = training(tmp_path, tiny_params, prepared, f"every{every}", iterations=300)
        params = yaml.safe_load((ws / "params.yaml").read_text())
        params["runtime"]["checkpoint_every"] = every
        (ws / "params.yaml").write_text(yaml.safe_dump(params))
        subprocess.run(cmd, cwd=ws, check=True, env=tool_env(), capture_output=True)
        results.append({n: (ws / "out" / n).read_bytes() for n in OUTPUTS})
    assert results[0] == results[1]
    assert np.all(np.array([len(v) for v in results[0].values()]) > 0)


@pytest.mark.pipeline
def test_a_params_edit_in_the_middle_of_a_snakemake_run_stops_it_cleanly(tmp_path, mnist_dir):
    pipe = Pipeline("snakemake", tmp_path / "ws", TINY, mnist_dir)
    first = pipe.path / "runs/tiny/seed0/round00/metrics.json"
    proc = subprocess.Popen(["snakemake", "--cores", "1"], cwd=pipe.path, env=pipe.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    pipe.set("figures.dpi", 61)  # any edit: the planned jobs no longer match the file
    assert proc.wait(timeout=600) != 0
    logs = "".join(f.read_text() for f in (pipe.path / "logs").rglob("*.log"))
    assert "params.yaml changed while the workflow was running" in logs
    done = digests(pipe.path, ("runs/tiny/seed0/round00",))
    rerun = pipe.repro()
    assert rerun and "train@tiny-s0-r00" not in rerun
    assert digests(pipe.path, ("runs/tiny/seed0/round00",)) == done  # finished work untouched
    assert (pipe.path / "results/report.md").exists()


def wait_for(path, proc, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), f"{path} never appeared"


@pytest.mark.parametrize("section, key, value, fails", [("train", "lr", 0.0015, True), (None, "dpi", 61, False)])
def test_a_params_edit_while_a_stage_runs_fails_that_stage_if_it_read_the_key(tmp_path, tiny_params, prepared,
                                                                               section, key, value, fails):
    """`lth train` computed from the values it read: an edit of one of its keys before it
    ends must not pass for the params of its results; an edit of a key it does not read
    (figures.dpi) changes nothing."""
    ws, cmd = training(tmp_path, tiny_params, prepared, "edited")
    proc = subprocess.Popen(cmd, cwd=ws, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(ws / "out" / "checkpoint.safetensors", proc)  # mid-run
    node = tiny_params["experiments"]["tiny"][section] if section else tiny_params["figures"]
    node[key] = value
    write_params(ws, tiny_params)
    _, err = proc.communicate(timeout=600)
    if fails:
        assert proc.returncode == 1
        assert ("lth train: error: params.yaml changed while `lth train` ran (experiments.tiny.train; "
                in err), err
    else:
        assert proc.returncode == 0, err
        assert (ws / "out" / "metrics.json").exists()


@pytest.mark.pipeline
def test_a_params_edit_in_the_middle_of_a_dvc_run_is_not_recorded_as_done(tmp_path, mnist_dir):
    """DVC records the params in the file when a stage ends: the training running during an
    edit of its learning rate fails instead of being locked as a result of the new one
    (without the check, `dvc status` then calls the stale result up to date); a rerun redoes it."""
    params = {**TINY, "runtime": {**TINY["runtime"], "checkpoint_every": 100}}
    params["experiments"] = {"tiny": {**TINY["experiments"]["tiny"],
                                      "train": {**TINY["experiments"]["tiny"]["train"], "iterations": 3000}}}
    pipe = Pipeline("dvc", tmp_path / "ws", params, mnist_dir)
    proc = subprocess.Popen(["dvc", "repro"], cwd=pipe.path, env=pipe.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for(pipe.path / "runs/tiny/seed0/round00/checkpoint.safetensors", proc)  # train@tiny-s0-r00 runs
    pipe.params["experiments"]["tiny"]["train"]["lr"] = 0.0015  # a value the running stage read
    write_params(pipe.path, pipe.params)  # dvc.yaml names keys, not values: it stays as it is
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert "params.yaml changed while `lth train` ran" in out
    status = run(["dvc", "status"], pipe.path, pipe.env).stdout
    assert "train@tiny-s0-r00" in status  # not recorded as done with the new params
    rerun = pipe.repro()
    assert "train@tiny-s0-r00" in rerun and "init@tiny-s0" not in rerun  # finished stages stand
    assert "Data and pipelines are up to date" in run(["dvc", "status"], pipe.path, pipe.env).stdout


def lenet(ticket, mask_np):
    model = models.load_arrays_into(models.build("lenet_300_100", (1, 28, 28), 10), ticket)
    return model, {n: torch.from_numpy(m).float() for n, m in mask_np.items()}


def leave_checkpoint(path, prepared, fingerprint: str, mask_np=None, iterations: int = 300):
    """Train in-process with a checkpoint every 100 iterations; the one of iteration 200 stays."""
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    mask_np = masks.dense(theta0) if mask_np is None else mask_np
    model, mask = lenet(reset.ticket(theta0, mask_np), mask_np)
    splits = loop.load_splits(prepared, torch.device("cpu"))
    checkpoint = Checkpoint(path, 100, fingerprint)
    curve, _ = train.train(model, mask, splits, TrainParams(1.2e-3, 20, iterations, 50), seed=3, progress=False,
                           checkpoint=checkpoint)
    return model, curve, checkpoint


def test_the_csr_path_resumes_bit_identical(tmp_path, prepared, capsys):
    """Below 10% density fc1 trains as CSR values with their own Adam state: resuming from a
    checkpoint restores them exactly."""
    theta0 = models.make_theta0("lenet_300_100", "mnist", seed=0)
    mask_np = pruning.prune(theta0, masks.dense(theta0), {"fc": 0.2, "output": 0.1}, steps=14)
    assert train.make_step(*lenet(reset.ticket(theta0, mask_np), mask_np), TrainParams(1e-3, 20, 1, 1)).sparse_layers == ["fc1"]
    path = tmp_path / "checkpoint.safetensors"
    first, first_curve, _ = leave_checkpoint(path, prepared, "f", mask_np)
    assert path.exists()  # iteration 200's
    capsys.readouterr()
    resumed, resumed_curve, _ = leave_checkpoint(path, prepared, "f", mask_np)
    assert f"resumed from {path} at iteration 200" in capsys.readouterr().out
    assert json.dumps(resumed_curve) == json.dumps(first_curve)
    a, b = models.state_arrays(first), models.state_arrays(resumed)
    assert all(np.array_equal(a[n], b[n]) for n in a)


def test_a_checkpoint_missing_a_part_is_ignored_before_anything_is_restored(tmp_path, prepared, capsys):
    """Right fingerprint, a part missing (an older format, say): training starts over, and the
    result is the uninterrupted one, so nothing was half-restored first."""
    path = tmp_path / "checkpoint.safetensors"
    first, first_curve, _ = leave_checkpoint(path, prepared, "f")
    arrays = load_arrays(path, made_by="train")
    del arrays["window/sums"]
    save_arrays(path, arrays)
    capsys.readouterr()
    again, again_curve, _ = leave_checkpoint(path, prepared, "f")
    assert "ignoring checkpoint" in (out := capsys.readouterr().out) and "window/sums" in out and "resumed" not in out
    assert json.dumps(again_curve) == json.dumps(first_curve)
    a, b = models.state_arrays(first), models.state_arrays(again)
    assert all(np.array_equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("recipe", [{}, SGD_RECIPE], ids=["adam", "sgd-augment"])
def test_the_autograd_path_resumes_bit_identical(tmp_path, prepared, capsys, recipe):
    """Conv-2 with dropout (autograd, one optimizer over many tensors, the dropout generator in
    the checkpoint; with SGD, its momentum buffers and the augmentation's generator) resumes
    from a checkpoint mid-window to the uninterrupted result."""
    recipe = {**recipe, "milestones": (6,), "warmup": 3} if recipe else {}
    theta0 = models.make_theta0("conv2", "mnist", seed=0)
    mask_np = pruning.prune(theta0, masks.dense(theta0), {"conv": 0.1, "fc": 0.2, "output": 0.1}, steps=1)
    splits = loop.load_splits(prepared, torch.device("cpu"))
    checkpoint = Checkpoint(tmp_path / "checkpoint.safetensors", 4, "conv")
    results = []
    for _ in range(2):  # the first leaves iteration 8's checkpoint; the second resumes from it
        model = models.load_arrays_into(models.build("conv2", (1, 28, 28), 10, dropout=0.5),
                                        reset.ticket(theta0, mask_np))
        mask = {n: torch.from_numpy(m).float() for n, m in mask_np.items()}
        torch.manual_seed(0)
        curve, _ = train.train(model, mask, splits, TrainParams(**{"lr": 1.2e-3, **recipe}, batch_size=20,
                                                                iterations=10, eval_every=5),
                               seed=3, progress=False, checkpoint=checkpoint, schedule_start=2)
        results.append((curve, models.state_arrays(model)))
    assert f"resumed from {checkpoint.path} at iteration 8" in capsys.readouterr().out
    (first, a), (resumed, b) = results
    assert json.dumps(resumed) == json.dumps(first)
    assert all(np.array_equal(a[n], b[n]) for n in a)
