"""Snakemake the way its users work: `--lint`, the conda environment, `--report`, config
overrides refused, `--list-changes params`."""

import copy
import re

import pytest
import yaml
from conftest import REPO, TINY, Pipeline, make_workspace, run


def test_the_conda_environment_holds_pyprojects_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "workflow/envs/lth.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert [d for d in pip if not d.startswith("-e")] == project["dependencies"]
    assert "-e ../.." in pip  # lth itself, from the checkout
    assert f"python{project['requires-python']}" in env["dependencies"]


def test_snakemake_lint_passes(tmp_path):
    ws = make_workspace(tmp_path / "ws", TINY)
    result = run(["snakemake", "--lint"], ws, timeout=300)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


@pytest.mark.parametrize("option, named", [
    (["--config", "runtime={device: gpu, threads: 1}"], "--config runtime=..."),
    (["--configfile", "other.yaml"], "--configfile {ws}/other.yaml"),
])
def test_config_overrides_are_refused_naming_the_option(tmp_path, option, named):
    ws = make_workspace(tmp_path / "ws", TINY)
    other = copy.deepcopy(TINY)
    other["experiments"]["tiny"]["train"]["lr"] = 0.002
    (ws / "other.yaml").write_text(yaml.safe_dump(other))
    result = run(["snakemake", "-n", *option], ws, check=False, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{named.format(ws=ws)} would change the params of params.yaml" in out and "Edit it instead" in out
    assert "params.yaml: runtime.device" not in out  # params.yaml itself is fine


@pytest.mark.pipeline
def test_report_has_the_reports_text_and_captions_and_list_changes_params_is_right(tmp_path, mnist_dir):
    pipe = Pipeline("snakemake", tmp_path / "ws", TINY, mnist_dir)
    pipe.repro()

    def params_changes():
        out = run(["snakemake", "--list-changes", "params"], pipe.path).stdout
        return {line for line in out.splitlines() if line.startswith(("runs/", "results/", "data/"))}

    assert params_changes() == set()  # right after a run, nothing changed
    pipe.set("experiments.tiny.train.lr", 0.002)
    changed = params_changes()
    assert {f"runs/tiny/seed0/round{k:02d}/metrics.json" for k in range(3)} <= changed
    # prune, reset and data read no train.* key
    assert not {f for f in changed if f.endswith(("/mask.safetensors", "/ticket.safetensors")) or f.startswith("data/")}
    pipe.set("experiments.tiny.train.lr", TINY["experiments"]["tiny"]["train"]["lr"])

    run(["snakemake", "--cores", "1", "--report", "report.html"], pipe.path)
    html = (pipe.path / "report.html").read_text().replace("&amp;", "&")
    assert "The lottery-ticket pipeline of" in html  # workflow/report/workflow.rst
    report = (pipe.path / "results/report.md").read_text()
    heading = re.search(r"^## tiny: .*$", report, re.M).group(0)
    assert heading in html  # the report's text itself
    for kind in ("fig1", "fig3", "fig4"):  # a caption for every figure of the plan
        assert (REPO / f"workflow/report/{kind}.rst").read_text().splitlines()[0] in html, kind
