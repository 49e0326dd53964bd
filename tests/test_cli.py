"""What a stage pays before its work starts: parsing imports nothing heavy, and the stages
that train import torch but nothing else heavy, never torch._dynamo (seconds of start-up,
paid when a torch.optim Optimizer is constructed), checked on whole `lth` processes."""

import os
import subprocess
import sys

import yaml

from lth.loop import STARTUP_LOG

HEAVY = ("torch", "torchvision", "pandas", "matplotlib", "seaborn", "dvc", "snakemake", "scipy")


def test_parsing_any_stage_s_arguments_imports_nothing_heavy():
    script = (
        "import sys\nfrom lth.cli import build_parser\n"
        "parser = build_parser()\n"
        "for argv in (['train', '--experiment', 'e', '--seed', '0', '--data', 'd', '--ticket', 't', '--mask', 'm',"
        " '--out', 'o'], ['supermask', '--experiment', 'e', '--seed', '0', '--data', 'd', '--theta0', 't',"
        " '--out', 'o'], ['figures', '--tables', 't', '--out', 'o'], ['report', '--results', 'r', '--out', 'o'],"
        " ['aggregate', '--out', 'o'], ['data', '--dataset', 'mnist', '--raw', 'r', '--out', 'o']):\n"
        "    parser.parse_args(argv)\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def imported(stderr: str) -> set[str]:
    """Module names from `python -X importtime` output."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def lth(args: list[str], cwd, log) -> set[str]:
    """Run `lth` as a program; the modules it imported. It ends with os._exit, after flushing
    what it printed to a pipe (its one-line summary)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "lth.cli", *args], cwd=cwd, text=True,
                            capture_output=True, env={**os.environ, STARTUP_LOG: str(log)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"{args[0]}: "), result.stdout
    return imported(result.stderr)


def test_stages_that_train_never_import_torch_dynamo(tmp_path, tiny_params, prepared):
    """Whole `lth train`, `untrained` and `supermask` processes; each also marks the end of its
    set-up (and its first step) in LTH_STARTUP_LOG, which benchmarks/bench.py times."""
    tiny_params["experiments"]["tiny"]["supermask"] = {
        "untrained": {"criteria": ["large_final"], "actions": ["original"], "rates": {"fc": 0.2, "output": 0.1},
                      "steps": 1},
        "learned": {"iterations": 10, "batch_size": 50, "lr": 100, "momentum": 0.9, "weights": "original",
                    "eval_every": 10, "samples": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params))
    exp, data = ["--experiment", "tiny", "--seed", "0"], ["--data", str(prepared)]
    lth(["init", *exp, "--out", "theta0.safetensors", "--mask", "mask.safetensors"], tmp_path, tmp_path / "init.log")
    stages = {
        "train": ["train", *exp, *data, "--ticket", "theta0.safetensors", "--mask", "mask.safetensors", "--out", "r0"],
        "untrained": ["untrained", *exp, *data, "--theta0", "theta0.safetensors", "--trained",
                      "r0/trained.safetensors", "--out", "untrained.csv"],
        "supermask": ["supermask", *exp, *data, "--theta0", "theta0.safetensors", "--out", "sm"],
    }
    for stage, args in stages.items():
        modules = lth(args, tmp_path, tmp_path / f"{stage}.log")
        assert "torch" in modules and "torch._dynamo" not in modules, stage
        assert not modules & {"torchvision", "pandas", "matplotlib", "seaborn", "scipy", "sympy", "dvc"}, stage
        marks = [line.split() for line in (tmp_path / f"{stage}.log").read_text().splitlines()]
        assert [event for event, _ in marks] == (["ready"] if stage == "untrained" else ["ready", "first_step"])
        assert sorted(float(t) for _, t in marks) == [float(t) for _, t in marks]
    # the check sees torch._dynamo where a torch.optim Optimizer is constructed
    control = subprocess.run([sys.executable, "-X", "importtime", "-c",
                              "import torch; torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])"],
                             capture_output=True, text=True, check=True)
    assert "torch._dynamo" in imported(control.stderr)
