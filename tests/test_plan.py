import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import REPO
from lth import LthError, plan
from lth.artifacts import save_arrays
from lth.params import from_dict, load


def test_repository_dvc_yaml_is_in_sync_with_params_yaml():
    plan.check_dvc_yaml(load(REPO / "params.yaml"), REPO / "dvc.yaml")


def test_check_fails_loudly_when_params_and_dvc_yaml_disagree(tmp_path, tiny_params):
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(plan.dvc_yaml(from_dict(tiny_params)))
    tiny_params["prune"]["rounds"] = 3
    with pytest.raises(LthError, match="out of date with params.yaml.*lth dvc-yaml"):
        plan.check_dvc_yaml(from_dict(tiny_params), dvc_yaml)


def test_lth_check_command_exits_nonzero_when_out_of_sync(tmp_path, tiny_params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    result = subprocess.run([sys.executable, "-m", "lth.cli", "check"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "dvc.yaml is out of date" in result.stderr


def test_plan_chains_rounds_through_prune_reset_train(tiny_params):
    stages = {s.id: s for s in plan.stages(from_dict(tiny_params))}
    r1 = "runs/tiny/seed0/round01"
    assert "runs/tiny/seed0/round00/trained.safetensors" in stages["prune@s0-r01"].deps
    assert stages["prune@s0-r01"].outs == (f"{r1}/mask.safetensors",)
    assert set(stages["reset@s0-r01"].deps) >= {f"{r1}/mask.safetensors", "runs/tiny/seed0/theta0.safetensors"}
    assert set(stages["train@s0-r01"].deps) >= {f"{r1}/ticket.safetensors", f"{r1}/mask.safetensors"}
    assert stages["train@s0-r00"].params == ("model", "train")
    assert "prune.rates" not in stages["train@s0-r00"].params  # so new rates keep round 0


def test_generated_dvc_yaml_expands_to_the_plans_commands(tiny_params):
    p = from_dict(tiny_params)
    doc = yaml.safe_load(plan.dvc_yaml(p))["stages"]
    expanded = {}
    for name, block in doc.items():
        if "foreach" not in block:
            expanded[name] = block["cmd"]
            continue
        for key, item in block["foreach"].items():
            cmd = block["do"]["cmd"]
            for field, value in item.items():
                cmd = cmd.replace("${item.%s}" % field, str(value))
            expanded[f"{name}@{key}"] = cmd
    assert expanded == {s.id: s.cmd for s in plan.stages(p)}


def test_prune_and_reset_do_not_import_torch(tmp_path, tiny_params):
    rng = np.random.default_rng(0)
    w = {"fc1.weight": rng.normal(size=(8, 4)).astype(np.float32), "fc1.bias": np.zeros(8, np.float32),
         "output.weight": rng.normal(size=(3, 8)).astype(np.float32)}
    save_arrays(tmp_path / "w.safetensors", w)
    save_arrays(tmp_path / "m.safetensors", {n: np.ones(a.shape, bool) for n, a in w.items() if "weight" in n})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params))
    script = (
        "import sys\nfrom lth.cli import main\n"
        "assert main(['prune', '--trained', 'w.safetensors', '--mask', 'm.safetensors', '--out', 'm1.safetensors']) == 0\n"
        "assert main(['reset', '--theta0', 'w.safetensors', '--mask', 'm1.safetensors', '--out', 't.safetensors']) == 0\n"
        "heavy = [m for m in ('torch', 'torchvision', 'pandas', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "t.safetensors").exists()
