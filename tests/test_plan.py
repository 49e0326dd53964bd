import ast
import subprocess
import sys
from pathlib import PurePath

import numpy as np
import pytest
import yaml
from conftest import REPO

from lth import LthError, outputs, plan
from lth.artifacts import save_arrays
from lth.params import from_dict, load


def test_repository_dvc_yaml_is_in_sync_with_params_yaml():
    plan.check_dvc_yaml(load(REPO / "params.yaml"), REPO / "dvc.yaml")


def test_check_fails_loudly_when_params_and_dvc_yaml_disagree(tmp_path, tiny_params):
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(plan.dvc_yaml(from_dict(tiny_params)))
    tiny_params["experiments"]["tiny"]["prune"]["rounds"] = 3
    with pytest.raises(LthError, match=r"dvc.yaml does not match params.yaml \(it lacks prune@tiny-s0-r03, "
                                       r".*nothing has run. Run `lth dvc-yaml`, then run again"):
        plan.check_dvc_yaml(from_dict(tiny_params), dvc_yaml)
    tiny_params["experiments"]["tiny"]["prune"]["rounds"] = 2
    tiny_params["figures"]["formats"] = ["png", "pdf"]
    with pytest.raises(LthError, match=r"\(the commands, files or params of figures differ\)"):
        plan.check_dvc_yaml(from_dict(tiny_params), dvc_yaml)


def test_lth_check_command_exits_nonzero_when_out_of_sync(tmp_path, tiny_params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    result = subprocess.run([sys.executable, "-m", "lth.cli", "check"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "dvc.yaml does not match params.yaml (it lacks aggregate, check, data@mnist" in result.stderr
    (tmp_path / "dvc.yaml").unlink()
    result = subprocess.run([sys.executable, "-m", "lth.cli", "check"], cwd=tmp_path, capture_output=True, text=True)
    assert "dvc.yaml does not match params.yaml (there is none); nothing has run. Run `lth dvc-yaml`" in result.stderr


def stages_of(params):
    return {s.id: s for s in plan.stages(from_dict(params))}


def test_plan_chains_rounds_through_prune_reset_train(tiny_params):
    stages = stages_of(tiny_params)
    r1 = "runs/tiny/seed0/round01"
    assert "runs/tiny/seed0/round00/trained.safetensors" in stages["prune@tiny-s0-r01"].deps
    assert stages["prune@tiny-s0-r01"].outs == (f"{r1}/mask.safetensors", f"{r1}/sparsity.json")
    assert set(stages["reset@tiny-s0-r01"].deps) >= {f"{r1}/mask.safetensors", "runs/tiny/seed0/theta0.safetensors"}
    assert set(stages["train@tiny-s0-r01"].deps) >= {f"{r1}/ticket.safetensors", f"{r1}/mask.safetensors"}
    assert "experiments.tiny.train" in stages["train@tiny-s0-r00"].params
    assert not any("prune" in x for x in stages["train@tiny-s0-r00"].params)  # new rates keep round 0


def test_controls_reuse_the_rounds_mask(tiny_params):
    tiny_params["experiments"]["tiny"]["controls"] = ["reinit", "random"]
    stages = stages_of(tiny_params)
    mask = "runs/tiny/seed0/round02/mask.safetensors"
    assert mask in stages["reinit@tiny-s0-r02"].deps
    assert stages["train@tiny-s0-r02-reinit"].item["mask"] == mask
    assert mask in stages["shuffle@tiny-s0-r02"].deps
    random_mask = "runs/tiny/seed0/round02/random/mask.safetensors"
    assert set(stages["reset@tiny-s0-r02-random"].deps) >= {random_mask, "runs/tiny/seed0/theta0.safetensors"}
    assert stages["train@tiny-s0-r02-random"].item["mask"] == random_mask


def test_lineages_with_the_same_round_0_share_it(tiny_params):
    other = dict(tiny_params["experiments"]["tiny"], prune={**tiny_params["experiments"]["tiny"]["prune"],
                                                           "schedule": "one_shot"})
    tiny_params["experiments"]["oneshot"] = other
    stages = stages_of(tiny_params)
    assert "init@oneshot-s0" not in stages and "train@oneshot-s0-r00" not in stages
    # one-shot prunes round 0's trained weights straight to round k's count
    prune2 = stages["prune@oneshot-s0-r02"]
    assert "runs/tiny/seed0/round00/trained.safetensors" in prune2.deps and "--steps 2" in prune2.cmd
    assert "runs/tiny/seed0/theta0.safetensors" in stages["reset@oneshot-s0-r02"].deps
    # a different training does not share
    tiny_params["experiments"]["oneshot"]["train"] = dict(other["train"], lr=0.1)
    assert "train@oneshot-s0-r00" in stages_of(tiny_params)


def test_rewinding_resets_to_round_0s_weights_at_iteration_k(tiny_params):
    tiny_params["experiments"]["tiny"]["reset"]["rewind_iteration"] = 10
    stages = stages_of(tiny_params)
    assert "runs/tiny/seed0/round00/rewind.safetensors" in stages["reset@tiny-s0-r02"].deps
    assert "runs/tiny/seed0/round00/rewind.safetensors" in stages["train@tiny-s0-r00"].outs
    assert "experiments.tiny.reset.rewind_iteration" in stages["train@tiny-s0-r00"].params


@pytest.mark.parametrize("rewind", [0, 10])
def test_rewound_rounds_start_at_the_rewind_points_place_in_the_schedule(tiny_params, rewind):
    """Round 0 starts the learning-rate schedule at step 0; every later round and its controls
    start from the rewind point, at its step (open_lth's semantics)."""
    tiny_params["experiments"]["tiny"]["reset"]["rewind_iteration"] = rewind
    tiny_params["experiments"]["tiny"]["controls"] = ["reinit", "random"]
    trainings = {k: s.cmd for k, s in stages_of(tiny_params).items() if k.startswith("train@")}
    assert "--schedule-start 0 " in trainings.pop("train@tiny-s0-r00")
    assert set(trainings) == {f"train@tiny-s0-r0{k}{b}" for k in (1, 2) for b in ("", "-reinit", "-random")}
    assert all(f"--schedule-start {rewind} " in cmd for cmd in trainings.values())


STABILITY = {"rounds": [0, 2], "rewind_iterations": [0, 10], "points": 5}


def test_stability_branches_off_each_rounds_starting_network(tiny_params):
    tiny_params["seeds"] = [0, 1]
    tiny_params["experiments"]["tiny"]["controls"] = ["reinit"]
    tiny_params["experiments"]["tiny"]["stability"] = STABILITY
    stages = stages_of(tiny_params)
    dense, sparse = stages["stability@tiny-s0-r00-k10"], stages["stability@tiny-s0-r02-k0"]
    assert set(dense.deps) >= {"runs/tiny/seed0/theta0.safetensors", "runs/tiny/seed0/round00/mask.safetensors"}
    assert set(sparse.deps) >= {"runs/tiny/seed0/round02/ticket.safetensors", "runs/tiny/seed0/round02/mask.safetensors"}
    assert "runs/tiny/seed0/stability/round02/k0/instability.json" in sparse.outs
    assert "--rewind-iteration 10" in dense.cmd and "experiments.tiny.stability.points" in dense.params
    assert not any("stability.r" in k for k in dense.params)  # a new round or k adds stages, reruns none
    assert len([s for s in stages if s.startswith("stability@")]) == 2 * 2 * 2
    # the copies' seeds: two per trial and round, the same for every k, colliding with no other seed
    copies = {s.id: [int(x) for x in s.cmd.split("--copy-seeds ")[1].split()[:2]] for s in stages.values()
              if s.name == "stability"}
    assert copies["stability@tiny-s1-r02-k0"] == copies["stability@tiny-s1-r02-k10"]
    distinct = {x for k, pair in copies.items() if k.endswith("-k0") for x in pair}
    others = {int(s.cmd.split("--seed ")[1].split()[0]) for s in stages.values() if "--seed " in s.cmd}
    assert len(distinct) == 2 * 2 * 2 and not distinct & others
    assert "runs/tiny/seed1/stability/round00/k0/interpolation.csv" in stages["aggregate"].deps
    assert "results/stability.csv" in stages["report"].deps


def test_without_stability_the_plan_is_what_it_was(tiny_params):
    """Stability adds its stages and tables; a config without it plans the stages it had
    before stability existed: the results stages read and write the same four tables."""
    before = stages_of(tiny_params)
    tables = tuple(f"results/{t}" for t in ("rounds.csv", "curves.csv", "untrained.csv", "supermask.csv"))
    plots = ("results/plots/tiny/curves.csv", "results/plots/tiny/early_stop.csv")  # dvc's plots
    assert before["aggregate"].outs == tables + plots
    assert before["figures"].deps[-4:] == tables
    assert before["report"].deps[-3:] == ("results/rounds.csv", "results/untrained.csv", "results/supermask.csv")
    tiny_params["experiments"]["tiny"]["stability"] = STABILITY
    after = stages_of(tiny_params)
    added = {k for k in after if k.startswith("stability@")}
    assert set(after) - set(before) == added and set(before) <= set(after)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"aggregate", "figures", "report"}
    assert after["aggregate"].outs == tables + ("results/stability.csv", "results/stability_path.csv") + plots
    assert [f.name for f in plan.figure_specs(from_dict(tiny_params))][-2:] == ["stability_path_tiny",
                                                                                "stability_barrier_tiny"]


def test_generated_dvc_yaml_expands_to_the_plans_commands(tiny_params):
    p = from_dict(tiny_params)
    doc = yaml.safe_load(plan.dvc_yaml(p))["stages"]
    # dvc's own first stage: it runs when params.yaml or dvc.yaml changed, and the stages that
    # depend on no other wait for it
    check = doc.pop("check")
    assert check["deps"][0] == "params.yaml" and check["outs"] == [plan.CHECKED]
    assert check["cmd"].startswith("lth check --params params.yaml --out results/checked.txt --plan ")
    # dvc.yaml cannot be a dependency: the digest of its stages in the command reruns the check
    tiny_params["experiments"]["tiny"]["prune"]["rounds"] = 3
    assert yaml.safe_load(plan.dvc_yaml(from_dict(tiny_params)))["stages"]["check"]["cmd"] != check["cmd"]
    assert [name for name, block in doc.items() if plan.CHECKED in block.get("do", block)["deps"]] == ["data", "init"]
    expanded = {}
    for name, block in doc.items():
        if "foreach" not in block:
            expanded[name] = block
            continue
        for key, item in block["foreach"].items():
            text = yaml.safe_dump(block["do"])
            for field, value in item.items():
                text = text.replace("${item." + field + "}", str(value))
            expanded[f"{name}@{key}"] = yaml.safe_load(text)
    for s in plan.stages(p):
        block = expanded.pop(s.id)
        block["deps"] = [d for d in block["deps"] if d != plan.CHECKED]
        assert block["cmd"] == s.cmd
        assert tuple(block["deps"]) == s.deps and tuple(block["outs"]) == s.outs
        assert tuple(block.get("params", ())) == s.params and tuple(block.get("metrics", ())) == s.metrics
    assert not expanded
    assert "experiments.tiny.train" in [p.replace("${item.experiment}", "tiny") for p in doc["train"]["do"]["params"]]


def test_prune_reset_shuffle_and_reinit_do_not_import_torch(tmp_path, tiny_params):
    rng = np.random.default_rng(0)
    w = {"fc1.weight": rng.normal(size=(8, 4)).astype(np.float32), "fc1.bias": np.zeros(8, np.float32),
         "output.weight": rng.normal(size=(3, 8)).astype(np.float32)}
    save_arrays(tmp_path / "w.safetensors", w)
    save_arrays(tmp_path / "m.safetensors", {n: np.ones(a.shape, bool) for n, a in w.items() if "weight" in n})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params))
    script = (
        "import sys\nfrom lth.cli import main\n"
        "assert main(['prune', '--experiment', 'tiny', '--initial', 'w.safetensors', '--trained', 'w.safetensors', '--mask', 'm.safetensors', '--out', 'm1.safetensors']) == 0\n"
        "assert main(['reset', '--experiment', 'tiny', '--seed', '0', '--theta0', 'w.safetensors', '--trained', 'w.safetensors', '--mask', 'm1.safetensors', '--out', 't.safetensors']) == 0\n"
        "assert main(['shuffle', '--seed', '1', '--mask', 'm1.safetensors', '--out', 'r.safetensors']) == 0\n"
        "assert main(['reinit', '--experiment', 'tiny', '--seed', '2', '--theta0', 'w.safetensors', '--mask', 'm1.safetensors', "
        "'--out', 'ri.safetensors']) == 0\n"
        "heavy = [m for m in ('torch', 'torchvision', 'pandas', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "t.safetensors").exists()


def test_figure_specs_name_their_experiments_and_files(tiny_params):
    base = tiny_params["experiments"]["tiny"]
    tiny_params["experiments"]["oneshot"] = dict(base, prune={**base["prune"], "schedule": "one_shot"})
    tiny_params["experiments"]["small"] = dict(base, prune={**base["prune"], "criterion": "small_final"})
    specs = {s.name: s for s in plan.figure_specs(from_dict(tiny_params))}
    assert list(specs) == ["fig1_mnist", "fig3_tiny", "fig4_mnist_lenet_300_100", "zhou_criterion_mnist_lenet_300_100"]
    # Frankle & Carbin's figures show their algorithm only; Fig. 1 its iterative lineages
    assert specs["fig1_mnist"].members == ("tiny",)
    assert specs["fig4_mnist_lenet_300_100"].members == ("tiny", "oneshot")
    comparison = specs["zhou_criterion_mnist_lenet_300_100"]
    assert (comparison.kind, comparison.varied, comparison.members) == ("zhou_comparison", "criterion",
                                                                        ("tiny", "small"))
    assert plan.figure_files(from_dict(tiny_params))[0] == "results/figures/fig1_mnist.png"


def test_every_planned_output_is_in_the_output_table_under_its_stage(tiny_params):
    """made_by, the writers and the Snakemake rules read outputs.OUTPUTS; the plan lays the
    files out: they agree on every stage kind, and every file of the table is planned."""
    e = tiny_params["experiments"]["tiny"]
    e["controls"] = ["reinit", "random"]
    e["reset"]["rewind_iteration"] = 10
    e["supermask"] = {"untrained": {"criteria": ["large_final"], "actions": ["original"],
                                    "rates": {"fc": 0.5, "output": 0.2}, "steps": 1},
                      "learned": {"iterations": 20, "batch_size": 50, "lr": 100, "momentum": 0.9,
                                  "weights": "signed_constant", "eval_every": 10, "samples": 2}}
    e["stability"] = STABILITY
    planned = {}
    for s in [plan.check_stage(), *plan.stages(from_dict(tiny_params))]:
        for path in (*s.outs, *s.metrics):
            assert outputs.made_by(path) == s.name, path
            planned.setdefault(s.name, set()).add(path)
    assert set(planned) == set(outputs.OUTPUTS)
    for stage, ends in outputs.OUTPUTS.items():
        for end in ends:
            assert any(PurePath(path).match(end) for path in planned[stage]), (stage, end)


def test_made_by_names_no_stage_for_a_file_no_stage_writes():
    assert outputs.made_by("elsewhere/weights.safetensors") == "unknown"
    assert outputs.made_by("out/round00/mask.safetensors") == "init"
    assert outputs.made_by("out/round03/mask.safetensors") == "prune"


# Modules that stages import but do not depend on (an edit of them reruns nothing), and why
NOT_CODE = {
    "__init__.py": "LthError, and the version a result records as provenance",
    "params.py": "parses params.yaml: what a stage reads of it are its params dependencies",
    "outputs.py": "file names: a new name changes the stage's outs in dvc.yaml, which reruns it",
}
SRC = REPO / "src" / "lth"


def lth_imports(tree: ast.AST) -> set[str]:
    """The src/lth modules imported anywhere in `tree` (lazy imports too), as file names."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "lth":
            found |= {f"{a.name}.py" if (SRC / f"{a.name}.py").exists() else "__init__.py" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lth."):
            found.add(node.module.split(".")[1] + ".py")
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] + ".py" for a in node.names if a.name.startswith("lth.")}
    return found


@pytest.mark.parametrize("stage", list(plan.TEMPLATES))
def test_a_stages_code_dependencies_are_the_modules_its_command_imports(stage):
    """The modules that `lth <stage>` runs (its cli function's imports and cli's own, followed
    transitively) are exactly the stage's code deps in plan.TEMPLATES, but for NOT_CODE."""
    cli = ast.parse((SRC / "cli.py").read_text())
    command = next(f for f in cli.body if isinstance(f, ast.FunctionDef) and f.name == f"cmd_{stage}")
    top_level = ast.Module([n for n in cli.body if isinstance(n, (ast.Import, ast.ImportFrom))], [])
    todo, seen = lth_imports(command) | lth_imports(top_level), set()
    while todo:
        module = todo.pop()
        seen.add(module)
        if module not in NOT_CODE:
            todo |= lth_imports(ast.parse((SRC / module).read_text())) - seen
    assert seen - set(NOT_CODE) == set(plan.TEMPLATES[stage].code)
