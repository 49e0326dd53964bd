"""Real `dvc repro` and real `snakemake --cores 2` on a tiny config: which stages rerun.

The same sequence of edits runs under each tool; after each edit we assert exactly
which stages ran, from the tool's own log. Stage ids are dvc's (`train@tiny-s0-r01`);
Snakemake jobs are mapped to them by their outputs.
"""

import copy

import numpy as np
import pytest
from conftest import TINY, Pipeline, digests, run, write_params

pytestmark = pytest.mark.pipeline
RESULTS = {"aggregate", "figures", "report"}


def ids(name, experiment, seeds, rounds, suffix=""):
    return {f"{name}@{experiment}-s{s}-r{k:02d}{suffix}" for s in seeds for k in rounds}


def lineage(rounds, experiment="tiny", seeds=(0,)):
    """train of the given rounds, and prune and reset of those after round 0."""
    pruned = [k for k in rounds if k]
    return (ids("train", experiment, seeds, rounds) | ids("prune", experiment, seeds, pruned)
            | ids("reset", experiment, seeds, pruned))


def controls(rounds, experiment="tiny", seeds=(0,)):
    return (ids("reinit", experiment, seeds, rounds) | ids("train", experiment, seeds, rounds, "-reinit")
            | ids("shuffle", experiment, seeds, rounds) | ids("reset", experiment, seeds, rounds, "-random")
            | ids("train", experiment, seeds, rounds, "-random"))


@pytest.fixture(scope="module", params=["dvc", "snakemake"])
def pipe(request, tmp_path_factory, mnist_dir):
    return Pipeline(request.param, tmp_path_factory.mktemp(request.param) / "ws", TINY, mnist_dir)


def test_first_run_runs_every_stage(pipe):
    assert pipe.repro() == {"data@mnist", "init@tiny-s0"} | lineage(range(3)) | RESULTS


def test_unchanged_pipeline_reruns_nothing(pipe):
    assert pipe.repro() == set()


def test_bad_params_fail_with_a_clear_message_and_lose_nothing(pipe):
    before = digests(pipe.path)
    good = copy.deepcopy(pipe.params)
    pipe.params["experiments"]["tiny"]["train"]["lrr"] = 0.1  # a typo
    write_params(pipe.path, pipe.params)
    cmd = ["dvc", "repro"] if pipe.tool == "dvc" else ["snakemake", "--cores", "2"]
    result = run(cmd, pipe.path, pipe.env, check=False)
    assert result.returncode != 0
    assert "params.yaml: unknown key 'lrr' in experiments.tiny.train" in result.stdout + result.stderr
    pipe.params = good
    write_params(pipe.path, pipe.params)
    # both refused before any stage ran (DVC in its `check` stage): nothing is recomputed
    # and every artifact is as it was
    assert pipe.repro() == set()
    assert digests(pipe.path) == before


def test_more_rounds_run_only_the_new_rounds_then_aggregation(pipe):
    pipe.set("experiments.tiny.prune.rounds", 3)
    assert pipe.repro() == lineage([3]) | RESULTS


def test_new_prune_rates_keep_the_dense_round_and_rerun_the_rest(pipe):
    pipe.set("experiments.tiny.prune.rates.fc", 0.3)
    ran = pipe.repro()
    assert "train@tiny-s0-r00" not in ran
    assert ran == lineage([1, 2, 3]) | RESULTS


def test_a_training_hyperparameter_reruns_every_training(pipe):
    pipe.set("experiments.tiny.train.lr", 0.002)
    ran = pipe.repro()
    assert ids("train", "tiny", [0], range(4)) <= ran
    assert ran == lineage(range(4)) | RESULTS


def test_figure_settings_rerun_only_the_figures(pipe):
    pipe.set("figures.dpi", 70)
    assert pipe.repro() == {"figures"}
    assert pipe.repro() == set()


def test_controls_branch_off_the_rounds_without_retraining_the_lineage(pipe):
    pipe.set("experiments.tiny.controls", ["reinit", "random"])
    ran = pipe.repro()
    assert not ran & lineage(range(4))
    assert ran == controls([1, 2, 3]) | RESULTS


def test_adding_a_seed_runs_only_that_seeds_chain(pipe):
    pipe.set("seeds", [0, 1])
    ran = pipe.repro()
    assert ran == {"init@tiny-s1"} | lineage(range(4), seeds=[1]) | controls([1, 2, 3], seeds=[1]) | RESULTS


def test_a_lineage_differing_only_in_rates_reuses_round_0(pipe):
    other = copy.deepcopy(pipe.params["experiments"]["tiny"])
    other["prune"]["rates"]["fc"] = 0.5
    other["controls"] = []
    pipe.set("experiments.tiny_b", other)
    ran = pipe.repro()
    assert not any(s.startswith(("init@tiny_b", "train@tiny_b-s0-r00", "train@tiny_b-s1-r00")) for s in ran)
    assert ran == lineage([1, 2, 3], "tiny_b", seeds=[0, 1]) | RESULTS
    assert (pipe.path / "runs/tiny_b/seed0/round01/trained.safetensors").exists()
    assert not (pipe.path / "runs/tiny_b/seed0/round00").exists()


def test_both_tools_run_the_same_commands_and_make_identical_artifacts(tmp_path, mnist_dir):
    params = copy.deepcopy(TINY)
    params["experiments"]["tiny"]["controls"] = ["reinit", "random"]
    # the SGD recipe, rewound: its rounds after 0 start the schedule at iteration 5
    sgd = copy.deepcopy(params["experiments"]["tiny"])
    sgd["train"].update(lr=0.05, optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=1e-4, milestones=[20],
                        warmup=10, augment=True)
    sgd["reset"]["rewind_iteration"] = 5
    sgd["controls"] = ["reinit"]
    params["experiments"]["sgd"] = sgd
    dvc = Pipeline("dvc", tmp_path / "dvc", params, mnist_dir)
    smk = Pipeline("snakemake", tmp_path / "smk", params, mnist_dir)
    assert dvc.repro() == smk.repro()
    assert sorted(dvc.last_commands) == sorted(smk.last_commands)
    assert sum("--experiment sgd --seed 0 --schedule-start 5 " in c for c in dvc.last_commands) == 4
    a, b = digests(dvc.path), digests(smk.path)
    assert len(a) > 40 and a == b
    assert (dvc.path / "results/report.md").read_text() == (smk.path / "results/report.md").read_text()


# the deep networks' recipe (Frankle & Carbin Section 5) in small: SGD with Nesterov momentum and
# weight decay, warmup, milestones, crop-and-flip augmentation, global pruning of the convs only
DEEP_RECIPE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4,
               "warmup": 10, "milestones": [20, 25], "gamma": 0.1, "augment": True}
GLOBAL_CONV = {**TINY["experiments"]["tiny"]["prune"], "scope": "global", "rates": {"conv": 0.2, "output": 0.0}}


def test_batchnorm_resnet_and_vgg_lineages_are_byte_identical_under_both_tools(tmp_path, mnist_dir):
    """A ResNet (BatchNorm, Kaiming init) and a VGG, trained with the SGD recipe and pruned
    globally over their convs, the ResNet with rewinding and both controls: their running
    statistics, schedules and augmentation draws go through every artifact the same under
    both tools, and the Figs. 7/8 figure is drawn."""
    params = copy.deepcopy(TINY)
    params["figures"]["iterations"] = [10, 20]
    params["experiments"]["tiny"].update(
        model={"name": "resnet8_4", "init": "kaiming_normal"}, controls=["reinit", "random"],
        train={**TINY["experiments"]["tiny"]["train"], **DEEP_RECIPE}, prune=GLOBAL_CONV,
        reset={"rewind_iteration": 10, "kept": "original", "pruned": "zero"})
    params["experiments"]["vgg"] = {  # VGG's widths are fixed: a small batch keeps it quick
        **copy.deepcopy(TINY["experiments"]["tiny"]), "model": {"name": "vgg11"}, "controls": ["reinit"],
        "train": {**DEEP_RECIPE, "batch_size": 8, "iterations": 20, "eval_every": 10, "milestones": [15]},
        "prune": {**GLOBAL_CONV, "rounds": 1}}
    dvc = Pipeline("dvc", tmp_path / "dvc", params, mnist_dir)
    smk = Pipeline("snakemake", tmp_path / "smk", params, mnist_dir)
    ran = dvc.repro()
    assert ran == smk.repro() and {"train@vgg-s0-r01-reinit", "train@tiny-s0-r02-random"} <= ran
    a, b = digests(dvc.path), digests(smk.path)
    assert len(a) > 50 and a == b
    assert (dvc.path / "results/figures/fig7_mnist_resnet8_4.png").stat().st_size > 10_000
    from lth.artifacts import load_arrays
    ticket = load_arrays(dvc.path / "runs/tiny/seed0/round02/ticket.safetensors", "reset")
    rewind = load_arrays(dvc.path / "runs/tiny/seed0/round00/rewind.safetensors", "train")
    assert ticket["blocks.1.shortcut.bn.num_batches_tracked"].tolist() == [10]
    assert all(np.array_equal(ticket[n], rewind[n]) for n in ticket if ".bn" in n or n.startswith("bn."))


def test_conv_models_run_end_to_end_on_fashion_mnist(tmp_path, mnist_dir, fashion_dir):
    params = copy.deepcopy(TINY)
    params["data"]["train_subset"] = 300
    params["data"]["test_subset"] = 200
    params["experiments"] = {
        f"{m}_fashion": {
            "dataset": "fashion_mnist", "model": {"name": m, "dropout": 0.5},
            "train": {"lr": 0.0003, "batch_size": 60, "iterations": 10, "eval_every": 5},
            "prune": {"schedule": "iterative", "scope": "layerwise", "criterion": "large_final",
                      "rates": {"conv": 0.15, "fc": 0.2, "output": 0.1}, "rounds": 1},
            "reset": {"rewind_iteration": 0, "kept": "original", "pruned": "zero"}, "controls": ["reinit"],
        } for m in ("conv2", "conv6")
    }
    pipe = Pipeline("snakemake", tmp_path / "ws", params, mnist_dir)
    pipe.set("data.local_dirs", {"fashion_mnist": str(fashion_dir)})
    ran = pipe.repro()
    assert {"data@fashion_mnist", "train@conv6_fashion-s0-r01", "train@conv6_fashion-s0-r01-reinit"} <= ran
    report = (pipe.path / "results/report.md").read_text()
    assert "## conv6_fashion: conv6 on fashion_mnist" in report
    assert "Fashion-MNIST stands in for CIFAR-10" in report
    assert (pipe.path / "results/figures/fig5_fashion_mnist.png").stat().st_size > 10_000
    # Snakemake's own HTML report carries the figures
    run(["snakemake", "--cores", "1", "--report", "report.html"], pipe.path, pipe.env)
    html = (pipe.path / "report.html").read_text(errors="replace")
    assert "fig5_fashion_mnist.png" in html and "fig1_fashion_mnist.png" in html


def zhou_params():
    """Frankle's lineage with supermasks, and one lineage per varied part (Zhou et al.)."""
    params = copy.deepcopy(TINY)
    base = params["experiments"]["tiny"]
    base["supermask"] = {
        "untrained": {"criteria": ["large_final_same_sign", "random"], "actions": ["original", "signed_constant"],
                      "rates": {"fc": 0.5, "output": 0.2}, "steps": 2},
        "learned": {"iterations": 20, "batch_size": 50, "lr": 100, "momentum": 0.9, "weights": "signed_constant",
                    "eval_every": 10, "samples": 2}}
    for name, part, value in (("small", "prune.criterion", "small_final"), ("signed", "reset.kept", "signed_constant"),
                              ("frozen", "reset.pruned", "variant1")):
        e = copy.deepcopy(base)
        e.pop("supermask")
        section, key = part.split(".")
        e[section][key] = value
        params["experiments"][name] = e
    return params


def test_zhou_experiments_run_end_to_end_under_both_tools(tmp_path, mnist_dir):
    import numpy as np
    import pandas as pd

    from lth.artifacts import load_arrays

    params = zhou_params()
    dvc = Pipeline("dvc", tmp_path / "dvc", params, mnist_dir)
    smk = Pipeline("snakemake", tmp_path / "smk", params, mnist_dir)
    ran = dvc.repro()
    assert ran == smk.repro()
    expected = ({"data@mnist", "init@tiny-s0", "untrained@tiny-s0", "supermask@tiny-s0"} | RESULTS
                | lineage([0, 1, 2]) | lineage([1, 2], "small") | lineage([1, 2], "signed") | lineage([1, 2], "frozen"))
    assert ran == expected  # one dense round 0 and one theta_0 shared by every variation
    a, b = digests(dvc.path), digests(smk.path)
    assert a == b
    ws = smk.path
    untrained = pd.read_csv(ws / "results/untrained.csv")
    assert len(untrained) == 2 * 3 * 2 and set(untrained.action) == {"original", "signed_constant"}
    learned = pd.read_csv(ws / "results/supermask.csv")
    assert len(learned) == 1 and 0 < learned.final_percent_expected[0] < 100
    # variant1: some pruned weights are frozen (nonzero) and training left them where the ticket put them
    r1 = ws / "runs/frozen/seed0/round01"
    mask = load_arrays(r1 / "mask.safetensors", "prune")
    ticket, trained = (load_arrays(r1 / f, "x") for f in ("ticket.safetensors", "trained.safetensors"))
    pruned = ~mask["fc1.weight"]
    assert np.count_nonzero(ticket["fc1.weight"][pruned]) > 0
    assert np.array_equal(trained["fc1.weight"][pruned], ticket["fc1.weight"][pruned])
    for name in ("zhou_criterion", "zhou_kept", "zhou_pruned", "zhou_untrained"):
        assert (ws / f"results/figures/{name}_mnist_lenet_300_100.png").stat().st_size > 10_000
    report = (ws / "results/report.md").read_text()
    assert "## Deconstructing lottery tickets (Zhou et al. 2019)" in report
    assert "### Learned supermasks" in report and "| small_final |" in report
    # a new mask-0 action reruns that lineage from its first reset (round 1's mask stands)
    dvc.set("experiments.frozen.reset.pruned", "freeze_init")
    assert dvc.repro() == (lineage([1, 2], "frozen") - {"prune@frozen-s0-r01"}) | RESULTS


def test_stability_runs_under_both_tools_with_identical_artifacts(tmp_path, mnist_dir):
    import pandas as pd

    params = copy.deepcopy(TINY)
    params["experiments"]["tiny"]["stability"] = {"rounds": [0, 2], "rewind_iterations": [0, 10], "points": 5}
    dvc = Pipeline("dvc", tmp_path / "dvc", params, mnist_dir)
    smk = Pipeline("snakemake", tmp_path / "smk", params, mnist_dir)
    ran = dvc.repro()
    assert ran == smk.repro()
    stability = {f"stability@tiny-s0-r{r:02d}-k{k}" for r in (0, 2) for k in (0, 10)}
    assert ran == {"data@mnist", "init@tiny-s0"} | lineage(range(3)) | stability | RESULTS
    a, b = digests(dvc.path), digests(smk.path)
    assert a == b
    assert {f"runs/tiny/seed0/stability/round02/k10/{f}" for f in ("copy_a.safetensors", "copy_b.safetensors",
                                                                  "interpolation.csv", "instability.json")} <= set(a)
    ws = smk.path
    barriers = pd.read_csv(ws / "results/stability.csv")
    assert len(barriers) == 4 and (barriers.error_barrier >= 0).all()
    assert len(pd.read_csv(ws / "results/stability_path.csv")) == 4 * 5
    for name in ("stability_path_tiny", "stability_barrier_tiny"):
        assert (ws / f"results/figures/{name}.png").stat().st_size > 10_000
    assert "## Instability analysis (Frankle et al. 2020)" in (ws / "results/report.md").read_text()
    # a new k runs its analyses and the results, nothing else
    dvc.set("experiments.tiny.stability.rewind_iterations", [0, 10, 20])
    assert dvc.repro() == {"stability@tiny-s0-r00-k20", "stability@tiny-s0-r02-k20"} | RESULTS
