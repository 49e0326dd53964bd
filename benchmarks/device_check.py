"""Check the computing paths on a CUDA device against the CPU (run on a GPU machine).

    PYTHONPATH=src python benchmarks/device_check.py

For LeNet-300-100 (autograd-free step, dense and CSR layers), Conv-2 (autograd, dropout)
and a learned supermask, on synthetic MNIST-shaped data: train on CUDA and on the CPU
from the same theta_0 and mask, check that pruned weights never moved on CUDA, that the
CUDA artifacts load on the CPU, and print how far the two devices' results are apart.
Needs only torch, numpy and safetensors (no params file).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lth import loop, masks, models, pruning, supermask, train
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
        iterations: int) -> tuple[dict, list, float]:
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
                           progress=False)
    seconds = time.perf_counter() - start
    trained = models.state_arrays(model)
    for n, m in mask_np.items():
        assert np.all(trained[n][~m] == 0), f"{name} on {device}: a pruned weight moved"
    return trained, curve, seconds


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    for name, shape, keep, dropout, its in (("lenet_300_100", (1, 28, 28), 1.0, 0.0, 400),
                                            ("lenet_300_100", (1, 28, 28), 0.05, 0.0, 400),
                                            ("conv2", (1, 28, 28), 1.0, 0.5, 100)):
        gpu, gpu_curve, gpu_s = run(name, shape, keep, dropout, "cuda", its)
        cpu, cpu_curve, cpu_s = run(name, shape, keep, dropout, "cpu", its)
        with tempfile.TemporaryDirectory() as d:  # written from CUDA, read on the CPU
            save_arrays(Path(d) / "w.safetensors", gpu)
            back = load_arrays(Path(d) / "w.safetensors", "train")
        assert all(np.array_equal(back[n], gpu[n]) for n in gpu)
        diff = max(float(np.abs(gpu[n] - cpu[n]).max()) for n in gpu)
        print(f"{name} keep {keep}: max |w_cuda - w_cpu| = {diff:.2e}; final test accuracy cuda "
              f"{gpu_curve[-1]['test_accuracy']:.4f} cpu {cpu_curve[-1]['test_accuracy']:.4f}; "
              f"{its} iterations in {gpu_s:.2f} s (cuda) / {cpu_s:.2f} s (cpu)")
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
    print("device check passed")


if __name__ == "__main__":
    main()
