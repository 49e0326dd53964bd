"""Speed benchmark: our training step and stages against floors measured in the same run.

    python benchmarks/bench.py [--threads 2] [--repeat 100] [--passes 3] [--slice 5000] [--out benchmarks/results/bench]
                               [--models lenet_300_100 conv2] [--skip-pipeline] [--compile] [--deep]
                               [--data PREPARED] [--runs 5] [--compare 2000 6000] [--compare-runs 3]
                               [--rounds 3] [--round-iterations 50000] [--skip-whole]
                               [--device cpu|cuda] [--device-models ...] [--concurrency 1 2 4 8 16]

Prints a table and writes the numbers to <out>.json and <out>.csv:
(a) floors: float32 GEMM throughput at 1024^3, and the matrix products of one
    LeNet-300-100 step at batch 60 timed alone: the nine of the issue's definition (forward
    3, weight gradients 3, input gradients 3) and the eight the step needs (the first
    layer's input gradient is never used); every step ratio is given against both;
(b) our step (forward, loss, backward, masking, Adam) at the paper's batch size, at
    100, 51.3, 21.1, 7.0, 3.6 and 1.9% remaining, for LeNet-300-100 (`lth` takes its
    autograd-free step, with CSR layers where they pay) and Conv-2 (autograd); LeNet's
    "obvious" step (nn.Linear + autograd + foreach Adam + masked gradients) beside it;
(c) the evaluation pass over validation + test (15K examples), as training runs it
    (LeNet: from the step's own tensors, CSR layers included, at each percent remaining);
(d) a paper-protocol LeNet round at 100% and 3.6% remaining: a measured 5000-iteration
    slice (evaluation every 100) extrapolated to 50K iterations (the part paid once per
    training, set-up and iteration 0's evaluation, is timed apart and counted once), against
    the FLOP-bound time of the dense round at the measured GEMM rate, counting the step's
    FLOPs both ways; the slice is timed per segment (100 iterations and their evaluation),
    and the round is extrapolated from each segment's fastest pass (and, beside it, from the
    fastest whole slice);
(e) wall time of the non-training stages as a user runs them (`lth prune`, `reset`, ...,
    interpreter start included) on LeNet-sized artifacts, and of a no-op `dvc repro` and
    `snakemake -n` on a finished tiny pipeline (skip with --skip-pipeline);
(f) whole processes on real MNIST (prepared here by the `data` stage's code, or --data), as
    a user runs them, each the median and min-max of several runs taken in turns: the
    start-up of `lth train`, `untrained` and `supermask` (seconds from process start to the
    marks each writes to LTH_STARTUP_LOG: set-up done, first step; and to its exit) beside
    the interpreter with `import torch`, their floor; `lth train` beside the open_lth-style
    baseline (benchmarks/openlth_style.py) at --compare iterations, and their ratio at the
    paper's 50K iterations (extrapolated through the two largest counts where not measured);
    and the headline, --rounds whole `lth train` processes of a paper round (50K iterations,
    evaluation every 100), beside its FLOP bound and `import torch` (skip with --skip-whole).
--compile also times torch.compile of the obvious step (compile time and step time).
--deep adds (g): the training step of ResNet-20 at batch 128 and VGG-19 at batch 64
    (Frankle & Carbin's Section 5) on 32x32x3 inputs, dense: autograd and the masked step
    train.py takes (train.step), with SGD (momentum 0.9), against a floor measured in the
    same run: each convolution's forward, weight gradient and input gradient (none for the
    first layer) and the output layer's products, timed alone through the same torch calls
    (F.conv2d, aten.convolution_backward) on the shapes the step meets; beside it the step's
    FLOPs at the measured GEMM rate, and one paper round's training time extrapolated
    (30K / 112K iterations, evaluation not counted).
--device adds (h), the device table (helpers in benchmarks/device_bench.py), on cuda or the CPU:
    the float32 GEMM rate of that device; the dense step of --device-models (LeNet-300-100, Conv-2
    at batch 60, ResNet-20 at 128, VGG-19 at 64) as train.py takes it, against its products' FLOPs
    at that rate, and LeNet's against its eight products replayed back to back as one CUDA graph
    (on the CPU, called back to back); --rounds whole `lth train` processes of a LeNet round of
    --round-iterations on the device (training time: first step to exit); --concurrency: K whole
    `lth train` processes of that round started at once, their aggregate throughput (trainings x
    iterations / wall seconds) and its ratio to K = 1; and the lenet_mnist_paper profile's
    trainings (405) extrapolated from the best throughput measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

import lth
from lth import loop, masks, models, optim, pruning, train
from lth.architectures import ARCHITECTURES, Plain, architecture, dataset_layers, input_shape, num_classes
from lth.artifacts import save_arrays

# each model is timed on inputs shaped as the paper's dataset for it (b-e: Frankle & Carbin's Fig. 2 networks)
SHAPES = {name: input_shape(a.paper_dataset) for name, a in ARCHITECTURES.items() if isinstance(a, Plain)}
CLASSES = {name: num_classes(a.paper_dataset) for name, a in ARCHITECTURES.items() if isinstance(a, Plain)}
DEEP = {"resnet20": 128, "vgg19": 64}  # (g): model -> the paper's batch size (Section 5)
PERCENTS = (100.0, 51.3, 21.1, 7.0, 3.6, 1.9)
ROUND_PERCENTS = (100.0, 3.6)
BATCH = 60
EVAL_EXAMPLES = 15_000
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
# the pipeline tools run `lth ...` stage commands: the venv's bin first on PATH, and the code
# this process imported (a checkout's src/ first); Python caches bytecode as it does for a user
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
       "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONWARNINGS": "ignore", "DVC_NO_ANALYTICS": "1",
       "PYTHONPATH": os.pathsep.join([str(Path(lth.__file__).resolve().parents[1]),
                                      *filter(None, [os.environ.get("PYTHONPATH")])])}
PAPER_ITERATIONS = ARCHITECTURES["lenet_300_100"].paper_iterations


def timed(fn, repeat: int) -> float:
    """Seconds per call: the fastest of 7 batches of `repeat` calls, after a warm-up. The
    minimum, not the median: on a shared machine, noise only ever adds time."""
    for _ in range(max(3, repeat // 10)):
        fn()
    samples = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        samples.append((time.perf_counter() - start) / repeat)
    return min(samples)


def gemm_seconds(n: int = 1024) -> Callable[[], float]:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return lambda: timed(lambda: a @ b, 10)


def lenet_matmul_floor(repeat: int, first_input_grad: bool) -> tuple[Callable[[], float], float]:
    """A measurement (seconds) and the FLOPs of the GEMMs of one LeNet-300-100 step at batch
    60: nine, or eight without the first layer's input gradient."""
    sizes = [(layer.inputs, layer.outputs) for layer in dataset_layers("lenet_300_100", "mnist")]
    x = [torch.randn(BATCH, i) for i, _ in sizes]
    w = [torch.randn(o, i) for i, o in sizes]
    g = [torch.randn(BATCH, o) for _, o in sizes]

    def step():
        for k, (xi, wi, gi) in enumerate(zip(x, w, g, strict=True)):
            xi @ wi.T          # forward
            gi.T @ xi          # weight gradient
            if k or first_input_grad:
                gi @ wi        # input gradient
    flops = sum((3 if k or first_input_grad else 2) * 2 * BATCH * i * o for k, (i, o) in enumerate(sizes))
    return lambda: timed(step, repeat), flops


def forward_flops(name: str) -> float:
    """Multiply-adds x 2 of one example's forward pass (dense)."""
    model = models.build(name, SHAPES[name], CLASSES[name])
    flops = 0.0
    _, h, w = SHAPES[name]
    for n, module in model.named_children():
        if isinstance(module, torch.nn.Conv2d):
            flops += 2 * module.in_channels * module.out_channels * 9 * h * w
            if int(n[4:]) % 2 == 0:
                h, w = h // 2, w // 2
        elif isinstance(module, torch.nn.Linear):
            flops += 2 * module.in_features * module.out_features
    return flops


def masked_model(name: str, percent: float):
    model = models.initialize(models.build(name, SHAPES[name], CLASSES[name]), 0)
    theta0 = models.state_arrays(model)
    ladder = pruning.percent_ladder({n: w.size for n, w in theta0.items() if masks.is_prunable(n)},
                                    {"conv": 0.1, "fc": 0.2, "output": 0.1}, 30)
    steps = min(range(len(ladder)), key=lambda k: abs(ladder[k] - percent))
    mask_np = pruning.prune(theta0, masks.dense(theta0), {"conv": 0.1, "fc": 0.2, "output": 0.1}, steps=steps) \
        if steps else masks.dense(theta0)
    mask = {n: torch.from_numpy(m).float() for n, m in mask_np.items()}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in mask:
                p.mul_(mask[n])
    return model, mask, ladder[steps]


def obvious_step(model, mask):
    """The step written the obvious way: autograd, foreach Adam, masked gradients."""
    params = dict(model.named_parameters())
    masked = [(params[n], m) for n, m in mask.items()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)

    def step(images, labels):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        for p, m in masked:
            p.grad.mul_(m)
        optimizer.step()
    return step


def fastest(measurements: dict[str, Callable[[], float | np.ndarray]], passes: int) -> dict[str, float | np.ndarray]:
    """Each measurement's fastest (elementwise, for arrays) over `passes` interleaved passes:
    noise on a shared machine only ever adds time, and interleaving keeps a noisy minute from
    favouring one configuration over another (the floors are re-measured in every pass too)."""
    best = dict.fromkeys(measurements, math.inf)
    for _ in range(passes):
        for key, measure in measurements.items():
            best[key] = np.minimum(best[key], measure())
    return best


def step_measurements(name: str, percent: float, repeat: int) -> tuple[float, dict[str, Callable[[], float]], str]:
    """Seconds-per-call measurements of our step, the obvious step (LeNet) and the evaluation
    of validation + test as training runs it (scaled from 3000 examples), at `percent`."""
    images, labels = torch.randn(BATCH, *SHAPES[name]), torch.randint(0, CLASSES[name], (BATCH,))
    model, mask, actual = masked_model(name, percent)
    ours = train.make_step(model, mask, train.TrainParams(lr=1e-3, batch_size=BATCH, iterations=1, eval_every=1))
    measured = 3_000
    split = loop.Split(torch.randn(measured, *SHAPES[name]), torch.randint(0, CLASSES[name], (measured,)))
    evaluate = train.evaluators(ours, model.eval(), {"validation": split, "test": split})["test"]
    measurements = {"step": lambda: timed(lambda: ours(images, labels), repeat),
                    "eval": lambda: timed(evaluate, 1) * EVAL_EXAMPLES / measured}
    if name == "lenet_300_100":
        obvious = obvious_step(*masked_model(name, percent)[:2])
        measurements["obvious_step"] = lambda: timed(lambda: obvious(images, labels), repeat)
    return actual, measurements, "+".join(ours.sparse_layers) or "-"


ROUND_WHOLE, ROUND_ONCE = 0, 1  # a round measurement: [whole slice, once-per-training part, segments...]


def lenet_round(percent: float, iterations: int) -> Callable[[], np.ndarray]:
    """A measurement of a slice of a LeNet round (train.train, evaluation every 100) on random
    MNIST-shaped data of the paper's split sizes, in seconds: the whole slice, the part of a
    training paid once (set-up and the evaluation at iteration 0, which extrapolation to 50K
    iterations must not multiply), then each segment of 100 iterations and the evaluation
    that ends it. Every pass trains the same batches and evaluates the same weights, so the
    fastest of each segment over passes is that segment's time on a quiet machine (a noisy
    burst of seconds on a shared machine spoils a whole slice, not every pass of a segment)."""
    g = torch.Generator().manual_seed(0)
    shape, classes = SHAPES["lenet_300_100"], CLASSES["lenet_300_100"]
    splits = {name: loop.Split(torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g))
              for name, n in (("train", 55_000), ("validation", 5_000), ("test", 10_000))}
    params = train.TrainParams(lr=1.2e-3, batch_size=BATCH, iterations=iterations, eval_every=100)

    def measure() -> np.ndarray:
        model, mask, _ = masked_model("lenet_300_100", percent)
        marks = [time.perf_counter()]
        train.train(model, mask, splits, params, seed=0, progress=False,
                    on_record=lambda row: marks.append(time.perf_counter()))
        return np.array([marks[-1] - marks[0], *np.diff(marks)])
    return measure


def compile_times(repeat: int) -> dict:
    model, mask, _ = masked_model("lenet_300_100", 100.0)
    step = torch.compile(obvious_step(model, mask))
    images = torch.randn(BATCH, *SHAPES["lenet_300_100"])
    labels = torch.randint(0, CLASSES["lenet_300_100"], (BATCH,))
    try:
        start = time.perf_counter()
        step(images, labels)
        first = time.perf_counter() - start
        return {"compile_s": first, "step_ms": 1e3 * timed(lambda: step(images, labels), repeat)}
    except Exception as err:  # no compiler, unsupported op: report, do not fail the benchmark
        return {"error": f"{type(err).__name__}: {err}"[:200]}


def best_of(fn: Callable[[], object], calls: int) -> float:
    """Seconds of the fastest of `calls` calls after one warm-up: a deep step is seconds long."""
    fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return min(samples)


def conv_floor(model: torch.nn.Module, images: torch.Tensor) -> tuple[Callable[[], None], float]:
    """The products of one training step of `model` on `images`, to run alone, and their FLOPs:
    every convolution's forward, weight gradient and input gradient (the first layer's input
    needs none) through the calls autograd makes for it (F.conv2d, aten.convolution_backward),
    and the output layer's three GEMMs, on the shapes one forward pass meets."""
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, out: calls.append((m, i[0].detach(), torch.randn_like(out))))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    flops = 0.0
    for k, (m, x, g) in enumerate(calls):
        per_output = 2 * x.shape[1] * (math.prod(m.kernel_size) if isinstance(m, torch.nn.Conv2d) else 1)
        flops += g.numel() * per_output * (3 if k else 2)

    @torch.no_grad()
    def products():
        for k, (m, x, g) in enumerate(calls):
            if isinstance(m, torch.nn.Conv2d):
                F.conv2d(x, m.weight, None, m.stride, m.padding)
                torch.ops.aten.convolution_backward(g, x, m.weight, None, m.stride, m.padding, m.dilation, False,
                                                    [0, 0], 1, [k > 0, True, False])
            else:
                x @ m.weight.T, g.T @ x, g @ m.weight
    return products, flops


def deep_measurements(name: str, batch: int, calls: int = 2) -> tuple[dict[str, Callable[[], float]], float]:
    """Measurements (seconds) of a dense training step of `name` (autograd, train.step's masked
    step, SGD with momentum) at `batch` on 32x32x3 inputs and of its conv floor; the step's FLOPs."""
    model = models.initialize(models.build(name, (3, 32, 32), 10), 0, "kaiming_normal").train()
    params = dict(model.named_parameters())
    masked = [(params[n], torch.ones_like(p)) for n, p in params.items() if masks.is_prunable(n)]
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g)
    floor, flops = conv_floor(model, images)
    return {"step": lambda: best_of(lambda: train.step(model, optimizer, masked, images, labels), calls),
            "floor": lambda: best_of(floor, calls)}, flops


def wall(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - start


def stage_times(workdir: Path) -> dict:
    """Wall seconds of the light stages, as the pipeline runs them, on LeNet-sized artifacts."""
    rng = np.random.default_rng(0)
    theta0 = models.make_theta0("lenet_300_100", "mnist", 0)
    trained = {n: (w + rng.normal(0, 0.01, w.shape)).astype(np.float32) for n, w in theta0.items()}
    save_arrays(workdir / "theta0.safetensors", theta0)
    save_arrays(workdir / "trained.safetensors", trained)
    masks.save(workdir / "mask0.safetensors", masks.dense(theta0))
    shutil.copy(ROOT / "params.yaml", workdir / "params.yaml")
    lth = str(BIN / "lth")
    exp = ["--experiment", "lenet_mnist"]
    commands = {
        "prune": [lth, "prune", *exp, "--initial", "theta0.safetensors", "--trained", "trained.safetensors",
                  "--mask", "mask0.safetensors", "--out", "mask1.safetensors"],
        "reset": [lth, "reset", *exp, "--seed", "1", "--theta0", "theta0.safetensors", "--trained",
                  "trained.safetensors", "--mask", "mask1.safetensors", "--out", "ticket.safetensors"],
        "shuffle": [lth, "shuffle", "--seed", "1", "--mask", "mask1.safetensors", "--out", "random.safetensors"],
        "reinit": [lth, "reinit", *exp, "--seed", "1", "--theta0", "theta0.safetensors", "--mask", "mask1.safetensors",
                   "--out", "reinit.safetensors"],
        "init": [lth, "init", *exp, "--seed", "0", "--out", "t0.safetensors", "--mask", "m0.safetensors"],
        "check": [lth, "check", "--dvc-yaml", str(ROOT / "dvc.yaml")],
    }
    return {name: min(wall(cmd, workdir) for _ in range(3)) for name, cmd in commands.items()}


def pipeline_noop_times(workdir: Path) -> dict:
    """No-op `dvc repro` and `snakemake -n` on a finished tiny pipeline (tests' TINY config)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import TINY, make_workspace  # the tests' tiny config and workspace builder

    params = json.loads(json.dumps(TINY))
    params["data"]["local_dirs"] = {"mnist": str(raw_mnist(workdir))}
    ws = make_workspace(workdir / "ws", params)
    env_bin = [str(BIN / "dvc")]
    for cmd in ([*env_bin, "init", "--no-scm", "-q"], [str(BIN / "lth"), "dvc-yaml"], [*env_bin, "repro", "-q"],
                [str(BIN / "snakemake"), "--cores", "2", "-q"]):
        subprocess.run(cmd, cwd=ws, check=True, capture_output=True, env=ENV)
    return {"dvc repro (no-op)": min(wall([*env_bin, "repro"], ws) for _ in range(3)),
            "snakemake -n (no-op)": min(wall([str(BIN / "snakemake"), "-n", "--cores", "2"], ws) for _ in range(3))}


def raw_mnist(workdir: Path) -> Path:
    """MNIST's verified files, acquired once per run the way the `data` stage does."""
    from lth.data import DATASETS, acquire
    from lth.params import DataParams

    raw = workdir / "mnist"
    if not all((raw / name).exists() for name in DATASETS["mnist"].files):
        acquire("mnist", DataParams(validation_size=5000, split_seed=0), raw)
    return raw


def prepared_mnist(workdir: Path, given: str | None) -> Path:
    """The prepared MNIST file `lth train` reads: `--data`, or made here by the `data` stage's
    code with the paper's split (55K / 5K / 10K)."""
    if given:
        return Path(given).resolve()
    from lth import data
    from lth.params import DataParams

    out = workdir / "mnist.safetensors"
    data.run("mnist", DataParams(validation_size=5000, split_seed=0, local_dirs={"mnist": str(raw_mnist(workdir))}),
             workdir / "raw", out)
    return out


STARTUP = "startup"  # the whole-process runs' experiment for start-up (and untrained, supermask)


def whole_workspace(workdir: Path, threads: int, iterations: set[int], device: str = "cpu",
                    name: str = "whole") -> Path:
    """A directory with a params.yaml of the project's LeNet experiment (the paper's settings
    but iterations and the device) under one name per iteration count, theta_0 and its dense
    mask. The start-up experiment also has small untrained and learned supermask sections."""
    ws = workdir / name
    ws.mkdir()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["runtime"].update(device=device, threads=threads)
    lenet = params["experiments"]["lenet_mnist"]
    experiments = {f"i{its}": {**lenet, "train": {**lenet["train"], "iterations": its,
                                                    "eval_every": min(100, its)}} for its in sorted(iterations)}
    experiments[STARTUP] = {**lenet, "train": {**lenet["train"], "iterations": 100}, "supermask": {
        "untrained": {"criteria": ["large_final"], "actions": ["original"], "rates": {"fc": 0.2, "output": 0.1},
                      "steps": 1},
        "learned": {"iterations": 10, "batch_size": 60, "lr": 100, "momentum": 0.9, "weights": "original",
                    "eval_every": 10, "samples": 1}}}
    params["experiments"] = experiments
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run([str(BIN / "lth"), "init", "--experiment", STARTUP, "--seed", "0", "--out", "theta0.safetensors",
                    "--mask", "mask0.safetensors"], cwd=ws, check=True, capture_output=True, env=ENV)
    return ws


def lth_train(experiment: str, data: Path, out: str) -> list[str]:
    return [str(BIN / "lth"), "train", "--experiment", experiment, "--seed", "0", "--data", str(data),
            "--ticket", "theta0.safetensors", "--mask", "mask0.safetensors", "--out", out]


def openlth_style(data: Path, iterations: int, threads: int) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / "openlth_style.py"), "--data", str(data),
            "--iterations", str(iterations), "--threads", str(threads)]


# the floor of every stage that trains: the interpreter and `import torch`, marked as the stages
# mark; and the same with the garbage collector paused during the import, as `lth` imports it
MARK_READY = "open(os.environ['LTH_STARTUP_LOG'], 'a').write(f'ready {time.time()!r}\\n')"
IMPORT_TORCH = [sys.executable, "-c", f"import os, time, torch\n{MARK_READY}"]
IMPORT_TORCH_GC_PAUSED = [sys.executable, "-c", f"import gc, os, time\ngc.disable()\nimport torch\n"
                          f"gc.freeze()\ngc.enable()\n{MARK_READY}"]


def process_times(cmd: list[str], cwd: Path) -> dict[str, float]:
    """Seconds from just before the process is started to each mark it writes to LTH_STARTUP_LOG
    ("ready": set-up done; "first_step"), and to its exit ("wall")."""
    log = cwd / "startup.log"
    log.unlink(missing_ok=True)
    start = time.time()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**ENV, loop.STARTUP_LOG: str(log)})
    end = time.time()
    if result.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr[-2000:]}")
    marks = dict(line.split() for line in log.read_text().splitlines()) if log.exists() else {}
    return {**{event: float(t) - start for event, t in marks.items()}, "wall": end - start}


def summary(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median, min and max of each time over the runs (the median is what a user meets on a
    shared machine; the minimum what a quiet one gives)."""
    return {key: {"median": float(np.median(v)), "min": min(v), "max": max(v), "runs": len(v)}
            for key in runs[0] for v in [[r[key] for r in runs]]}


def interleaved(commands: dict[str, list[str]], cwd: Path, runs: int, warm_up: bool = False) -> dict[str, dict]:
    """Each command `runs` times, taking turns, so that a noisy minute does not favour one;
    with `warm_up`, each runs once first, unmeasured (file cache, bytecode caches)."""
    if warm_up:
        for cmd in commands.values():
            process_times(cmd, cwd)
    measured = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            measured[name].append(process_times(cmd, cwd))
    return {name: summary(times) for name, times in measured.items()}


def startup_times(ws: Path, data: Path, runs: int) -> dict[str, dict]:
    """Whole processes of the stages that train, against the interpreter with `import torch`."""
    subprocess.run(lth_train(STARTUP, data, STARTUP), cwd=ws, check=True, capture_output=True, env=ENV)
    seed = ["--experiment", STARTUP, "--seed", "0", "--data", str(data), "--theta0", "theta0.safetensors"]
    return interleaved({
        "import torch": IMPORT_TORCH,
        "import torch, GC paused": IMPORT_TORCH_GC_PAUSED,
        "lth train": lth_train(STARTUP, data, STARTUP),
        "lth untrained": [str(BIN / "lth"), "untrained", *seed, "--trained", f"{STARTUP}/trained.safetensors",
                          "--out", "untrained.csv"],
        "lth supermask": [str(BIN / "lth"), "supermask", *seed, "--out", "supermask"]}, ws, runs, warm_up=True)


def extrapolated(times: dict[int, float], iterations: int) -> float:
    """Linear in the iterations through the two largest measured counts."""
    (a, ta), (b, tb) = sorted(times.items())[-2:]
    return tb + (tb - ta) / (b - a) * (iterations - b)


def fmt(t: dict[str, float]) -> str:
    return f"{t['median']:.2f} s ({t['min']:.2f}-{t['max']:.2f})"


def whole_process_section(args, workdir: Path, round_bound_s: float | None) -> dict:
    """(f): whole processes, as a user runs them: start-up, lth beside the open_lth-style
    baseline, and the headline paper round."""
    data = prepared_mnist(workdir, args.data)
    ws = whole_workspace(workdir, args.threads, {*args.compare, args.round_iterations})
    out = {"startup": startup_times(ws, data, args.runs)}
    floor = out["startup"]["import torch"]["ready"]
    print(f"\n(f) whole processes, median (min-max) of {args.runs} runs, seconds from process start; "
          f"the floor, interpreter and `import torch`: {fmt(floor)}")
    print(f"    with the garbage collector paused during the import, as `lth` imports it: "
          f"{fmt(out['startup']['import torch, GC paused']['ready'])}")
    for name, t in out["startup"].items():
        if name.startswith("lth"):
            print(f"    {name:<14} set-up done {fmt(t['ready'])}, "
                  + (f"first step {fmt(t['first_step'])}, " if "first_step" in t else "")
                  + f"exit {fmt(t['wall'])}")

    compare = {}
    for its in args.compare:
        times = interleaved({"lth": lth_train(f"i{its}", data, f"i{its}"),
                             "openlth_style": openlth_style(data, its, args.threads)}, ws, args.compare_runs)
        compare[its] = {name: t["wall"] for name, t in times.items()}
        compare[its]["ratio"] = compare[its]["openlth_style"]["median"] / compare[its]["lth"]["median"]
        print(f"    {its} iterations: lth train {fmt(compare[its]['lth'])}, open_lth-style "
              f"{fmt(compare[its]['openlth_style'])}: {compare[its]['ratio']:.1f}x")
    out["compare"] = {str(k): v for k, v in compare.items()}

    if args.rounds:
        paper = interleaved({"round": lth_train(f"i{args.round_iterations}", data, "paper")}, ws, args.rounds)["round"]
        out["round"] = {"iterations": args.round_iterations, **paper, "import_torch_s": floor,
                        "flop_bound_8_s": round_bound_s}
        bound = f"; FLOP bound at the measured GEMM rate {round_bound_s:.0f} s" if round_bound_s else ""
        print(f"    a round of {args.round_iterations} iterations (evaluation every 100), whole `lth train`: "
              f"{fmt(paper['wall'])}, of which set-up {fmt(paper['ready'])}{bound}")

    if len(compare) >= 2 or PAPER_ITERATIONS in compare:
        base = {its: c["openlth_style"]["median"] for its, c in compare.items()}
        ours = {its: c["lth"]["median"] for its, c in compare.items()}
        measured_ours = args.rounds and args.round_iterations == PAPER_ITERATIONS
        theirs_50k = base[PAPER_ITERATIONS] if PAPER_ITERATIONS in base else extrapolated(base, PAPER_ITERATIONS)
        ours_50k = out["round"]["wall"]["median"] if measured_ours else \
            ours[PAPER_ITERATIONS] if PAPER_ITERATIONS in ours else extrapolated(ours, PAPER_ITERATIONS)
        out["paper_round_ratio"] = {"openlth_style_s": theirs_50k, "lth_s": ours_50k, "ratio": theirs_50k / ours_50k,
                                    "openlth_style_extrapolated": PAPER_ITERATIONS not in base,
                                    "lth_extrapolated": not measured_ours and PAPER_ITERATIONS not in ours}
        how = "extrapolated from " + " and ".join(map(str, sorted(base)[-2:])) + " iterations"
        print(f"    at {PAPER_ITERATIONS}: open_lth-style {theirs_50k:.0f} s "
              f"({'measured' if PAPER_ITERATIONS in base else how}), lth {ours_50k:.0f} s "
              f"({'measured, median' if not out['paper_round_ratio']['lth_extrapolated'] else how}): "
              f"{theirs_50k / ours_50k:.1f}x")
    return out


def device_step(name: str, batch: int, device: torch.device) -> tuple[Callable[[], object], float]:
    """One dense training step of `name` at `batch` on `device`, as train.py takes it
    (train.make_step: LeNet's autograd-free step with Adam; autograd with Adam for the plain conv
    nets, with SGD and momentum 0.9 for ResNet and VGG), and the FLOPs of its products."""
    plain = name in SHAPES
    shape, classes = (SHAPES[name], CLASSES[name]) if plain else ((3, 32, 32), 10)
    model = models.build(name, shape, classes)
    model = models.initialize(model, 0) if plain else models.initialize(model, 0, "kaiming_normal")
    model.to(device).train()
    mask = {n: torch.ones_like(p) for n, p in model.named_parameters() if masks.is_prunable(n)}
    recipe = train.TrainParams(lr=1.2e-3, batch_size=batch, iterations=1, eval_every=1) if plain else \
        train.TrainParams(lr=0.01, batch_size=batch, iterations=1, eval_every=1, optimizer="sgd", momentum=0.9)
    step = train.make_step(model, mask, recipe)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, *shape, generator=g).to(device)
    labels = torch.randint(0, classes, (batch,), generator=g).to(device)
    flops = conv_floor(model, images)[1]  # forward, weight and input gradients (none for the first layer)
    return lambda: step(images, labels), flops


def device_section(args, workdir: Path) -> dict:
    """(h) on --device: the steps against the device's own GEMM rate (LeNet's also against its
    products replayed as one CUDA graph), whole `lth train` processes of a paper round, K
    trainings at once, and the lenet_mnist_paper profile at the best throughput measured."""
    import device_bench as dev  # beside this script (on the path when it runs as one)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here")
    n = 4096 if device.type == "cuda" else 1024
    rate = dev.matmul_rate(device, n)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} threads"
    out = {"device": name, "gemm_n": n, "gemm_gflops": rate / 1e9,
           "tf32": device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32}
    print(f"\n(h) on {name}: float32 GEMM {n}^3 {rate / 1e9:.0f} GFLOP/s (TF32 {'on' if out['tf32'] else 'off'})")
    sizes = [(layer.inputs, layer.outputs) for layer in dataset_layers("lenet_300_100", "mnist")]
    products, _ = dev.products(sizes, BATCH, device)
    floor_s = dev.seconds_per_call(dev.replayable(products, device), device, args.repeat)
    out["steps"] = []
    print(f"    {'model':<14}{'batch':>6}{'step ms':>10}{'FLOP-bound ms':>15}{'x bound':>9}{'x graphed floor':>17}")
    for model in args.device_models:
        batch = DEEP.get(model, BATCH)
        step, flops = device_step(model, batch, device)
        s = dev.seconds_per_call(step, device, args.repeat if model == "lenet_300_100" else max(3, args.repeat // 20))
        row = {"model": model, "batch": batch, "step_ms": 1e3 * s, "step_flops": flops,
               "bound_ms": 1e3 * flops / rate, "x_bound": s * rate / flops}
        if model == "lenet_300_100":
            row.update(floor_ms=1e3 * floor_s, x_floor=s / floor_s)
        out["steps"].append(row)
        print(f"    {model:<14}{batch:>6}{row['step_ms']:>10.3f}{row['bound_ms']:>15.3f}{row['x_bound']:>9.2f}"
              + (f"{row['x_floor']:>17.2f}" if "x_floor" in row else ""))

    its = args.round_iterations
    data = prepared_mnist(workdir, args.data)
    ws = whole_workspace(workdir, args.threads, {its}, device=args.device, name=f"whole-{device.type}")
    if args.rounds:
        runs = [process_times(lth_train(f"i{its}", data, "round"), ws) for _ in range(args.rounds)]
        out["round"] = {"iterations": its, **summary([{**r, "training": r["wall"] - r["first_step"]} for r in runs])}
        print(f"    a LeNet round of {its} iterations (evaluation every 100), whole `lth train`: "
              f"{fmt(out['round']['wall'])}, of which training (first step to exit) {fmt(out['round']['training'])}")
    if args.concurrency:
        out["concurrency"] = dev.concurrency_table(lambda dir: lth_train(f"i{its}", data, dir), args.concurrency,
                                                   its, ws, ENV)
        print(f"    {'trainings at once':>18}{'wall s':>9}{'iterations/s':>14}{'x one':>7}  ({its} iterations each)")
        for row in out["concurrency"]:
            print(f"    {row['trainings']:>18}{row['wall_s']:>9.1f}{row['throughput_its']:>14.0f}{row['x_single']:>7.2f}")
        best = max(out["concurrency"], key=lambda r: r["throughput_its"])
        profile = dev.profile_hours(ROOT / "profiles" / "lenet_mnist_paper.yaml", best["throughput_its"])
        out["profile"] = {**profile, "at_once": best["trainings"], "measured_iterations": its}
        print(f"    the {profile['profile']} profile, {profile['trainings']} trainings ({profile['iterations']} "
              f"iterations): {profile['hours']:.2f} h at {best['trainings']} at once (trainings only, "
              f"extrapolated from trainings of {its} iterations)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--passes", type=int, default=3, help="passes over the LeNet configurations (fastest kept)")
    parser.add_argument("--slice", type=int, default=5_000, help="iterations of the measured slice of a LeNet round")
    parser.add_argument("--models", nargs="*", default=["lenet_300_100", "conv2"], choices=list(SHAPES),
                        help="models of (b) and (c); none: only the floors (and --deep)")
    parser.add_argument("--out", default="benchmarks/results/bench", help="output prefix (.json and .csv)")
    parser.add_argument("--skip-pipeline", action="store_true", help="skip (e): stage and no-op pipeline times")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the obvious step")
    parser.add_argument("--deep", action="store_true",
                        help="(g): ResNet-20 (batch 128) and VGG-19 (batch 64) steps against their conv floor "
                             "(--passes interleaved passes, each the fastest of 2 calls)")
    whole = parser.add_argument_group("(f) whole processes")
    whole.add_argument("--data", help="prepared MNIST (.safetensors of `lth data`); default: prepared here")
    whole.add_argument("--runs", type=int, default=5, help="runs of each start-up measurement (median, min-max)")
    whole.add_argument("--compare", type=int, nargs="*", default=[2000, 6000],
                       help="iterations at which `lth train` and the open_lth-style baseline are timed")
    whole.add_argument("--compare-runs", type=int, default=3, help="runs of each comparison")
    whole.add_argument("--rounds", type=int, default=3,
                       help="whole-process paper rounds timed: the headline (0: none)")
    whole.add_argument("--round-iterations", type=int, default=PAPER_ITERATIONS,
                       help="iterations of those rounds (default: the paper's)")
    whole.add_argument("--skip-whole", action="store_true", help="skip (f)")
    on_device = parser.add_argument_group("(h) the device table")
    on_device.add_argument("--device", choices=["cpu", "cuda"],
                           help="run (h) on this device: steps against its GEMM rate, --rounds whole paper "
                                "rounds, --concurrency, the lenet_mnist_paper profile extrapolated")
    on_device.add_argument("--device-models", nargs="*", default=["lenet_300_100", "conv2", *DEEP],
                           help="models whose dense step (h) times (batch: ResNet 128, VGG 64, else 60)")
    on_device.add_argument("--concurrency", type=int, nargs="*",
                           help="numbers of whole `lth train` processes of --round-iterations run at once on "
                                "--device (default with cuda: 1 2 4 8 16)")
    args = parser.parse_args()
    if args.slice < 100 or args.slice % 100:
        parser.error(f"--slice {args.slice}: use a multiple of 100 (a round evaluates every 100 iterations)")
    if min(args.runs, args.compare_runs) < 1 or args.rounds < 0 or min([args.round_iterations, *args.compare]) < 1:
        parser.error("--runs and --compare-runs must be at least 1, --rounds at least 0, iterations at least 1")
    if args.concurrency is None:
        args.concurrency = [1, 2, 4, 8, 16] if args.device == "cuda" else []
    if args.concurrency and (not args.device or min(args.concurrency) < 1):
        parser.error("--concurrency needs --device, and numbers of at least 1")
    for name in args.device_models:
        architecture(name)  # an unknown name fails here, naming the known ones
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    lenet = "lenet_300_100" in args.models
    slice_its, its = args.slice, PAPER_ITERATIONS
    # floors: the nine products a step and the eight the step computes
    floors = {n: lenet_matmul_floor(args.repeat * 5, first_input_grad=n == 9) for n in (9, 8)}
    flops = {n: floor_flops for n, (_, floor_flops) in floors.items()}
    measurements = {"gemm": gemm_seconds(), **{f"floor{n}": measure for n, (measure, _) in floors.items()}}
    configs = {}
    for name in args.models:
        percents = PERCENTS if name == "lenet_300_100" else (100.0, 21.1, 3.6)
        for percent in percents:
            actual, config, sparse = step_measurements(
                name, percent, args.repeat if name == "lenet_300_100" else max(3, args.repeat // 50))
            if name != "lenet_300_100" and percent != 100.0:
                del config["eval"]  # Conv-2 evaluates at the same cost at every percent
            configs[name, actual] = sparse
            measurements.update({(name, actual, k): f for k, f in config.items()})
    if lenet:
        measurements.update({("round", percent): lenet_round(percent, slice_its) for percent in ROUND_PERCENTS})
    # conv models' measurements take a minute each: one pass
    conv = {k for k in measurements if isinstance(k, tuple) and k[0] in SHAPES and k[0] != "lenet_300_100"}
    best = fastest({k: f for k, f in measurements.items() if k not in conv}, args.passes)
    best.update(fastest({k: f for k, f in measurements.items() if k in conv}, 1))

    rate = 2 * 1024**3 / best["gemm"]
    floor_s = {n: best[f"floor{n}"] for n in (9, 8)}
    results = {"threads": args.threads, "torch": torch.__version__, "passes": args.passes, "gemm_gflops": rate / 1e9,
               **{f"lenet_matmul_floor_{n}_ms": floor_s[n] * 1e3 for n in floor_s},
               **{f"lenet_step_flops_{n}": flops[n] for n in floor_s}}
    print(f"(a) float32 GEMM 1024^3: {rate / 1e9:.1f} GFLOP/s on {args.threads} threads")
    for n in floor_s:
        print(f"    LeNet-300-100 step at batch 60, {n} GEMMs alone{' (what the step needs)' if n == 8 else ''}: "
              f"{floor_s[n] * 1e3:.3f} ms ({flops[n] / 1e6:.1f} MFLOP, {flops[n] / floor_s[n] / 1e9:.1f} GFLOP/s)")

    rows = []
    print(f"\n(b) {'model':<14}{'remaining':>10}{'step ms':>9}{'x floor9':>9}{'x floor8':>9}{'eval ms':>9}"
          f"{'obvious ms':>12}{'x floor9':>9}{'  CSR layers'}")
    for (name, actual), sparse in configs.items():
        ms = {k: 1e3 * best[name, actual, k] for k in ("step", "eval", "obvious_step") if (name, actual, k) in best}
        step_flops = 3 * BATCH * forward_flops(name)
        on_floor = name == "lenet_300_100"
        row = {"model": name, "percent_remaining": round(actual, 2), "step_ms": ms["step"],
               "eval_ms": ms.get("eval", math.nan), "obvious_step_ms": ms.get("obvious_step", math.nan),
               "sparse_layers": sparse, "step_flops": step_flops,
               "x_floor9": ms["step"] / (floor_s[9] * 1e3) if on_floor else math.nan,
               "x_floor8": ms["step"] / (floor_s[8] * 1e3) if on_floor else math.nan,
               "x_gemm_rate": ms["step"] / 1e3 / (step_flops / rate),
               "obvious_x_floor9": ms.get("obvious_step", math.nan) / (floor_s[9] * 1e3)}
        rows.append(row)
        print(f"    {name:<14}{row['percent_remaining']:>9.1f}%{row['step_ms']:>9.3f}{row['x_floor9']:>9.2f}"
              f"{row['x_floor8']:>9.2f}{row['eval_ms']:>9.1f}{row['obvious_step_ms']:>12.3f}"
              f"{row['obvious_x_floor9']:>9.2f}  {sparse}")
    results["steps"] = rows
    print("    (c) eval ms: validation + test (15K examples), as training evaluates")

    if lenet:
        eval_flops = its // 100 * EVAL_EXAMPLES * forward_flops("lenet_300_100")
        bounds = {n: (its * flops[n] + eval_flops) / rate for n in floor_s}
        results["lenet_round"] = []
        print(f"\n(d) LeNet round (50K iterations, evaluation every 100), extrapolated from {slice_its}; "
              f"FLOP-bound of the dense round at the GEMM rate: {bounds[9]:.0f} s counting 9 products a step, "
              f"{bounds[8]:.0f} s counting 8")
        for percent in ROUND_PERCENTS:
            times = best["round", percent]
            whole, once, segments = times[ROUND_WHOLE], times[ROUND_ONCE], times[ROUND_ONCE + 1:]
            round_s = once + segments.sum() * its / slice_its
            whole_s = once + (whole - once) * its / slice_its
            results["lenet_round"].append({
                "percent_remaining": percent, "measured_iterations": slice_its, "measured_s": whole,
                "once_s": once, "segments": len(segments), "segments_fastest_s": segments.sum(),
                "extrapolated_50k_s": round_s, "whole_slice_extrapolated_50k_s": whole_s,
                **{f"flop_bound_{n}_s": bounds[n] for n in floor_s},
                **{f"x_bound_{n}": round_s / bounds[n] for n in floor_s},
                "whole_slice_x_bound_9": whole_s / bounds[9]})
            print(f"    {percent:5.1f}% remaining: {round_s:.0f} s ({round_s / bounds[9]:.2f}x the 9-product bound, "
                  f"{round_s / bounds[8]:.2f}x the 8-product bound) from each 100-iteration segment's fastest; "
                  f"{whole_s:.0f} s ({whole_s / bounds[9]:.2f}x) from the fastest whole slice")

    if args.compile:
        results["compile"] = compile_times(args.repeat)
        print(f"\n    torch.compile of the obvious LeNet step: {results['compile']}")

    if args.deep:
        results["deep"] = []
        print(f"\n(g) {'model':<10}{'batch':>6}{'step ms':>10}{'floor ms':>10}{'x floor':>9}{'GFLOP':>8}"
              f"{'x GEMM rate':>13}{'paper round':>13}  (dense, SGD, autograd; round: training only)")
        for name, batch in DEEP.items():
            measurements, flops = deep_measurements(name, batch)
            times = fastest(measurements, args.passes)  # step and floor interleaved, each its fastest pass
            its = architecture(name).paper_iterations
            row = {"model": name, "batch": batch, "step_s": float(times["step"]), "floor_s": float(times["floor"]),
                   "step_flops": flops, "x_floor": times["step"] / times["floor"],
                   "x_gemm_rate": times["step"] * rate / flops, "paper_iterations": its,
                   "paper_round_h": times["step"] * its / 3600}
            results["deep"].append(row)
            print(f"    {name:<10}{batch:>6}{1e3 * row['step_s']:>10.0f}{1e3 * row['floor_s']:>10.0f}"
                  f"{row['x_floor']:>9.2f}{row['step_flops'] / 1e9:>8.1f}{row['x_gemm_rate']:>13.2f}"
                  f"{row['paper_round_h']:>11.1f} h")

    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_pipeline:
            stages = stage_times(Path(tmp))
            stages.update(pipeline_noop_times(Path(tmp)))
            results["stages_s"] = stages
            print("\n(e) wall time, interpreter start included: "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
        if not args.skip_whole:
            round_its = args.round_iterations
            bound = (round_its * flops[8] + round_its // 100 * EVAL_EXAMPLES * forward_flops("lenet_300_100")) / rate
            results["whole"] = whole_process_section(args, Path(tmp), bound)
        if args.device:
            results["device"] = device_section(args, Path(tmp))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    with out.with_suffix(".csv").open("w", newline="") as f:
        fields = sorted({k for r in rows for k in r})
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwrote {out.with_suffix('.json')} and {out.with_suffix('.csv')}")
    if "round" in results.get("whole", {}):
        r = results["whole"]["round"]
        print(f"\nHeadline: a LeNet round of {r['iterations']} iterations as `lth train` runs it, whole process: "
              f"{fmt(r['wall'])} over {r['wall']['runs']} runs (the FLOP bound {r['flop_bound_8_s']:.0f} s, "
              f"interpreter and `import torch` {fmt(r['import_torch_s'])}, measured in this run)")


if __name__ == "__main__":
    main()
