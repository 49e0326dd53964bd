import os
import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from lth.params import ParamsError, TrainParams, from_dict, load


def test_repository_params_are_valid_and_the_papers():
    p = load(REPO / "params.yaml")
    e = p.experiments["lenet_mnist"]
    assert e.model.name == "lenet_300_100" and e.dataset == "mnist"
    assert e.train.lr == 0.0012 and e.train.batch_size == 60 and e.train.eval_every == 100
    assert e.prune.rates == {"fc": 0.2, "output": 0.1} and e.prune.rounds == 15


def tiny(p):
    return p["experiments"]["tiny"]


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda p: tiny(p)["train"].update(lrr=0.1), ["unknown key 'lrr'", "in experiments.tiny.train", "allowed keys"]),
        (lambda p: p.update(sedes=[0]), ["unknown key 'sedes'", "top level"]),
        (lambda p: tiny(p)["train"].pop("lr"), ["experiments.tiny.train", "'lr' is a required property"]),
        (lambda p: tiny(p)["train"].update(iterations="many"),
         ["experiments.tiny.train.iterations = 'many'", "wrong type"]),
        (lambda p: tiny(p)["train"].update(iterations=0), ["experiments.tiny.train.iterations = 0", "at least 1"]),
        (lambda p: tiny(p)["prune"]["rates"].update(fc=1.0), ["experiments.tiny.prune.rates.fc = 1.0", "less than 1"]),
        (lambda p: tiny(p)["prune"]["rates"].update(fc=-0.1), ["prune.rates.fc = -0.1", "at least 0"]),
        (lambda p: tiny(p)["model"].update(name="resnet"), ["experiments.tiny.model.name = 'resnet'", "conv6"]),
        (lambda p: tiny(p).update(dataset="imagenet"), ["experiments.tiny.dataset = 'imagenet'", "cifar10"]),
        (lambda p: tiny(p).update(controls=["reinit", "bogus"]), ["controls.1 = 'bogus'", "random"]),
        (lambda p: p.update(seeds=[1, 1]), ["seeds = [1, 1]", "duplicates"]),
        (lambda p: tiny(p)["train"].update(eval_every=100),
         ["experiments.tiny.train.eval_every = 100", "train.iterations = 30"]),
        (lambda p: tiny(p)["model"].update(name="conv2"), ["experiments.tiny.prune.rates.conv is missing"]),
        (lambda p: tiny(p)["reset"].update(rewind_iteration=31), ["rewind_iteration = 31", "train.iterations = 30"]),
        (lambda p: tiny(p)["prune"].update(rates={"fc": 0.5, "output": 0.9}, rounds=5),
         ["experiments.tiny.prune.rounds = 5 is more than the weights allow", "layer output (1000 weights",
          "use at most 3 rounds"]),
        (lambda p: tiny(p)["reset"].update(pruned="frozen"),
         ["experiments.tiny.reset.pruned = 'frozen'", "freeze_init", "variant2"]),
        (lambda p: tiny(p)["reset"].pop("pruned"), ["experiments.tiny.reset", "'pruned' is a required property"]),
        (lambda p: tiny(p)["prune"].update(criterion="biggest"), ["prune.criterion = 'biggest'", "magnitude_increase"]),
        (lambda p: tiny(p).update(supermask={"untrained": {"criteria": ["large_final"], "actions": ["signed"],
                                                           "rates": {"fc": 0.2, "output": 0.1}, "steps": 3}}),
         ["supermask.untrained.actions.0 = 'signed'", "signed_constant"]),
        (lambda p: tiny(p).update(supermask={"learned": {"iterations": 10, "batch_size": 60, "lr": 100,
                                                         "momentum": 0.9, "weights": "original", "eval_every": 20,
                                                         "samples": 1}}),
         ["supermask.learned.eval_every = 20", "iterations = 10"]),
        # integers written as floats pass JSON Schema's own check, then fail in argparse or range()
        (lambda p: p.update(seeds=[1.0]), ["seeds.0 = 1.0 has the wrong type; expected integer"]),
        (lambda p: tiny(p)["train"].update(iterations=30.0), ["train.iterations = 30.0", "expected integer"]),
        (lambda p: tiny(p)["train"].update(lr=1e12), ["experiments.tiny.train.lr = 1000000000000.0", "at most 10"]),
        (lambda p: p["runtime"].update(threads=10**12), ["runtime.threads = 1000000000000", "at most 1024"]),
        (lambda p: p["runtime"].update(tf32="no"), ["runtime.tf32 = 'no'", "expected boolean"]),
        (lambda p: tiny(p)["train"].update(batch_size=1001),
         ["experiments.tiny.train.batch_size = 1001 is larger than the training split (1000 examples"]),
        (lambda p: p["data"].update(validation_size=60000),
         ["data.validation_size = 60000 leaves no training examples of mnist"]),
        (lambda p: tiny(p)["prune"].update(rates={"fc": 0.0, "output": 0.0}),
         ["experiments.tiny.prune.rates = {'fc': 0.0, 'output': 0.0} prunes nothing"]),
        (lambda p: p["experiments"].update({"x" * 300: p["experiments"]["tiny"]}),
         ["experiments: the name 'xxxxxxxxxxxxxxxxxxxx'... is 300 characters long; use at most 64"]),
        (lambda p: tiny(p).update(stability={"rounds": [0, 3], "rewind_iterations": [0], "points": 30}),
         ["experiments.tiny.stability.rounds = [0, 3] asks for round 3, but prune.rounds = 2", "rounds 0 to 2"]),
        (lambda p: tiny(p).update(stability={"rounds": [0], "rewind_iterations": [0, 30], "points": 30}),
         ["stability.rewind_iterations = [0, 30] has 30, not less than train.iterations = 30"]),
        (lambda p: tiny(p).update(stability={"rounds": [0], "rewind_iterations": [0], "points": 1}),
         ["experiments.tiny.stability.points = 1 is out of range", "at least 2"]),
        (lambda p: tiny(p).update(stability={"rounds": [0], "rewind_iterations": [0]}),
         ["experiments.tiny.stability", "'points' is a required property"]),
        (lambda p: tiny(p).update(stability={"rounds": [0], "k": [0], "points": 30}),
         ["unknown key 'k' in experiments.tiny.stability", "rewind_iterations"]),
        (lambda p: p["experiments"].update({"a b": p["experiments"]["tiny"]}),
         ["experiments: the name 'a b' may only use letters, digits and underscores"]),
        # the training recipe: wrong combinations, named by key
        (lambda p: tiny(p)["train"].update(momentum=0.9),
         ["experiments.tiny.train.momentum = 0.9 is an SGD setting, but train.optimizer is adam"]),
        (lambda p: tiny(p)["train"].update(nesterov=True),
         ["experiments.tiny.train.nesterov = true is an SGD setting, but train.optimizer is adam"]),
        (lambda p: tiny(p)["train"].update(optimizer="sgd", nesterov=True),
         ["experiments.tiny.train.nesterov = true needs momentum, but train.momentum = 0.0"]),
        (lambda p: tiny(p)["train"].update(optimizer="sgd", momentum=0.0, nesterov=True),
         ["experiments.tiny.train.nesterov = true needs momentum"]),
        (lambda p: tiny(p)["train"].update(optimizer="rmsprop"), ["train.optimizer = 'rmsprop'", "'adam', 'sgd'"]),
        (lambda p: tiny(p)["train"].update(optimizer="sgd", momentum=1.0), ["train.momentum = 1.0", "less than 1"]),
        (lambda p: tiny(p)["train"].update(weight_decay=-1e-4), ["train.weight_decay = -0.0001", "at least 0"]),
        (lambda p: tiny(p)["train"].update(warmup=31),
         ["experiments.tiny.train.warmup = 31 is longer than the training (train.iterations = 30)"]),
        (lambda p: tiny(p)["train"].update(warmup=-1), ["train.warmup = -1", "at least 0"]),
        (lambda p: tiny(p)["train"].update(milestones=[20, 10]),
         ["experiments.tiny.train.milestones = [20, 10] must be strictly increasing"]),
        (lambda p: tiny(p)["train"].update(milestones=[10, 10]), ["train.milestones = [10, 10] must be strictly"]),
        (lambda p: tiny(p)["train"].update(milestones=[10, 31]),
         ["experiments.tiny.train.milestones = [10, 31]: 31 is beyond train.iterations = 30"]),
        (lambda p: tiny(p)["train"].update(milestones=[0]), ["train.milestones.0 = 0", "at least 1"]),
        (lambda p: tiny(p)["train"].update(milestones=10), ["train.milestones = 10", "expected array"]),
        (lambda p: tiny(p)["train"].update(gamma=0), ["experiments.tiny.train.gamma = 0", "greater than 0"]),
        (lambda p: tiny(p)["train"].update(gamma=-0.1), ["train.gamma = -0.1", "greater than 0"]),
        (lambda p: tiny(p)["train"].update(augment="yes"), ["train.augment = 'yes'", "expected boolean"]),
        (lambda p: (tiny(p)["train"].update(weight_decay=1e-4), tiny(p)["reset"].update(pruned="freeze_init")),
         ["experiments.tiny.train.weight_decay = 0.0001 would move the pruned weights",
          "reset.pruned = 'freeze_init'"]),
        # deep models: the depth rule, what their layers need and what they cannot do
        (lambda p: tiny(p)["model"].update(name="resnet21"),
         ["experiments.tiny.model.name = 'resnet21'", "6n+2", "use resnet20 or resnet26"]),
        (lambda p: tiny(p)["model"].update(name="vgg12"), ["experiments.tiny.model.name = 'vgg12'", "vgg19"]),
        (lambda p: tiny(p)["model"].update(init="he"), ["experiments.tiny.model.init = 'he'", "kaiming_normal"]),
        (lambda p: tiny(p)["model"].update(name="resnet20"), ["experiments.tiny.prune.rates.conv is missing"]),
        (lambda p: tiny(p)["prune"].update(rates={"output": 0.1}), ["experiments.tiny.prune.rates.fc is missing",
                                                                   "lenet_300_100 has fc layers"]),
        (lambda p: tiny(p).update(model={"name": "vgg11", "dropout": 0.5}, prune={
            **tiny(p)["prune"], "rates": {"conv": 0.2, "output": 0.0}}),
         ["experiments.tiny.model.dropout = 0.5", "no hidden fully connected layers"]),
        (lambda p: tiny(p).update(model={"name": "resnet8"}, prune={**tiny(p)["prune"], "rates": {
            "conv": 0.0, "fc": 0.2, "output": 0.0}}), ["prunes nothing of model resnet8", "conv, output"]),
        (lambda p: tiny(p).update(model={"name": "resnet8"}, prune={**tiny(p)["prune"], "rates": {
            "conv": 0.2, "output": 0.0}}, supermask={"learned": {
                "iterations": 10, "batch_size": 60, "lr": 100, "momentum": 0.9, "weights": "original",
                "eval_every": 10, "samples": 1}}),
         ["experiments.tiny.supermask.learned: model resnet8 has BatchNorm", "conv2/4/6"]),
    ],
)
def test_bad_params_name_key_value_and_what_is_allowed(tiny_params, change, words):
    change(tiny_params)
    with pytest.raises(ParamsError) as err:
        from_dict(tiny_params, "my-params.yaml")
    message = str(err.value)
    assert message.startswith("my-params.yaml: ")
    for w in words:
        assert w in message


def test_the_recipe_keys_default_to_plain_adam_and_parse(tiny_params):
    assert from_dict(tiny_params).experiments["tiny"].train == TrainParams(lr=0.0012, batch_size=60, iterations=30,
                                                                          eval_every=10)
    recipe = {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4, "milestones": [20, 25],
              "gamma": 0.2, "warmup": 30, "augment": True}
    tiny(tiny_params)["train"].update(recipe)
    e = from_dict(tiny_params).experiments["tiny"]
    assert e.train == TrainParams(lr=0.0012, batch_size=60, iterations=30, eval_every=10,
                                  **{**recipe, "milestones": (20, 25)})
    hash(e.train)  # milestones as a tuple: the recipe stays hashable, as a frozen dataclass should


def test_cuda_precision_and_graphs_default_to_float32_and_graphs(tiny_params):
    runtime = from_dict(tiny_params).runtime
    assert runtime.tf32 is False and runtime.cuda_graphs is True
    tiny_params["runtime"].update(tf32=True, cuda_graphs=False)
    runtime = from_dict(tiny_params).runtime
    assert runtime.tf32 is True and runtime.cuda_graphs is False


def test_deep_models_prune_conv_globally_without_fc_rates(tiny_params):
    """VGG and ResNet have no fc layers: rates name conv and output only (the paper's setting)."""
    assert from_dict(tiny_params).experiments["tiny"].model.init == "glorot_normal"  # the default
    tiny(tiny_params).update(model={"name": "resnet20", "init": "kaiming_normal"}, prune={
        **tiny(tiny_params)["prune"], "scope": "global", "rates": {"conv": 0.2, "output": 0.0}})
    e = from_dict(tiny_params).experiments["tiny"]
    assert e.model.init == "kaiming_normal" and e.prune.rates == {"conv": 0.2, "output": 0.0}


def test_yaml_syntax_error_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: {lr: 0.1\n")
    with pytest.raises(ParamsError, match=r"params.yaml: not valid YAML"):
        load(bad)


def test_tiny_params_round_trip(tmp_path, tiny_params):
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(tiny_params))
    assert load(f).experiments["tiny"].prune.rounds == 2


@pytest.mark.parametrize("profile", sorted((REPO / "profiles").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_profile_is_valid_and_plans(profile):
    from lth import plan, profiles

    p = from_dict(profiles.resolve(profile), profile)
    stages = plan.stages(p)
    assert {s.name for s in stages} >= {"data", "init", "train", "prune", "reset", "aggregate", "figures", "report"}
    assert plan.figure_files(p)


def test_check_unchanged_compares_the_keys_a_stage_read(tmp_path):
    from lth.params import check_unchanged, read_source

    path = tmp_path / "params.yaml"
    path.write_text("a: {b: 1, c: 2}\nd: 3\n")
    read = read_source(path)[0]
    path.write_text("a: {b: 1, c: 5}\nd: 3\n")
    check_unchanged(path, read, ("a.b", "d"), "train")  # an edit elsewhere: fine
    for keys in (("a.c",), ("a",), None):  # the key, its parent, the whole file
        with pytest.raises(ParamsError, match=r"changed while `lth train` ran"):
            check_unchanged(path, read, keys, "train")
    path.unlink()
    with pytest.raises(ParamsError, match=r"a\.b"):
        check_unchanged(path, read, ("a.b",), "train")


@pytest.mark.parametrize("change, words", [
    (lambda p, d: p["runtime"].update(threads=len(os.sched_getaffinity(0)) + 1),
     "runtime.threads = .* is more than this machine's"),
    (lambda p, d: p["data"].update(local_dirs={"mnist": "/nonexistent/mnist"}),
     "data.local_dirs.mnist = '/nonexistent/mnist' is not a directory"),
    (lambda p, d: (d.joinpath("train-images-idx3-ubyte.gz").write_bytes(b""),
                   p["data"].update(local_dirs={"mnist": str(d)})),
     "has no file for train-labels-idx1-ubyte, t10k-images"),
])
def test_lth_check_refuses_what_this_machine_cannot_run(tmp_path, tiny_params, change, words):
    """Cores and local data are checked by `lth check` (and local_dirs by `lth data`), not by
    every stage: a cluster job may run where the submitting host's paths and cores differ."""
    change(tiny_params, tmp_path)
    from_dict(tiny_params, "p.yaml")  # the file itself is valid
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params))
    result = subprocess.run([sys.executable, "-m", "lth.cli", "check", "--params", str(path),
                             "--dvc-yaml", str(tmp_path / "dvc.yaml")], capture_output=True, text=True)
    assert result.returncode == 1
    assert re.search(words, result.stderr), result.stderr


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seeds: [0]\nexperiments:\n  tiny:\n    rounds: 2\n    rounds: 3\n")
    with pytest.raises(ParamsError, match=r"params.yaml: key 'rounds' appears twice in one mapping \(lines 4 and 5\)"):
        load(path)


def test_nested_aliases_are_refused_quickly_and_ordinary_anchors_work(tmp_path, tiny_params):
    import time

    laughs = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 12):  # 10^12 values when expanded
        laughs.append(f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 10)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(laughs) + "\n")
    start = time.perf_counter()
    with pytest.raises(ParamsError, match=r"bomb.yaml: its aliases expand to more than 100000 values"):
        load(bomb)
    assert time.perf_counter() - start < 1.0
    # an ordinary anchor: a second experiment merges the first and changes one key
    text = yaml.safe_dump(tiny_params, sort_keys=False).replace("  tiny:\n", "  tiny: &tiny\n", 1)
    text = text.replace("\nfigures:", "\n  other:\n    <<: *tiny\n    controls: [reinit]\nfigures:", 1)
    path = tmp_path / "params.yaml"
    path.write_text(text)
    p = load(path)
    assert p.experiments["other"].controls == ("reinit",) and p.experiments["other"].train == p.experiments["tiny"].train


def test_version_names_the_package_and_the_commit(capsys):
    from lth import __version__
    from lth.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"lth {__version__} (") and ("git " in out or "lth " in out.split("(")[1])
