"""docs/architecture.md's "Add a mask criterion", followed to the letter in a copy of the
project: its patch applied, then `lth check`, `lth prune` and the tests it names. The test
fails if the documented steps are wrong (the patch no longer applies, or does something
else) or incomplete (a file the change needs is not among those it touches)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import REPO, make_workspace

GUIDE = REPO / "docs" / "architecture.md"
CRITERION = "small_movement"  # the guide's example: keep the weights that moved least


def guide_section(title: str) -> str:
    text = GUIDE.read_text()
    match = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^### |^## |\Z)", text, re.M | re.S)
    assert match, f"{GUIDE}: no section '### {title}'"
    return match.group(1)


def files_to_touch(section: str) -> set[str]:
    paragraph = re.search(r"^Files to touch: (.*?)\n\n", section, re.M | re.S)
    assert paragraph, "the section does not say which files to touch"
    return set(re.findall(r"`([^`]+)`", paragraph.group(1)))


def lth(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(project / "src"))
    return subprocess.run([sys.executable, "-m", "lth.cli", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_documented_criterion_steps_work_in_a_copy(tmp_path, tiny_params):
    from lth.artifacts import load_arrays, save_arrays

    section = guide_section("Add a mask criterion")
    patch = re.search(r"^```diff\n(.*?)^```", section, re.M | re.S).group(1)
    assert set(re.findall(r"^\+\+\+ b/(\S+)", patch, re.M)) == files_to_touch(section)

    tiny_params["experiments"]["tiny"]["prune"]["criterion"] = CRITERION
    project = make_workspace(tmp_path / "project", tiny_params)
    shutil.copytree(REPO / "tests", project / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", project)
    where = subprocess.run([sys.executable, "-c", "import lth; print(lth.__file__)"], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(project / "src")))
    assert ok(where).startswith(str(project / "src"))  # the copy's code runs, not the checkout's

    before = lth(project, "check")
    assert before.returncode == 1 and CRITERION in before.stderr, before.stderr  # unknown before the change

    # the copy is a repository of its own, so that `git apply` patches it and nothing around it
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    ok(subprocess.run(["git", "apply", "--verbose", "-"], input=patch, cwd=project, capture_output=True,
                      text=True))
    ok(lth(project, "dvc-yaml"))
    ok(lth(project, "check"))

    ok(lth(project, "init", "--experiment", "tiny", "--seed", "0", "--out", "theta0.safetensors",
           "--mask", "round00/mask.safetensors"))
    theta0 = load_arrays(project / "theta0.safetensors", made_by="init")
    rng = np.random.default_rng(0)
    trained = {n: (w + rng.normal(scale=0.05, size=w.shape)).astype(w.dtype) for n, w in theta0.items()}
    save_arrays(project / "round00/trained.safetensors", trained)
    ok(lth(project, "prune", "--experiment", "tiny", "--initial", "theta0.safetensors",
           "--trained", "round00/trained.safetensors", "--mask", "round00/mask.safetensors",
           "--out", "round01/mask.safetensors"))

    mask = load_arrays(project / "round01/mask.safetensors", made_by="prune")
    rates = tiny_params["experiments"]["tiny"]["prune"]["rates"]
    assert set(mask) == {"fc1.weight", "fc2.weight", "output.weight"}
    for name, kept in mask.items():
        moved = np.abs(trained[name] - theta0[name]).ravel()
        keep = moved.size - int(round(rates["output" if name.startswith("output") else "fc"] * moved.size))
        expected = np.zeros(moved.size, bool)
        expected[np.argsort(moved, kind="stable")[:keep]] = True
        assert np.array_equal(kept.ravel(), expected), name
        largest_final = np.argsort(-np.abs(trained[name]).ravel(), kind="stable")[:keep]
        assert not expected[largest_final].all(), name  # not what the default criterion keeps

    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_pruning.py",
                            "-k", CRITERION], cwd=project, capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, PYTHONPATH=str(project / "src")))
    assert "2 passed" in tests.stdout, tests.stdout + tests.stderr
