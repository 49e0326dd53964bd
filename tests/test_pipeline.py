"""Real `dvc repro` and real `snakemake --cores 2` on a tiny config: which stages rerun.

The same sequence of edits runs under each tool; after each edit we assert exactly
which stages ran, from the tool's own log.
"""

import pytest

from conftest import Pipeline, TINY, digests

pytestmark = pytest.mark.pipeline


def ids(name, rounds, seeds=(0,)):
    return {f"{name}@s{s}-r{k:02d}" for s in seeds for k in rounds}


def lineage(rounds):
    """prune, reset and train of the given rounds (round 0 has only train)."""
    return ids("train", rounds) | ids("prune", [k for k in rounds if k]) | ids("reset", [k for k in rounds if k])


@pytest.fixture(scope="module", params=["dvc", "snakemake"])
def pipe(request, tmp_path_factory, mnist_dir):
    return Pipeline(request.param, tmp_path_factory.mktemp(request.param) / "ws", TINY, mnist_dir)


def test_first_run_runs_every_stage(pipe):
    assert pipe.repro() == {"data", "init@s0", "aggregate", "figures"} | lineage(range(3))


def test_unchanged_pipeline_reruns_nothing(pipe):
    assert pipe.repro() == set()


def test_more_rounds_run_only_the_new_rounds_then_aggregation(pipe):
    pipe.set("prune.rounds", 3)
    assert pipe.repro() == lineage([3]) | {"aggregate", "figures"}


def test_new_prune_rates_keep_the_dense_round_and_rerun_the_rest(pipe):
    pipe.set("prune.rates.fc", 0.3)
    ran = pipe.repro()
    assert "train@s0-r00" not in ran
    assert ran == lineage([1, 2, 3]) | {"aggregate", "figures"}


def test_a_training_hyperparameter_reruns_every_training(pipe):
    pipe.set("train.lr", 0.002)
    ran = pipe.repro()
    assert ids("train", range(4)) <= ran
    assert ran == lineage(range(4)) | {"aggregate", "figures"}


def test_figure_settings_rerun_only_the_figures(pipe):
    pipe.set("figures.dpi", 70)
    assert pipe.repro() == {"figures"}
    assert pipe.repro() == set()


def test_both_tools_run_the_same_commands_and_make_identical_artifacts(tmp_path, mnist_dir):
    dvc = Pipeline("dvc", tmp_path / "dvc", TINY, mnist_dir)
    smk = Pipeline("snakemake", tmp_path / "smk", TINY, mnist_dir)
    assert dvc.repro() == smk.repro()
    assert sorted(dvc.last_commands) == sorted(smk.last_commands)
    a, b = digests(dvc.path), digests(smk.path)
    assert len(a) > 20 and a == b
