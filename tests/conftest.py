"""Shared fixtures: a tiny params dict, real MNIST acquired once per session, workspaces.

Tiers: tests that use a fixture which downloads data are marked `network`, and tests that
run pipelines or trainings in subprocesses are marked `pipeline` (here or in their module),
so that `pytest -m "not pipeline and not network"` is a quick offline unit run."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: lth, dvc, snakemake

TINY = {
    "seeds": [0],
    "runtime": {"device": "cpu", "threads": 1},
    "data": {"normalize": "standardize", "validation_size": 500, "split_seed": 0, "train_subset": 1000, "test_subset": 500,
             "local_dirs": {}},
    "experiments": {
        "tiny": {
            "dataset": "mnist",
            "model": {"name": "lenet_300_100"},
            "train": {"lr": 0.0012, "batch_size": 60, "iterations": 30, "eval_every": 10},
            "prune": {"schedule": "iterative", "scope": "layerwise", "criterion": "large_final",
                      "rates": {"fc": 0.2, "output": 0.1}, "rounds": 2},
            "reset": {"rewind_iteration": 0, "kept": "original", "pruned": "zero"},
            "controls": [],
        },
    },
    "figures": {"formats": ["png"], "dpi": 60, "curve_percents": [100, 64.1]},
}


NETWORK_FIXTURES = {"mnist_dir", "fashion_dir"}
# Tests that run trainings (or the benchmark) in subprocesses, by module: minutes, not seconds.
SUBPROCESS_TRAININGS = {
    "test_faults.py": {"test_a_killed_training_resumes_bit_identical", "test_a_damaged_or_foreign_checkpoint_is_ignored",
                       "test_checkpoint_every_changes_no_result",
                       "test_a_params_edit_while_a_stage_runs_fails_that_stage_if_it_read_the_key"},
    "test_bench.py": {"test_benchmark_writes_its_tables",
                      "test_the_device_table_runs_on_the_cpu_with_its_concurrency_table"},
    "test_train.py": {"test_a_training_whose_output_is_a_pipe_prints_progress_lines"},
    "test_cli.py": {"test_stages_that_train_never_import_torch_dynamo"},
    "test_graphed.py": {"test_the_device_check_runs_its_cpu_side_without_a_gpu"},
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if NETWORK_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.network)
        slow = SUBPROCESS_TRAININGS.get(item.path.name, set())
        if missing := sorted(name for name in slow if not hasattr(item.module, name)):
            raise pytest.UsageError(f"tests/conftest.py SUBPROCESS_TRAININGS names {missing}, "
                                    f"not tests of {item.path.name}: renamed?")
        if item.originalname in slow:
            item.add_marker(pytest.mark.pipeline)


@pytest.fixture
def tiny_params() -> dict:
    return copy.deepcopy(TINY)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """Real MNIST, acquired once per session the way `lth data` does (verified md5s)."""
    from lth.data import acquire
    from lth.params import DataParams

    raw = tmp_path_factory.mktemp("mnist") / "raw"
    acquire("mnist", DataParams(validation_size=5000, split_seed=0), raw)
    return raw


def tool_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True,
        timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n"
                             f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}")
    return result


def make_workspace(path: Path, params: dict) -> Path:
    """A copy of the project's pipeline files with `params` as params.yaml."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "workflow", path / "workflow", symlinks=True)
    shutil.copytree(REPO / "src", path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_params(path, params)
    return path


def init_dvc(path: Path, env: dict, git: bool = False) -> None:
    """Make a workspace a DVC project (a git repository too for `dvc exp`), with the
    project's plot templates and a dvc.yaml generated from its params.yaml."""
    if git:
        run(["git", "init", "-q"], path, env)
        run(["git", "config", "user.email", "test@example.com"], path, env)
        run(["git", "config", "user.name", "test"], path, env)
    run(["dvc", "init", "-q", *([] if git else ["--no-scm"])], path, env)
    run(["dvc", "config", "core.analytics", "false"], path, env)
    shutil.copytree(REPO / ".dvc/plots", path / ".dvc/plots")
    run(["lth", "dvc-yaml"], path, env)
    if git:
        run(["git", "add", "-A"], path, env)
        run(["git", "commit", "-q", "-m", "workspace"], path, env)


def columns(d: dict) -> list[str]:
    """The columns `dvc exp show` makes of a params or metrics mapping: dicts flattened (an empty
    one gives none), lists kept whole."""
    return [f"{k}.{leaf}" if isinstance(v, dict) else k
            for k, v in d.items() for leaf in (columns(v) if isinstance(v, dict) else [None])]


def write_params(workspace: Path, params: dict) -> None:
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


class Pipeline:
    """A workspace driven by one tool (dvc or snakemake); `repro` returns the stages that ran."""

    def __init__(self, tool: str, path: Path, params: dict, mnist_dir: Path):
        self.tool, self.path = tool, path
        self.params = copy.deepcopy(params)
        self.params["data"]["local_dirs"] = {"mnist": str(mnist_dir)}
        self.env = tool_env()
        self.env["DVC_SITE_CACHE_DIR"] = str(path.parent / f"{path.name}-dvc-site-cache")
        make_workspace(path, self.params)
        if tool == "dvc":
            init_dvc(path, self.env)

    def set(self, dotted: str, value) -> None:
        *parents, last = dotted.split(".")
        node = self.params
        for key in parents:
            node = node[key]
        node[last] = value
        write_params(self.path, self.params)
        if self.tool == "dvc":
            run(["lth", "dvc-yaml"], self.path, self.env)

    def repro(self) -> set[str]:
        if self.tool == "dvc":
            out = run(["dvc", "repro"], self.path, self.env).stdout
            self.last_commands = [c for c in re.findall(r"^> (lth .*)$", out, re.M) if not c.startswith("lth check ")]
            # `check` runs every time (it refuses a dvc.yaml that does not match params.yaml)
            return set(re.findall(r"^Running stage '([^']+)':", out, re.M)) - {"check"}
        result = run(["snakemake", "--cores", "2", "--printshellcmds"], self.path, self.env)
        out = result.stdout + result.stderr
        self.last_commands = [c.split(" > logs/")[0] for c in re.findall(r"^Shell command: (lth .*)$", out, re.M)]
        return snakemake_jobs(out, self.params)


def snakemake_jobs(log: str, params: dict) -> set[str]:
    """Stage ids (as dvc names them: train@tiny-s0-r01-reinit) of the jobs in a snakemake log:
    the planned stages that make the jobs' outputs."""
    from lth import plan
    from lth.params import from_dict

    stage_of = {out: s.id for s in plan.stages(from_dict(params)) for out in (*s.outs, *s.metrics)}
    jobs = set()
    for rule, block in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", log, re.M):
        if rule == "all":
            continue
        jobs.add(stage_of[re.findall(r"output: (.*)", block)[0].split(", ")[0]])
    return jobs


def snakemake_dry_run(workspace: Path, env: dict | None = None) -> dict[str, str]:
    """{stage id: command} of every job `snakemake -n --printshellcmds` plans (as dvc names
    them), each job found as the planned stage that makes its first output."""
    from lth import plan
    from lth.params import load

    stage_of = {out: s.id for s in plan.stages(load(workspace / "params.yaml")) for out in (*s.outs, *s.metrics)}
    result = run(["snakemake", "-n", "--printshellcmds"], workspace, env, timeout=300)
    jobs = {}
    for rule, block, command in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)Shell command: (.*)$",
                                           result.stdout + result.stderr, re.M):
        if rule != "all":
            jobs[stage_of[re.findall(r"output: (.*)", block)[0].split(", ")[0]]] = command.split(" > logs/")[0]
    return jobs


def digests(root: Path, subdirs=("runs", "results", "data/prepared")) -> dict[str, str]:
    """sha256 of every artifact, but dvc's check mark (Snakemake has no `check` stage)."""
    import hashlib

    from lth import plan

    out = {}
    for sub in subdirs:
        for f in sorted((root / sub).rglob("*")):
            if f.is_file() and not f.name.startswith(".") and f != root / plan.CHECKED:
                out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory) -> Path:
    """Real Fashion-MNIST, acquired once per session the way `lth data` does."""
    from lth.data import DataError, acquire
    from lth.params import DataParams

    raw = tmp_path_factory.mktemp("fashion") / "raw"
    params = DataParams(validation_size=5000, split_seed=0)
    try:
        acquire("fashion_mnist", params, raw)
    except DataError:
        # A fresh Debian machine may have no package lists yet: refresh them (root only).
        if os.geteuid() != 0:
            raise
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600)
        acquire("fashion_mnist", params, raw)
    return raw


@pytest.fixture
def prepared(tmp_path):
    """A small synthetic dataset in the prepared format, learnable from a few pixels."""
    import numpy as np

    from lth.artifacts import save_arrays

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 200), ("validation", 60), ("test", 60)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 50, (n, 1, 28, 28)).astype(np.uint8)
        images[np.arange(n), 0, labels, labels] = 255
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.astype(np.int64)
    path = tmp_path / "prepared.safetensors"
    arrays["normalization"] = np.array([[0.1], [0.3]])  # per-channel mean, std
    save_arrays(path, arrays)
    return path
