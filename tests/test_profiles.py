"""Profiles state only what differs (a base, experiment defaults) and resolve to a complete
params file; `lth profile` writes it and its dvc.yaml, and `lth check` accepts them."""

import json
import shutil

import pytest
import yaml
from conftest import REPO, TINY

from lth import plan, profiles
from lth.cli import main
from lth.params import ParamsError, load_source

FULL_COPIES = yaml.safe_load((REPO / "tests/data/profiles_as_full_copies.yaml").read_text())


@pytest.mark.parametrize("name", sorted(FULL_COPIES))
def test_each_profile_resolves_to_its_former_full_copy(name):
    resolved = profiles.resolve(REPO / "profiles" / f"{name}.yaml")
    full = FULL_COPIES[name]
    assert sorted(resolved) == sorted(full)
    for section in full:  # json keeps key order and int/float: Snakemake compares a stage's params by repr
        assert json.dumps(resolved[section]) == json.dumps(full[section]), section


def write(directory, name, profile):
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return directory / f"{name}.yaml"


def tiny_base():
    """TINY as a profile: its experiment as experiment_defaults, and a second experiment."""
    base = {k: v for k, v in TINY.items() if k != "experiments"}
    base["experiment_defaults"] = TINY["experiments"]["tiny"]
    base["experiments"] = {"tiny": {}, "wide": {"prune": {"rates": {"fc": 0.3}}, "train": {"iterations": 20}}}
    return base


def test_a_profile_overrides_its_base_and_experiment_defaults_go_under_every_experiment(tmp_path):
    write(tmp_path, "base", tiny_base())
    child = write(tmp_path, "child", {
        "base": "base", "seeds": [1, 2],
        "experiment_defaults": {"train": {"iterations": 40}, "controls": ["reinit"]},
        "experiments": {"tiny": {"reset": {"kept": "signed_constant"}}},
        "figures": {"formats": ["pdf"]},
    })
    p = profiles.resolve(child)
    tiny, wide = p["experiments"]["tiny"], p["experiments"]["wide"]
    assert p["seeds"] == [1, 2] and p["figures"] == {**TINY["figures"], "formats": ["pdf"]}  # lists replace
    assert p["runtime"] == TINY["runtime"] and p["data"] == TINY["data"]
    assert tiny["train"] == {**TINY["experiments"]["tiny"]["train"], "iterations": 40}  # mappings merge
    assert tiny["reset"] == {"rewind_iteration": 0, "kept": "signed_constant", "pruned": "zero"}
    assert wide["prune"]["rates"] == {"fc": 0.3, "output": 0.1} and wide["controls"] == ["reinit"]
    assert wide["train"]["iterations"] == 20  # what an experiment states wins over any default
    assert list(p) == ["seeds", "runtime", "data", "experiments", "figures"] and list(p["experiments"]) == ["tiny", "wide"]


def test_keys_come_out_in_the_schemas_order_whatever_order_a_profile_states_them_in(tmp_path):
    shuffled = {k: TINY[k] for k in reversed(TINY)}
    shuffled["experiments"] = {"tiny": {k: v for k, v in reversed(TINY["experiments"]["tiny"].items())}}
    shuffled["experiments"]["tiny"]["reset"] = {"pruned": "zero", "kept": "original", "rewind_iteration": 0}
    assert json.dumps(profiles.resolve(write(tmp_path, "p", shuffled))) == json.dumps(TINY)


@pytest.mark.parametrize("profiles_written, words", [
    ({"child": {"base": "nothing"}}, ["child.yaml: base = 'nothing' is not a profile", "nothing.yaml", "child"]),
    ({"child": {"base": "child"}}, ["child.yaml: base = 'child' makes a cycle: child -> child"]),
    ({"a": {"base": "b"}, "b": {"base": "c"}, "c": {"base": "a"}, "child": {"base": "a"}},
     ["c.yaml: base = 'a' makes a cycle: child -> a -> b -> c -> a"]),
    ({"child": {"base": 3}}, ["child.yaml: base = 3 must be the name of another profile"]),
    ({"child": {"base": "base", "experiment_defaults": [1]}}, ["child.yaml: experiment_defaults = [1] must be a mapping"]),
    ({"child": {"base": "base", "experiment_defaults": {"train": {"lrr": 1}}}},
     ["child.yaml: unknown key 'lrr' in experiments.tiny.train"]),
])
def test_bad_profiles_are_refused_naming_the_file_and_key(tmp_path, profiles_written, words):
    write(tmp_path, "base", tiny_base())
    for name, profile in profiles_written.items():
        write(tmp_path, name, profile)
    with pytest.raises(ParamsError) as err:
        profiles.resolve(tmp_path / "child.yaml")
    for w in words:
        assert w in str(err.value)


def test_an_unknown_profile_name_lists_the_profiles(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["profile", "zhou", "--out", str(tmp_path / "params.yaml")]) == 1
    assert "no profile 'zhou'" in (err := capsys.readouterr().err) and "zhou_mnist_quick" in err
    assert not (tmp_path / "params.yaml").exists()


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "profiles").glob("*.yaml")))
def test_lth_profile_writes_explicit_params_that_pass_lth_check(tmp_path, monkeypatch, capsys, name):
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    assert main(["profile", name]) == 0
    text = (tmp_path / "params.yaml").read_text()
    assert text.startswith(f"# Written by `lth profile {name}` from profiles/{name}.yaml")
    _, read = load_source("params.yaml")
    assert json.dumps(read) == json.dumps(profiles.resolve(tmp_path / "profiles" / f"{name}.yaml"))
    assert "base" not in read and "experiment_defaults" not in read
    assert main(["check"]) == 0  # with the dvc.yaml it wrote
    assert (tmp_path / "dvc.yaml").read_text() == plan.dvc_yaml(load_source("params.yaml")[0])
