import pytest
import yaml

from conftest import REPO
from lth.params import ParamsError, from_dict, load


def test_repository_params_are_valid():
    p = load(REPO / "params.yaml")
    assert p.model.name == "lenet_300_100"
    assert p.train.lr == 0.0012 and p.train.batch_size == 60 and p.train.eval_every == 100
    assert p.prune.rates == {"conv": 0.1, "fc": 0.2, "output": 0.1}


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda p: p["train"].update(lrr=0.1), ["unknown key 'lrr'", "in train", "allowed keys"]),
        (lambda p: p.update(sedes=[0]), ["unknown key 'sedes'", "top level"]),
        (lambda p: p["train"].pop("lr"), ["train", "'lr' is a required property"]),
        (lambda p: p["train"].update(iterations="many"), ["train.iterations = 'many'", "wrong type"]),
        (lambda p: p["train"].update(iterations=0), ["train.iterations = 0", "at least 1"]),
        (lambda p: p["prune"]["rates"].update(fc=1.0), ["prune.rates.fc = 1.0", "less than 1"]),
        (lambda p: p["prune"]["rates"].update(fc=-0.1), ["prune.rates.fc = -0.1", "at least 0"]),
        (lambda p: p["model"].update(name="resnet"), ["model.name = 'resnet'", "lenet_300_100"]),
        (lambda p: p.update(seeds=[1, 1]), ["seeds = [1, 1]", "duplicates"]),
        (lambda p: p["train"].update(eval_every=100), ["train.eval_every = 100", "train.iterations = 30"]),
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


def test_yaml_syntax_error_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: {lr: 0.1\n")
    with pytest.raises(ParamsError, match=r"params.yaml: not valid YAML"):
        load(bad)


def test_tiny_params_round_trip(tmp_path, tiny_params):
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(tiny_params))
    assert load(f).prune.rounds == 2
