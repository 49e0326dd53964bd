"""Snakemake and dvc see what lth plans, checked without running a stage (seconds each)."""

import copy
import json
import sys

import pytest
import yaml
from conftest import REPO, TINY, make_workspace, run, snakemake_dry_run

from lth import plan, profiles
from lth.params import MISSING, from_dict, lookup


def test_snakemake_dry_run_plans_exactly_the_plans_commands(tmp_path):
    ws = make_workspace(tmp_path / "ws", TINY)
    assert snakemake_dry_run(ws) == {s.id: s.cmd for s in plan.stages(from_dict(TINY))}


def test_snakemake_plans_the_stability_stages_as_lth_does(tmp_path):
    params = copy.deepcopy(TINY)
    params["seeds"] = [0, 1]
    params["experiments"]["tiny"]["stability"] = {"rounds": [0, 2], "rewind_iterations": [0, 10], "points": 5}
    stages = {s.id: s.cmd for s in plan.stages(from_dict(params))}
    assert snakemake_dry_run(make_workspace(tmp_path / "ws", params)) == stages
    assert len([s for s in stages if s.startswith("stability@")]) == 8


@pytest.fixture(scope="module")
def zhou_quick(tmp_path_factory):
    """A workspace whose params.yaml and dvc.yaml were written by `lth profile` and `lth dvc-yaml`."""
    ws = make_workspace(tmp_path_factory.mktemp("zhou") / "ws", TINY)
    run(["lth", "profile", str(REPO / "profiles/zhou_mnist_quick.yaml")], ws)
    run(["lth", "dvc-yaml"], ws)
    return ws


def test_snakemake_plans_a_profiles_params_as_lth_does(zhou_quick):
    resolved = profiles.resolve(REPO / "profiles/zhou_mnist_quick.yaml")
    stages = {s.id: s.cmd for s in plan.stages(from_dict(resolved))}
    assert snakemake_dry_run(zhou_quick) == stages
    assert any(s.startswith("supermask@") for s in stages) and len(stages) > 100


def test_dvc_reads_the_values_lth_resolved_for_every_param_of_every_stage(zhou_quick):
    script = "import json, dvc.api; print(json.dumps(dvc.api.params_show()))"
    run(["dvc", "init", "--no-scm", "-q"], zhou_quick)
    seen = json.loads(run([sys.executable, "-c", script], zhou_quick).stdout)
    resolved = profiles.resolve(REPO / "profiles/zhou_mnist_quick.yaml")
    keys = {k for s in plan.stages(from_dict(resolved)) for k in s.params}
    assert {k.split(".")[0] for k in keys} == set(resolved)  # every section reaches some stage
    for key in sorted(keys):
        assert lookup(resolved, key) is not MISSING
        assert json.dumps(lookup(seen, key)) == json.dumps(lookup(resolved, key)), key
    assert yaml.safe_load((zhou_quick / "dvc.yaml").read_text())["stages"]["train"]["foreach"]
