"""Speed benchmark: our training step against floors measured in the same run.

    python benchmarks/bench.py [--threads 2] [--repeat 200] [--out benchmarks/results/bench.json]

Prints a table and writes the numbers as JSON:
- floors: float32 GEMM throughput at 1024^3, and the nine matrix products of one
  LeNet-300-100 step at batch 60 (forward 3, backward 6) timed alone;
- our step (forward, loss, backward, gradient masking, Adam) per model at batch 60, on
  its paper dataset's input shape, with its FLOP count and ratio to the floor;
- a paper-protocol round estimated from the measured step (iterations x step time,
  plus one evaluation of validation + test every 100 iterations).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lth import models, train

SHAPES = {"lenet_300_100": (1, 28, 28), "conv2": (3, 32, 32), "conv4": (3, 32, 32), "conv6": (3, 32, 32)}
PAPER_ITERATIONS = {"lenet_300_100": 50_000, "conv2": 20_000, "conv4": 25_000, "conv6": 30_000}


def timed(fn, repeat: int) -> float:
    """Median seconds per call after a warm-up."""
    for _ in range(max(3, repeat // 10)):
        fn()
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        samples.append((time.perf_counter() - start) / repeat)
    return sorted(samples)[2]


def gemm_rate(n: int = 1024) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / timed(lambda: a @ b, 10)


def lenet_matmul_floor(batch: int, repeat: int) -> tuple[float, float]:
    """Seconds and FLOPs of the nine GEMMs of one LeNet-300-100 step."""
    sizes = [(784, 300), (300, 100), (100, 10)]
    x = [torch.randn(batch, i) for i, _ in sizes]
    w = [torch.randn(o, i) for i, o in sizes]
    g = [torch.randn(batch, o) for _, o in sizes]

    def step():
        for xi, wi, gi in zip(x, w, g, strict=True):
            xi @ wi.T          # forward
            gi.T @ xi          # weight gradient
            gi @ wi            # input gradient
    flops = sum(3 * 2 * batch * i * o for i, o in sizes)
    return timed(step, repeat), flops


def model_step(name: str, batch: int, repeat: int, keep: float) -> float:
    shape = SHAPES[name]
    model = models.initialize(models.build(name, shape, 10), 0)
    mask = {n: (torch.rand(p.shape, generator=torch.Generator().manual_seed(1)) < keep).float()
            for n, p in model.named_parameters() if n.endswith(".weight")}
    params = dict(model.named_parameters())
    masked = [(params[n], m) for n, m in mask.items()]
    optimizer = train.make_optimizer(model, 1e-3)
    images, labels = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    return timed(lambda: train.step(model, optimizer, masked, images, labels), repeat)


def eval_pass(name: str, n: int = 15_000, measured: int = 3_000) -> float:
    """Seconds to evaluate validation + test (15K examples), scaled from `measured` examples."""
    model = models.initialize(models.build(name, SHAPES[name], 10), 0).eval()
    split = train.Split(torch.randn(measured, *SHAPES[name]), torch.randint(0, 10, (measured,)))
    return timed(lambda: train.evaluate(model, split), 1) * n / measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--models", nargs="+", default=list(SHAPES))
    parser.add_argument("--out", default="benchmarks/results/bench.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rate = gemm_rate()
    floor_s, floor_flops = lenet_matmul_floor(60, args.repeat * 5)
    results = {"threads": args.threads, "torch": torch.__version__, "gemm_gflops": rate / 1e9,
               "lenet_matmul_floor_ms": floor_s * 1e3, "lenet_step_flops": floor_flops, "models": {}}
    print(f"float32 GEMM 1024^3: {rate / 1e9:.1f} GFLOP/s on {args.threads} threads")
    print(f"LeNet-300-100 step, 9 GEMMs alone at batch 60: {floor_s * 1e3:.3f} ms "
          f"({floor_flops / 1e6:.1f} MFLOP, {floor_flops / floor_s / 1e9:.1f} GFLOP/s)\n")
    print(f"{'model':<14}{'remaining':>10}{'step ms':>10}{'x floor':>9}{'eval ms':>10}{'paper round':>13}")
    for name in args.models:
        repeat = args.repeat if name == "lenet_300_100" else max(3, args.repeat // 50)
        ev = eval_pass(name)
        for keep in (1.0, 0.211, 0.036):
            s = model_step(name, 60, repeat, keep)
            its = PAPER_ITERATIONS[name]
            round_s = its * s + its // 100 * ev
            ratio = s / floor_s if name == "lenet_300_100" else float("nan")
            results["models"].setdefault(name, {})[str(keep)] = {
                "step_ms": s * 1e3, "eval_ms": ev * 1e3, "paper_round_s": round_s, "ratio_to_floor": ratio}
            print(f"{name:<14}{100 * keep:>9.1f}%{s * 1e3:>10.2f}{ratio:>9.2f}{ev * 1e3:>10.1f}"
                  f"{round_s / 60:>11.1f} min")
    print("\n'paper round': the paper's iterations at the measured step time plus an evaluation of\n"
          "validation and test (15K examples) every 100 iterations; estimated, not run.")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
