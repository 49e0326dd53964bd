"""DVC the way its users work, on a tiny git workspace: edits of params.yaml that change which
stages exist (by hand, by `dvc exp run -S`, in a queued sweep), the compact metrics that
`dvc exp show` lists, and the plots that `dvc plots show` and `dvc plots diff` draw."""

import copy
import csv
import io
import json
import re

import pytest
import yaml
from conftest import TINY, columns, digests, init_dvc, make_workspace, run, tool_env, write_params

pytestmark = pytest.mark.pipeline
RESULTS = {"aggregate", "figures", "report"}
REFUSED = "dvc.yaml does not match params.yaml"
# every column that is a file path (a dependency: dvc has one per file any stage reads); a metric
# column named after its file (two experiments) keeps it: the path ends at its ":"
DROP_FILES = r"[^:]*/[^:]*$|params\.yaml$"


@pytest.fixture(scope="module")
def ws(tmp_path_factory, mnist_dir):
    """A git and dvc workspace with TINY's params (2 rounds, no controls), run once."""
    path = tmp_path_factory.mktemp("dvc") / "ws"
    params = copy.deepcopy(TINY)
    params["data"]["local_dirs"] = {"mnist": str(mnist_dir)}
    make_workspace(path, params)
    env = tool_env()
    env["DVC_SITE_CACHE_DIR"] = str(path.parent / "site-cache")
    init_dvc(path, env, git=True)
    ran = ran_stages(run(["dvc", "repro"], path, env))
    commit(path, env)
    return {"path": path, "env": env, "params": params, "first_run": ran}


def ran_stages(result) -> list[str]:
    return re.findall(r"^Running stage '([^']+)':", result.stdout, re.M)


def commit(path, env) -> None:
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-q", "-m", "run", "--allow-empty"], path, env)


def test_metrics_are_one_compact_file_per_experiment(ws):
    path, env = ws["path"], ws["env"]
    assert set(ws["first_run"]) >= {"check", "data@mnist", "train@tiny-s0-r02"} | RESULTS
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], path, env).stdout)
    assert list(next(iter(shown.values()))["data"]) == ["results/metrics/tiny.json"]
    metrics = json.loads((path / "results/metrics/tiny.json").read_text())
    # the rounds Fig. 3 draws (figures.curve_percents: 100 and 64.1), each with its early stop
    assert list(metrics) == ["100%", "64.1%"] and list(metrics["64.1%"]) == ["ticket"]
    assert set(metrics["64.1%"]["ticket"]) == {"iteration", "test_accuracy"}
    header = next(csv.reader(io.StringIO(run(["dvc", "exp", "show", "--csv"], path, env).stdout)))
    # beside dvc's own columns, the params (every key of params.yaml) and the deps (one per file)
    # there are only these metrics: per-layer sparsity and provenance stay out of them
    params = set(columns(ws["params"]))
    deps = {c for c in header if (path / c).is_file() or (path / c).is_dir()}
    assert [c for c in header if c not in params | deps] == [
        "Experiment", "rev", "typ", "Created", "parent", "100%.ticket.iteration", "100%.ticket.test_accuracy",
        "64.1%.ticket.iteration", "64.1%.ticket.test_accuracy"]
    assert json.loads((path / "runs/tiny/seed0/round01/metrics.json").read_text())["provenance"]
    # no setting hides the file columns; docs/operations.md's --drop removes them all and nothing else
    shown = run(["dvc", "exp", "show", "--csv", "--drop", DROP_FILES], path, env).stdout
    assert next(csv.reader(io.StringIO(shown))) == [c for c in header if c not in deps]
    table = run(["dvc", "exp", "show", "--no-pager", "--drop", DROP_FILES], path, {**env, "COLUMNS": "120"}).stdout
    assert re.search(r"Experiment +Created +100%\.ticket\.iteration", table) and "workspace" in table, table


def test_plots_are_declared_and_drawn(ws, tmp_path):
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], ws["path"], ws["env"])
    html = (tmp_path / "plots/index.html").read_text()
    for title in ("tiny: test accuracy during training", "tiny: test accuracy at early stop",
                  "tiny: early-stop iteration"):
        assert f'"title": "{title}"' in html
    assert '"line": "64.1%"' in html and '"line": "winning ticket"' in html


EDITS = {  # what changes the plan: by hand (a params value), and as `dvc exp run -S` says it
    "more rounds": ("experiments.tiny.prune.rounds", 3, "experiments.tiny.prune.rounds=3"),
    "fewer rounds": ("experiments.tiny.prune.rounds", 1, "experiments.tiny.prune.rounds=1"),
    "a seed": ("seeds", [0, 1], "seeds=[0,1]"),
    "a control": ("experiments.tiny.controls", ["reinit"], "experiments.tiny.controls=[reinit]"),
    "an experiment": ("experiments.other", {**TINY["experiments"]["tiny"], "controls": ["random"]},
                      "+experiments.other=" + yaml.safe_dump({**TINY["experiments"]["tiny"], "controls": ["random"]},
                                                               default_flow_style=True, width=1000).strip()),
    "a figure format": ("figures.formats", ["png", "pdf"], "figures.formats=[png,pdf]"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edit_that_changes_the_plan_is_refused_before_any_stage_runs(ws, edit):
    path, env = ws["path"], ws["env"]
    key, value, override = EDITS[edit]
    before = digests(path)
    params = copy.deepcopy(ws["params"])
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value
    write_params(path, params)
    for cmd in (["dvc", "repro"], None, ["dvc", "exp", "run", "-S", override]):
        if cmd is None:  # then the same edit through dvc's own override
            run(["git", "checkout", "params.yaml"], path, env)
            continue
        result = run(cmd, path, env, check=False)
        out = result.stdout + result.stderr
        assert result.returncode != 0, out
        assert REFUSED in out and "nothing has run. Run `lth dvc-yaml`, then run again" in out, out
        assert ran_stages(result) == ["check"], out
        assert digests(path) == before  # the outputs of every stage that ran are intact
    run(["git", "checkout", "params.yaml"], path, env)


def test_after_lth_dvc_yaml_rounds_up_then_down_run_only_what_changed(ws):
    path, env = ws["path"], ws["env"]
    results = {k: v for k, v in digests(path).items() if k.startswith("results/")}
    params = copy.deepcopy(ws["params"])
    params["experiments"]["tiny"]["prune"]["rounds"] = 3
    write_params(path, params)
    run(["lth", "dvc-yaml"], path, env)
    ran = set(ran_stages(run(["dvc", "repro"], path, env)))
    assert ran == {"check", "prune@tiny-s0-r03", "reset@tiny-s0-r03", "train@tiny-s0-r03"} | RESULTS
    run(["git", "checkout", "params.yaml", "dvc.yaml"], path, env)
    result = run(["dvc", "repro"], path, env)
    assert not [s for s in ran_stages(result) if s.startswith(("train", "prune", "reset"))]
    # back to 2 rounds: the results are those of 2 rounds again, restored from dvc's run-cache
    assert {k: v for k, v in digests(path).items() if k.startswith("results/")} == results


def test_a_queued_sweep_runs_and_dvc_exp_show_and_plots_diff_list_it(ws, tmp_path):
    path, env = ws["path"], ws["env"]
    commit(path, env)
    run(["dvc", "exp", "run", "--queue", "-S", "experiments.tiny.train.lr=0.001,0.002"], path, env)
    # a sweep over a key that changes the stages is refused in its queued experiment, saying how
    run(["dvc", "exp", "run", "--queue", "-S", "experiments.tiny.prune.rounds=3", "--name", "rounds3"], path, env)
    result = run(["dvc", "exp", "run", "--run-all"], path, env)  # exits 0 whatever its experiments did
    assert "Failed to reproduce experiment(s) 'rounds3'" in result.stderr
    assert "A queued experiment cannot change which stages exist" in result.stdout
    # ... and runs when queued from a workspace whose dvc.yaml has them
    params = copy.deepcopy(ws["params"])
    params["experiments"]["tiny"]["prune"]["rounds"] = 3
    write_params(path, params)
    run(["lth", "dvc-yaml"], path, env)
    run(["dvc", "exp", "run", "--queue", "--name", "rounds3b"], path, env)
    run(["git", "checkout", "params.yaml", "dvc.yaml"], path, env)
    run(["dvc", "exp", "run", "--run-all"], path, env)
    shown = list(csv.DictReader(io.StringIO(run(["dvc", "exp", "show", "--csv"], path, env).stdout)))
    exps = {row["Experiment"]: row for row in shown if row["Experiment"]}
    lrs = {row["experiments.tiny.train.lr"]: name for name, row in exps.items()}
    assert {"0.001", "0.002"} <= set(lrs)
    assert exps[lrs["0.001"]]["64.1%.ticket.test_accuracy"] != exps[lrs["0.002"]]["64.1%.ticket.test_accuracy"]
    assert exps["rounds3b"]["experiments.tiny.prune.rounds"] == "3"
    # comparing them: the params that differ and the metrics, no file column
    changed = next(csv.reader(io.StringIO(run(["dvc", "exp", "show", "--csv", "--only-changed", "--drop", DROP_FILES],
                                               path, env).stdout)))
    assert {"experiments.tiny.train.lr", "experiments.tiny.prune.rounds", "64.1%.ticket.test_accuracy"} <= set(changed)
    assert not {"seeds", "params.yaml"} & set(changed) and not [c for c in changed if "/" in c], changed
    run(["dvc", "plots", "diff", lrs["0.001"], lrs["0.002"], "-o", str(tmp_path / "diff")], path, env)
    html = (tmp_path / "diff/index.html").read_text()
    assert f'"rev": "{lrs["0.001"]}"' in html and f'"rev": "{lrs["0.002"]}"' in html


def test_a_params_file_other_than_params_yaml_is_tracked_as_that_file(tmp_path, mnist_dir):
    params = copy.deepcopy(TINY)
    params["data"]["local_dirs"] = {"mnist": str(mnist_dir)}
    path = make_workspace(tmp_path / "ws", params)
    env = tool_env()
    env["DVC_SITE_CACHE_DIR"] = str(tmp_path / "site-cache")
    init_dvc(path, env)
    (path / "params.yaml").rename(path / "other.yaml")  # dvc.yaml still reads params.yaml
    result = run(["dvc", "repro", "init@tiny-s0"], path, env, check=False)
    assert result.returncode != 0 and "No such file or directory" in result.stderr and "/params.yaml" in result.stderr
    run(["lth", "dvc-yaml", "--params", "other.yaml"], path, env)
    doc = yaml.safe_load((path / "dvc.yaml").read_text())["stages"]
    assert doc["init"]["do"]["params"] == [{"other.yaml": ["experiments.${item.experiment}.model",
                                                           "experiments.${item.experiment}.dataset"]}]
    assert "--params other.yaml" in doc["check"]["cmd"]
    assert ran_stages(run(["dvc", "repro", "init@tiny-s0"], path, env)) == ["check", "init@tiny-s0"]
    params["experiments"]["tiny"]["model"]["dropout"] = 0.1
    (path / "other.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run(["dvc", "status", "init@tiny-s0"], path, env).stdout
    assert "other.yaml" in status and "experiments.tiny.model" in status
