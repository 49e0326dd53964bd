"""What made an artifact: recorded in every training's and learned supermask's
metrics.json (the report lists the trainings'), beside the params it was made with."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import asdict
from pathlib import Path

from lth import __version__
from lth.params import DataParams, Experiment, RuntimeParams


def code_version() -> str:
    """The git commit of the checkout the code runs from ("-dirty" if src/ has edits),
    or the package version where the code is not a git checkout. One `git status` gives
    both (its `# branch.oid` header line, then a line per changed file): one process, not two."""
    src = Path(__file__).resolve().parent
    try:
        lines = subprocess.run(["git", "-C", str(src), "status", "--porcelain=v2", "--branch", "--", "."],
                               capture_output=True, text=True, check=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return f"lth {__version__}"
    commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), "(initial)")
    if commit == "(initial)":  # a repository without commits
        return f"lth {__version__}"
    dirty = any(not line.startswith("#") for line in lines)
    return f"git {commit[:12]}{'-dirty' if dirty else ''}"


def record(device: str, threads: int, seed: int, tf32: bool, **computing: str) -> dict:
    """`tf32`: runtime.tf32 (on CUDA, whether products rounded to TF32); `computing`: how the
    result was computed where a stage has several ways (train's `loop`: eager or cuda_graphs)."""
    import torch

    return {"code": code_version(), "lth": __version__, "torch": torch.__version__,
            "python": platform.python_version(), "device": device, "threads": threads, "seed": seed,
            "tf32": tf32, **computing}


def params(experiment: Experiment, runtime: RuntimeParams, data: DataParams, seed: int) -> dict:
    """The resolved params a result was made with: its experiment's whole section (defaults
    filled in), and what it used of runtime, data (the split that made its input, and the
    scaling) and seeds."""
    # an optional section the experiment leaves out (None) is not recorded: adding one to the
    # params changes no existing result's metrics
    section = {k: v for k, v in asdict(experiment).items() if v is not None}
    return {"experiment": section,
            "runtime": {"device": runtime.device, "threads": runtime.threads},
            # not local_dirs: verified files are the same wherever they came from
            "data": {k: v for k, v in asdict(data).items() if k != "local_dirs"},
            "seed": seed}
