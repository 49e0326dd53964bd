"""Check the computing paths on a CUDA device against the CPU (run on a GPU machine).

    PYTHONPATH=src python benchmarks/device_check.py         # on a machine with a CUDA device
    PYTHONPATH=src python benchmarks/device_check.py --cpu   # its CPU-side part, anywhere

For LeNet-300-100 (autograd-free step, dense layers on CUDA; its mask at 100% and 5%),
Conv-2 (autograd, dropout) and a learned supermask, on synthetic MNIST-shaped data: train on
CUDA and on the CPU from the same theta_0 and mask, check that pruned weights never moved on
CUDA, that the CUDA artifacts load on the CPU, and print how far the two devices' results
are apart. LeNet trains on CUDA twice: through the captured CUDA graphs (graphed.py, the
default there) and through the eager loop; the two should give the same bits (the same
kernels in the same order), and the graphed loop should synchronise with the host only at
its records (counted with torch.cuda.set_sync_debug_mode). `--cpu` checks the CPU side of
the graphed loop: run eagerly, it gives the eager loop's bits. Needs only torch, numpy and
safetensors (no params file); exits non-zero if a check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

from lth import loop, masks, models, pruning, supermask, train
from lth.artifacts import load_arrays, save_arrays
from lth.checkpoint import Checkpoint
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
)


def synthetic(device: torch.device, shape) -> dict[str, loop.Split]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, n in (("train", 2000), ("validation", 500), ("test", 500)):
        labels = torch.randint(0, 10, (n,), generator=g)
        images = torch.randn(n, *shape, generator=g) * 0.3
        images[torch.arange(n), 0, labels, labels] += 3.0  # learnable from a few pixels
        out[name] = loop.Split(images.to(device), labels.to(device))
    return out


def run(name: str, shape, keep: float, dropout: float, device: str,
        iterations: int, graphs: bool | None = None, checkpoint: Checkpoint | None = None) -> tuple[dict, list, float]:
    """Train from theta_0 on `device` (graphs, checkpoint: train.train's; graphs None: its
    default there); the trained weights, the curve and the seconds it took."""
    model = models.initialize(models.build(name, shape, 10, dropout=dropout), 0)
    theta0 = models.state_arrays(model)
    steps = 0 if keep == 1.0 else 14  # 0.8^14: fc1 at 4.4% density, a CSR layer
    rates = {"conv": 0.1, "fc": 0.2, "output": 0.1}
    mask_np = pruning.prune(theta0, masks.dense(theta0), rates, steps=steps) if steps else masks.dense(theta0)
    models.load_arrays_into(model, {n: w * mask_np[n] if n in mask_np else w for n, w in theta0.items()})
    dev = torch.device(device)
    model.to(dev)
    mask = {n: torch.from_numpy(m).float().to(dev) for n, m in mask_np.items()}
    torch.manual_seed(0)
    start = time.perf_counter()
    curve, _ = train.train(model, mask, synthetic(dev, shape), TrainParams(1.2e-3, 60, iterations, 50), seed=0,
                           progress=False, graphs=graphs, checkpoint=checkpoint)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    trained = models.state_arrays(model)
    for n, m in mask_np.items():
        assert np.all(trained[n][~m] == 0), f"{name} on {device}: a pruned weight moved"
    return trained, curve, seconds


def same(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[n], b[n]) for n in a)


def check_graph_shaped_on_cpu(problems: list[str]) -> None:
    """The graphed loop's functions run eagerly on the CPU give the eager loop's bits."""
    for keep in (1.0, 0.5):
        shaped, shaped_curve, shaped_s = run("lenet_300_100", (1, 28, 28), keep, 0.0, "cpu", 120, graphs=True)
        eager, eager_curve, eager_s = run("lenet_300_100", (1, 28, 28), keep, 0.0, "cpu", 120, graphs=False)
        identical = same(shaped, eager) and json.dumps(shaped_curve) == json.dumps(eager_curve)
        print(f"lenet keep {keep} on the cpu: graph-shaped loop (eager) vs eager loop: "
              f"{'bit-identical' if identical else 'DIFFERENT'} ({shaped_s:.2f} s / {eager_s:.2f} s)")
        if not identical:
            problems.append(f"graph-shaped loop on the cpu, keep {keep}: not the eager loop's bits")


def syncs_of_graphed_training(iterations: int) -> int:
    """The host-device synchronisations of a graphed LeNet training (warnings of torch's sync
    debug mode), its set-up and records included."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run("lenet_300_100", (1, 28, 28), 1.0, 0.0, "cuda", iterations, graphs=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def graphs_check(problems: list[str], name: str, shape, keep: float, its: int, eager: dict, eager_curve: list,
                 eager_s: float) -> None:
    """LeNet through the captured CUDA graphs against the eager CUDA loop's weights and curve.
    A failure is reported, and the other checks still run."""
    try:
        graphed, graphed_curve, graphed_s = run(name, shape, keep, 0.0, "cuda", its, graphs=True)
    except Exception as err:  # noqa: BLE001 (reported, and the check fails)
        traceback.print_exc()
        problems.append(f"{name} keep {keep}: the graphed loop failed: {err!r}")
        return
    identical = same(graphed, eager) and json.dumps(graphed_curve) == json.dumps(eager_curve)
    print(f"{name} keep {keep}: cuda graphs vs cuda eager: {'bit-identical' if identical else 'DIFFERENT'} "
          f"(max |w| difference {max(float(np.abs(graphed[n] - eager[n]).max()) for n in graphed):.2e}); "
          f"{its} iterations in {graphed_s:.2f} s (graphs, capture included) / {eager_s:.2f} s (eager)")
    if not identical:
        problems.append(f"{name} keep {keep}: the graphed loop's results differ from the eager loop's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="only the CPU-side checks (no CUDA device needed)")
    args = parser.parse_args()
    problems: list[str] = []
    check_graph_shaped_on_cpu(problems)
    if args.cpu:
        print("device check (cpu side) " + ("passed" if not problems else "FAILED: " + "; ".join(problems)))
        sys.exit(1 if problems else 0)
    assert torch.cuda.is_available(), "no CUDA device (--cpu runs the CPU-side checks alone)"
    loop.resolve_device("cuda", tf32=False)  # as every stage sets it (runtime.tf32's default): no TF32
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, TF32 matmul "
          f"{torch.backends.cuda.matmul.allow_tf32} cudnn {torch.backends.cudnn.allow_tf32}")
    for name, shape, keep, dropout, its in (("lenet_300_100", (1, 28, 28), 1.0, 0.0, 400),
                                            ("lenet_300_100", (1, 28, 28), 0.05, 0.0, 400),
                                            ("conv2", (1, 28, 28), 1.0, 0.5, 100)):
        gpu, gpu_curve, gpu_s = run(name, shape, keep, dropout, "cuda", its, graphs=False)  # the eager loop
        cpu, cpu_curve, cpu_s = run(name, shape, keep, dropout, "cpu", its)
        with tempfile.TemporaryDirectory() as d:  # written from CUDA, read on the CPU
            save_arrays(Path(d) / "w.safetensors", gpu)
            back = load_arrays(Path(d) / "w.safetensors", "train")
        assert all(np.array_equal(back[n], gpu[n]) for n in gpu)
        diff = max(float(np.abs(gpu[n] - cpu[n]).max()) for n in gpu)
        print(f"{name} keep {keep}: max |w_cuda - w_cpu| = {diff:.2e}; final test accuracy cuda "
              f"{gpu_curve[-1]['test_accuracy']:.4f} cpu {cpu_curve[-1]['test_accuracy']:.4f}; "
              f"{its} iterations in {gpu_s:.2f} s (cuda, eager) / {cpu_s:.2f} s (cpu)")
        if name == "lenet_300_100":
            graphs_check(problems, name, shape, keep, its, gpu, gpu_curve, gpu_s)
    learned = LearnedParams(iterations=100, batch_size=100, lr=100.0, momentum=0.9, weights="signed_constant",
                            eval_every=50, samples=2)
    e = Experiment(name="check", dataset="mnist", model=ModelParams("lenet_300_100"),
                   train=TrainParams(1.2e-3, 60, 100, 50), prune=PruneParams("iterative", "layerwise", "large_final",
                                                                             {"fc": 0.2, "output": 0.1}, 1),
                   reset=ResetParams(0, "original"), supermask=SupermaskParams(learned=learned))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        save_arrays(d / "theta0.safetensors", models.make_theta0("lenet_300_100", "mnist", 0))
        data = {f"{k}_{part}": (v.images.cpu().numpy() * 40 + 100).clip(0, 255).astype(np.uint8) if part == "images"
                else v.labels.cpu().numpy() for k, v in synthetic(torch.device("cpu"), (1, 28, 28)).items()
                for part in ("images", "labels")}
        data["normalization"] = np.array([[0.4], [0.3]])
        save_arrays(d / "data.safetensors", data)
        m = supermask.run(e, RuntimeParams("cuda", 2), DataParams(validation_size=500, split_seed=0),
                          d / "data.safetensors", d / "theta0.safetensors", d / "sm", seed=0, progress=False)
    print(f"supermask on cuda: {m['final_percent_expected']:.1f}% expected ones, test accuracy "
          f"{m['final_sampled_test_accuracy']:.4f} (sampled)")
    try:
        syncs = syncs_of_graphed_training(400)  # 9 records, set-up and the final write-back
        print(f"lenet graphed, 400 iterations with 9 records: {syncs} host synchronisations")
        if syncs >= 400:
            problems.append(f"the graphed loop synchronised {syncs} times in 400 iterations: in the loop")
        graphed, _, graphed_s = run("lenet_300_100", (1, 28, 28), 1.0, 0.0, "cuda", 5000, graphs=True)
        eager, _, eager_s = run("lenet_300_100", (1, 28, 28), 1.0, 0.0, "cuda", 5000, graphs=False)
        print(f"lenet 5000 iterations (100 records) on cuda: {graphed_s:.2f} s graphed, {eager_s:.2f} s eager; "
              f"{'bit-identical' if same(graphed, eager) else 'DIFFERENT'}")
        if not same(graphed, eager):
            problems.append("lenet 5000 iterations: the graphed loop's weights differ from the eager loop's")
        with tempfile.TemporaryDirectory() as d:  # checkpoints every 70, records every 50: resumed at 350
            checkpoint = Checkpoint(Path(d) / "checkpoint.safetensors", 70, "check")
            run("lenet_300_100", (1, 28, 28), 1.0, 0.0, "cuda", 400, graphs=True, checkpoint=checkpoint)
            resumed, resumed_curve, _ = run("lenet_300_100", (1, 28, 28), 1.0, 0.0, "cuda", 400, graphs=True,
                                            checkpoint=checkpoint)
        uninterrupted, uninterrupted_curve, _ = run("lenet_300_100", (1, 28, 28), 1.0, 0.0, "cuda", 400, graphs=False)
        identical = same(resumed, uninterrupted) and json.dumps(resumed_curve) == json.dumps(uninterrupted_curve)
        print(f"lenet graphed, resumed at iteration 350 vs the eager loop uninterrupted: "
              f"{'bit-identical' if identical else 'DIFFERENT'}")
        if not identical:
            problems.append("the graphed loop resumed from a checkpoint differs from an uninterrupted training")
    except Exception as err:  # noqa: BLE001 (reported, and the check fails)
        traceback.print_exc()
        problems.append(f"the graphed loop failed: {err!r}")
    if problems:
        print("device check FAILED: " + "; ".join(problems))
        sys.exit(1)
    print("device check passed")


if __name__ == "__main__":
    main()
