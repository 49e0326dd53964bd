"""bench.py's (h), the device table: what runs on `--device` (cuda, or the CPU with tiny
settings), measured against that device's own matrix-product rate in the same run, and how
many whole `lth train` processes one device holds at once.

Helpers only: bench.py builds the models, workspaces and commands, prints and records."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lth import graphed, loop


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], object], device: torch.device, repeat: int, batches: int = 5) -> float:
    """The fastest of `batches` batches of `repeat` back-to-back calls, after a warm-up, timed
    from the host with the device drained at both ends (CUDA runs asynchronously)."""
    for _ in range(max(2, repeat // 10)):
        fn()
    samples = []
    for _ in range(batches):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        synchronize(device)
        samples.append((time.perf_counter() - start) / repeat)
    return min(samples)


def replayable(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """On CUDA, `fn` captured once as a CUDA graph (graphed.captured, as training captures its
    step), to replay without a launch per kernel: the floor of a step whose kernels take
    microseconds is the kernels, not their launches. On the CPU, `fn` itself."""
    return graphed.captured(fn).replay if device.type == "cuda" else fn


def matmul_rate(device: torch.device, n: int) -> float:
    """FLOP/s of a float32 n^3 matrix product on `device` (TF32 as torch is set: off unless asked)."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device) for _ in range(2))
    return 2 * n**3 / seconds_per_call(lambda: a @ b, device, repeat=10)


def products(sizes: list[tuple[int, int]], batch: int, device: torch.device) -> tuple[Callable[[], None], float]:
    """The eight matrix products a fully connected step needs (forward, weight gradient, and the
    input gradient of every layer but the first) on `device`, and their FLOPs."""
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(batch, i, generator=g).to(device) for i, _ in sizes]
    w = [torch.randn(o, i, generator=g).to(device) for i, o in sizes]
    grad = [torch.randn(batch, o, generator=g).to(device) for _, o in sizes]

    def step() -> None:
        for k, (xi, wi, gi) in enumerate(zip(x, w, grad, strict=True)):
            xi @ wi.T
            gi.T @ xi
            if k:
                gi @ wi
    return step, sum((3 if k else 2) * 2 * batch * i * o for k, (i, o) in enumerate(sizes))


def concurrent(commands: list[list[str]], cwd: Path, env: dict[str, str]) -> dict:
    """Run the commands at once, each as its own process, and time them: seconds from the first
    start to the last exit ("wall"), and each process's own marks (loop.STARTUP_LOG: "ready",
    "first_step") and exit, from the common start."""
    logs = [cwd / f"concurrent{i}.log" for i in range(len(commands))]
    for log in logs:
        log.unlink(missing_ok=True)
    start = time.time()
    running = [subprocess.Popen(cmd, cwd=cwd, env={**env, loop.STARTUP_LOG: str(log)}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for cmd, log in zip(commands, logs, strict=True)]
    exits = []
    for cmd, process in zip(commands, running, strict=True):
        _, err = process.communicate()
        exits.append(time.time() - start)
        if process.returncode:
            for other in running:
                if other.poll() is None:
                    other.kill()
            raise RuntimeError(f"{' '.join(cmd)} exited {process.returncode}: {err[-2000:]}")
    processes = []
    for log, end in zip(logs, exits, strict=True):
        marks = dict(line.split() for line in log.read_text().splitlines()) if log.exists() else {}
        processes.append({**{event: float(t) - start for event, t in marks.items()}, "exit": end})
    return {"wall": max(exits), "processes": processes}


def concurrency_table(train_command: Callable[[str], list[str]], ks: list[int], iterations: int, cwd: Path,
                      env: dict[str, str]) -> list[dict]:
    """For each K, K whole trainings of `iterations` started at once (train_command(out_dir) is
    one): the aggregate throughput (trainings x iterations / wall seconds) and its ratio to K = 1
    (to the smallest K measured where 1 is not among them)."""
    rows = []
    for k in ks:
        outs = [f"concurrent_k{k}_{i}" for i in range(k)]
        timed = concurrent([train_command(out) for out in outs], cwd, env)
        rows.append({"trainings": k, "iterations": iterations, "wall_s": timed["wall"],
                     "throughput_its": k * iterations / timed["wall"],
                     "first_step_s": max(p.get("first_step", float("nan")) for p in timed["processes"])})
        for out in outs:
            shutil.rmtree(cwd / out, ignore_errors=True)
    base = min(rows, key=lambda r: r["trainings"])["throughput_its"]
    for row in rows:
        row["x_single"] = row["throughput_its"] / base
    return rows


def profile_hours(profile: Path, throughput_its: float) -> dict:
    """A profile's trainings (its planned `train` stages) and their iterations, and the hours
    they take at `throughput_its` aggregate iterations per second (the other stages not counted:
    on the CPU beside the device, each takes seconds)."""
    from lth import plan, profiles
    from lth.params import from_dict

    p = from_dict(profiles.resolve(profile), profile)
    trainings = [s for s in plan.stages(p) if s.name == "train"]
    iterations = sum(p.experiments[s.item["experiment"]].train.iterations for s in trainings)
    return {"profile": profile.stem, "trainings": len(trainings), "iterations": iterations,
            "hours": iterations / throughput_its / 3600}
