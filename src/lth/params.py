"""params.yaml: load, validate against the one JSON Schema, and type it.

Every error names the file, the key, the bad value and what is allowed, so that
`lth`, `dvc repro` and `snakemake` reject a bad params file with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lth import LthError

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")


class ParamsError(LthError, ValueError):
    """A params file that cannot be used, with a message meant for the user."""


@dataclass(frozen=True)
class DataParams:
    dataset: str
    validation_size: int
    split_seed: int
    train_subset: int | None = None
    test_subset: int | None = None
    local_dir: str | None = None


@dataclass(frozen=True)
class ModelParams:
    name: str


@dataclass(frozen=True)
class TrainParams:
    lr: float
    batch_size: int
    iterations: int
    eval_every: int
    device: str
    threads: int


@dataclass(frozen=True)
class PruneParams:
    criterion: str
    rates: dict[str, float]
    rounds: int


@dataclass(frozen=True)
class FigureParams:
    formats: list[str]
    dpi: int
    curve_percents: list[float]


@dataclass(frozen=True)
class Params:
    experiment: str
    seeds: list[int]
    data: DataParams
    model: ModelParams
    train: TrainParams
    prune: PruneParams
    figures: FigureParams


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level, got {raw!r}")
    return raw


def schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate(raw: dict[str, Any], source: str | Path = "params.yaml") -> None:
    """Raise ParamsError for the first problem found, naming key, value and what is allowed."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ParamsError(f"{source}: {describe(errors[0])}")
    train = raw["train"]
    if train["eval_every"] > train["iterations"]:
        raise ParamsError(
            f"{source}: train.eval_every = {train['eval_every']} is larger than "
            f"train.iterations = {train['iterations']}; it must be at most the number of iterations"
        )


def describe(error: Any) -> str:
    """One line for a jsonschema error: key, bad value, what is allowed."""
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    value = error.instance
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        where = f"in {key}" if error.absolute_path else "at the top level"
        return f"unknown key {', '.join(map(repr, extra))} {where}; allowed keys: {', '.join(allowed)}"
    if error.validator == "required":
        return f"{key}: {error.message}"
    if error.validator == "enum":
        return f"{key} = {value!r} is not allowed; choose one of {error.validator_value}"
    if error.validator == "type":
        return f"{key} = {value!r} has the wrong type; expected {error.validator_value}"
    if error.validator == "uniqueItems":
        return f"{key} = {value!r} has duplicates; every entry must be unique"
    bounds = {
        "minimum": "at least",
        "maximum": "at most",
        "exclusiveMinimum": "greater than",
        "exclusiveMaximum": "less than",
        "minItems": "a list with at least this many items:",
    }
    if error.validator in bounds:
        return f"{key} = {value!r} is out of range; it must be {bounds[error.validator]} {error.validator_value}"
    return f"{key} = {value!r}: {error.message}"


def from_dict(raw: dict[str, Any], source: str | Path = "params.yaml") -> Params:
    validate(raw, source)
    return Params(
        experiment=raw["experiment"],
        seeds=list(raw["seeds"]),
        data=DataParams(**raw["data"]),
        model=ModelParams(**raw["model"]),
        train=TrainParams(**raw["train"]),
        prune=PruneParams(**raw["prune"]),
        figures=FigureParams(**raw["figures"]),
    )


def load(path: str | Path = "params.yaml") -> Params:
    return from_dict(read_yaml(path), path)
