"""params.yaml: load, validate against the one JSON Schema, and type it.

Every error names the file, the key, the bad value and what is allowed, so that
`lth`, `dvc repro` and `snakemake` reject a bad params file with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lth import LthError, architectures

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")


class ParamsError(LthError, ValueError):
    """A params file that cannot be used, with a message meant for the user."""


@dataclass(frozen=True)
class RuntimeParams:
    device: str
    threads: int
    checkpoint_every: int = 1000
    progress_every: float = 30.0
    tf32: bool = False
    cuda_graphs: bool = True
    trainings_per_device: int | None = None  # None: 1 on a CUDA device, no limit on the CPU (plan.trainings_at_once)


@dataclass(frozen=True)
class DataParams:
    validation_size: int
    split_seed: int
    normalize: str = "standardize"
    train_subset: int | None = None
    test_subset: int | None = None
    local_dirs: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelParams:
    name: str
    dropout: float = 0.0
    init: str = "glorot_normal"


@dataclass(frozen=True)
class TrainParams:
    """The training recipe of every round (params.schema.yaml): optimizer, learning-rate
    schedule and augmentation; the defaults are Frankle & Carbin's plain Adam."""

    lr: float
    batch_size: int
    iterations: int
    eval_every: int
    optimizer: str = "adam"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup: int = 0
    augment: bool = False


@dataclass(frozen=True)
class PruneParams:
    schedule: str
    scope: str
    criterion: str
    rates: dict[str, float]
    rounds: int


@dataclass(frozen=True)
class ResetParams:
    rewind_iteration: int
    kept: str
    pruned: str = "zero"


@dataclass(frozen=True)
class UntrainedParams:
    criteria: tuple[str, ...]
    actions: tuple[str, ...]
    rates: dict[str, float]
    steps: int


@dataclass(frozen=True)
class LearnedParams:
    iterations: int
    batch_size: int
    lr: float
    momentum: float
    weights: str
    eval_every: int
    samples: int


@dataclass(frozen=True)
class SupermaskParams:
    untrained: UntrainedParams | None = None
    learned: LearnedParams | None = None


@dataclass(frozen=True)
class StabilityParams:
    rounds: tuple[int, ...]
    rewind_iterations: tuple[int, ...]
    points: int


@dataclass(frozen=True)
class Experiment:
    name: str
    dataset: str
    model: ModelParams
    train: TrainParams
    prune: PruneParams
    reset: ResetParams
    controls: tuple[str, ...] = ()
    supermask: SupermaskParams = SupermaskParams()
    stability: StabilityParams | None = None


@dataclass(frozen=True)
class FigureParams:
    formats: list[str]
    dpi: int
    curve_percents: list[float]
    iterations: list[int] | None = None  # training lengths of the Figs. 7/8 style figure; None: not drawn


@dataclass(frozen=True)
class Params:
    seeds: list[int]
    runtime: RuntimeParams
    data: DataParams
    experiments: dict[str, Experiment]
    figures: FigureParams


def read_source(path: str | Path) -> tuple[dict[str, Any], str]:
    """A params file's top-level mapping and the sha256 of the very bytes it was parsed from."""
    import hashlib

    path = Path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    try:
        raw = strict_yaml(content, path)
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level, got {raw!r}")
    return raw, hashlib.sha256(content).hexdigest()


# libyaml's parser where PyYAML was built with it: the same documents, about ten times faster
# (the schema's parse was a tenth of a second of every stage's start)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_YAML_NODES = 100_000  # params files have hundreds; aliases must not multiply them past this


def strict_yaml(content: bytes | str, path: str | Path) -> Any:
    """YAML as yaml.safe_load reads it, but refusing duplicate keys (YAML forbids them; PyYAML
    keeps the last silently, DVC refuses the file) and aliases that expand past
    MAX_YAML_NODES (a "billion laughs" file would otherwise be walked until memory runs out)."""
    loader = SAFE_LOADER(content)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded_size(node, path)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def expanded_size(root: yaml.Node, path: str | Path) -> int:
    """Nodes in the document with every alias expanded (memoised: linear in the file's size)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in seen:
                        raise ParamsError(f"{path}: key {key.value!r} appears twice in one mapping (lines "
                                          f"{seen[key.value] + 1} and {key.start_mark.line + 1}); keep one")
                    seen[key.value] = key.start_mark.line
                total += size(key) + size(value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        if total > MAX_YAML_NODES:
            raise ParamsError(f"{path}: its aliases expand to more than {MAX_YAML_NODES} values (line "
                              f"{node.start_mark.line + 1}); a params file needs far fewer: remove the nested aliases")
        sizes[id(node)] = total
        return total

    return size(root)


def schema() -> dict[str, Any]:
    return yaml.load(SCHEMA_PATH.read_text(), Loader=SAFE_LOADER)


def strict_validator():
    """JSON Schema's validator, except that an integer must be written as one: JSON Schema
    counts 1.0 as an integer, but `--seed 1.0` fails in argparse and range(30.0) in Python."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    is_int = lambda _, v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    return jsonschema.validators.extend(base, type_checker=base.TYPE_CHECKER.redefine("integer", is_int))


def validate(raw: dict[str, Any], source: str | Path = "params.yaml") -> None:
    """Raise ParamsError for the first problem found, naming key, value and what is allowed."""
    import jsonschema

    validator = strict_validator()(schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ParamsError(f"{source}: {describe(errors[0])}")
    for name, e in raw["experiments"].items():
        where = f"{source}: experiments.{name}"
        if e["train"]["eval_every"] > e["train"]["iterations"]:
            raise ParamsError(
                f"{where}.train.eval_every = {e['train']['eval_every']} is larger than "
                f"train.iterations = {e['train']['iterations']}; it must be at most the number of iterations"
            )
        check_model(where, e)
        kinds = layer_kinds(e)
        untrained = (e.get("supermask") or {}).get("untrained")
        rated = {"prune.rates": e["prune"]["rates"], **({"supermask.untrained.rates": untrained["rates"]}
                                                         if untrained else {})}
        for key, rates in rated.items():
            if missing := sorted(kinds - set(rates)):
                raise ParamsError(f"{where}.{key}.{missing[0]} is missing; model {e['model']['name']} has "
                                  f"{missing[0]} layers and needs a rate for them ({RATE_HINTS[missing[0]]})")
        learned = (e.get("supermask") or {}).get("learned")
        if learned and learned["eval_every"] > learned["iterations"]:
            raise ParamsError(
                f"{where}.supermask.learned.eval_every = {learned['eval_every']} is larger than its "
                f"iterations = {learned['iterations']}; it must be at most the number of iterations"
            )
        check_recipe(where, e)
        if e["prune"]["scope"] == "layerwise":
            check_rounds(where, e)
        if e.get("stability"):
            check_stability(where, e)
        rewind = e["reset"]["rewind_iteration"]
        if rewind > e["train"]["iterations"]:
            raise ParamsError(f"{where}.reset.rewind_iteration = {rewind} is beyond "
                              f"train.iterations = {e['train']['iterations']}")
        if e["prune"]["rounds"] and not any(e["prune"]["rates"].get(kind) for kind in kinds):
            raise ParamsError(f"{where}.prune.rates = {e['prune']['rates']} prunes nothing of model "
                              f"{e['model']['name']} (layer kinds: {', '.join(sorted(kinds))}); give at least one "
                              "of its kinds a rate above 0 (paper: fc 0.2, output 0.1; deep nets: conv 0.2)")
        check_split_sizes(where, e, raw["data"], source)
    longest = max(e["train"]["iterations"] for e in raw["experiments"].values())
    for length in raw["figures"].get("iterations") or []:
        if length > longest:
            raise ParamsError(f"{source}: figures.iterations lists {length}, beyond every experiment's "
                              f"train.iterations (the longest is {longest}); list lengths at most {longest}")


def check_recipe(where: str, e: dict[str, Any]) -> None:
    """The combinations of the training recipe that the schema cannot refuse by itself."""
    t = e["train"]
    key = f"{where}.train"
    if t.get("optimizer", "adam") == "adam":
        for name, off in (("momentum", 0), ("nesterov", False)):
            if t.get(name, off) != off:
                value = str(t[name]).lower() if isinstance(t[name], bool) else t[name]  # as YAML writes it
                raise ParamsError(f"{key}.{name} = {value} is an SGD setting, but train.optimizer is adam; "
                                  "set train.optimizer: sgd, or remove it")
    if t.get("nesterov") and not t.get("momentum"):
        raise ParamsError(f"{key}.nesterov = true needs momentum, but train.momentum = {t.get('momentum', 0.0)}; "
                          "set train.momentum > 0 (paper: 0.9) or nesterov: false")
    if t.get("warmup", 0) > t["iterations"]:
        raise ParamsError(f"{key}.warmup = {t['warmup']} is longer than the training (train.iterations = "
                          f"{t['iterations']}); use at most that many iterations")
    milestones = t.get("milestones", [])
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise ParamsError(f"{key}.milestones = {milestones} must be strictly increasing")
    if milestones and milestones[-1] > t["iterations"]:
        raise ParamsError(f"{key}.milestones = {milestones}: {milestones[-1]} is beyond train.iterations = "
                          f"{t['iterations']}; each milestone must be at most the number of iterations")
    if t.get("weight_decay", 0.0) and e["reset"]["pruned"] != "zero":
        # weight decay would pull the frozen pruned weights of Zhou's mask-0 actions towards zero
        raise ParamsError(f"{key}.weight_decay = {t['weight_decay']} would move the pruned weights that "
                          f"reset.pruned = {e['reset']['pruned']!r} holds frozen; use weight_decay: 0 "
                          "or reset.pruned: zero")


RATE_HINTS = {"conv": "paper: 0.1 or 0.15; VGG and ResNet: 0.2 under scope global",
              "fc": "paper: 0.2", "output": "paper: 0.1; VGG and ResNet: 0.0, not pruned"}


def check_model(where: str, e: dict[str, Any]) -> None:
    """The model exists (a ResNet's depth is 6n+2), dropout has fully connected layers to act
    in, and supermasks are not asked of a model with BatchNorm."""
    model = e["model"]
    try:
        arch = architectures.architecture(model["name"])
    except architectures.UnknownModel as err:
        raise ParamsError(f"{where}.model.name = {err}") from None
    if model.get("dropout") and "fc" not in layer_kinds(e):
        raise ParamsError(f"{where}.model.dropout = {model['dropout']}: model {model['name']} has no hidden fully "
                          "connected layers for dropout to act in; remove it or set 0")
    supermask = {k for k, v in (e.get("supermask") or {}).items() if v}
    if arch.batchnorm and supermask:
        raise ParamsError(
            f"{where}.supermask.{sorted(supermask)[0]}: model {model['name']} has BatchNorm, and an untrained or "
            "frozen network has no running statistics for it (Zhou et al.'s supermasks are for networks without "
            "BatchNorm); use lenet_300_100 or conv2/4/6, or remove the supermask section")


def layer_kinds(e: dict[str, Any]) -> set[str]:
    """The kinds of prunable layers the experiment's model has (conv, fc, output)."""
    return {layer.kind for layer in architectures.dataset_layers(e["model"]["name"], e["dataset"])}


def check_split_sizes(where: str, e: dict[str, Any], data: dict[str, Any], source: str | Path) -> None:
    """The validation split fits in the dataset and a batch fits in the training split."""
    n = architectures.DATASETS[e["dataset"]].train_examples
    if data["validation_size"] >= n:
        raise ParamsError(f"{source}: data.validation_size = {data['validation_size']} leaves no training "
                          f"examples of {e['dataset']} ({n} in all); use fewer (paper: 5000)")
    train = min(n - data["validation_size"], data.get("train_subset") or n)
    batches = [("train.batch_size", e["train"]["batch_size"])]
    learned = (e.get("supermask") or {}).get("learned")
    if learned:
        batches.append(("supermask.learned.batch_size", learned["batch_size"]))
    for key, batch in batches:
        if batch > train:
            raise ParamsError(f"{where}.{key} = {batch} is larger than the training split ({train} examples "
                              "after data.validation_size and data.train_subset); use at most that")


def check_environment(raw: dict[str, Any], source: str | Path) -> None:
    """What `lth check` knows beyond the file: this machine's cores and the local data. Not
    part of validate(): a cluster job may run where the submitting host's paths and core
    count do not hold, and only the data stage reads local_dirs."""
    check_machine(raw, source)
    check_local_dirs(raw, source)


def check_machine(raw: dict[str, Any], source: str | Path) -> None:
    import os

    threads = raw["runtime"]["threads"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if threads > cores:
        raise ParamsError(f"{source}: runtime.threads = {threads} is more than this machine's {cores} cores; "
                          f"use at most {cores} (more threads than cores only slows the step down)")


def check_local_dirs(raw: dict[str, Any], source: str | Path) -> None:
    """Each data.local_dirs entry is a directory with the dataset's files (any usual spelling)."""
    used = {e["dataset"] for e in raw["experiments"].values()}
    for dataset, directory in (raw["data"].get("local_dirs") or {}).items():
        if not directory or dataset not in used:
            continue
        from lth.data import DATASETS, find

        if not Path(directory).is_dir():
            raise ParamsError(f"{source}: data.local_dirs.{dataset} = {directory!r} is not a directory; "
                              "point it at the directory that holds the dataset's files, or remove the entry")
        missing = [name for name in DATASETS[dataset].files if find(Path(directory), name) is None]
        if missing:
            raise ParamsError(f"{source}: data.local_dirs.{dataset} = {directory!r} has no file for "
                              f"{', '.join(missing)} (plain or .gz, dash or dot names)")


def check_rounds(where: str, e: dict[str, Any]) -> None:
    """Layerwise pruning must leave every pruned layer at least one weight in the last round."""
    from lth.pruning import survivors

    rates, rounds = e["prune"]["rates"], e["prune"]["rounds"]
    for layer in architectures.dataset_layers(e["model"]["name"], e["dataset"]):
        size, rate = layer.weights, rates.get(layer.kind, 0.0)
        if rate and survivors(size, rate, rounds) < 1:
            most = max(k for k in range(rounds) if survivors(size, rate, k) >= 1)
            raise ParamsError(
                f"{where}.prune.rounds = {rounds} is more than the weights allow: layer {layer.name} ({size} "
                f"weights, rate {rate}) has none left after round {most + 1}; use at most {most} rounds "
                "or a smaller rate")


def check_stability(where: str, e: dict[str, Any]) -> None:
    """The rounds to branch off exist, and the copies have iterations left to train."""
    stability, rounds, iterations = e["stability"], e["prune"]["rounds"], e["train"]["iterations"]
    if max(stability["rounds"]) > rounds:
        raise ParamsError(f"{where}.stability.rounds = {stability['rounds']} asks for round "
                          f"{max(stability['rounds'])}, but prune.rounds = {rounds}; use rounds 0 to {rounds}")
    if max(stability["rewind_iterations"]) >= iterations:
        raise ParamsError(f"{where}.stability.rewind_iterations = {stability['rewind_iterations']} has "
                          f"{max(stability['rewind_iterations'])}, not less than train.iterations = {iterations}; "
                          "the copies train from k to the end of training, so each k must be less")


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
    if error.validator == "maxLength":
        return (f"{key}: the name {value[:20]!r}... is {len(value)} characters long; "
                f"use at most {error.validator_value}")
    if error.validator == "pattern" and key.endswith(".model.name"):
        return f"{key} = {value!r} is not a known model; choose one of {architectures.KNOWN}"
    if error.validator == "pattern" and error.schema is not None and key == "experiments":
        return f"{key}: the name {value!r} may only use letters, digits and underscores"
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


def experiment(name: str, raw: dict[str, Any]) -> Experiment:
    return Experiment(
        name=name, dataset=raw["dataset"], model=ModelParams(**raw["model"]),
        train=train(raw["train"]), prune=PruneParams(**raw["prune"]),
        reset=ResetParams(**raw["reset"]), controls=tuple(raw.get("controls", [])),
        supermask=supermask(raw.get("supermask") or {}),
        stability=None if not raw.get("stability") else StabilityParams(
            rounds=tuple(raw["stability"]["rounds"]), rewind_iterations=tuple(raw["stability"]["rewind_iterations"]),
            points=raw["stability"]["points"]),
    )


def train(raw: dict[str, Any]) -> TrainParams:
    # a tuple, as `controls`: the frozen recipe stays hashable
    return TrainParams(**{**raw, "milestones": tuple(raw.get("milestones", ()))})


def supermask(raw: dict[str, Any]) -> SupermaskParams:
    untrained, learned = raw.get("untrained"), raw.get("learned")
    return SupermaskParams(
        untrained=None if untrained is None else UntrainedParams(
            criteria=tuple(untrained["criteria"]), actions=tuple(untrained["actions"]), rates=untrained["rates"],
            steps=untrained["steps"]),
        learned=None if learned is None else LearnedParams(**learned),
    )


def from_dict(raw: dict[str, Any], source: str | Path = "params.yaml") -> Params:
    validate(raw, source)
    return Params(
        seeds=list(raw["seeds"]),
        runtime=RuntimeParams(**raw["runtime"]),
        data=DataParams(**raw["data"]),
        experiments={name: experiment(name, e) for name, e in raw["experiments"].items()},
        figures=FigureParams(**raw["figures"]),
    )


PARAMS_DIGEST_VARIABLE = "LTH_PARAMS_SHA256"


def load(path: str | Path = "params.yaml") -> Params:
    return load_source(path)[0]


def load_source(path: str | Path = "params.yaml") -> tuple[Params, dict[str, Any]]:
    """Read, validate and type a params file; with the mapping read. Under a workflow that
    planned its jobs from a params file (LTH_PARAMS_SHA256 set), refuse a file that changed
    since."""
    import os

    raw, digest = read_source(path)
    params = from_dict(raw, path)
    planned = os.environ.get(PARAMS_DIGEST_VARIABLE)
    if planned and digest != planned:
        raise ParamsError(
            f"{path} changed while the workflow was running (its jobs were planned from the earlier "
            "file). The finished stages stand; run the workflow again to continue with the new params."
        )
    return params, raw


MISSING = object()


def lookup(raw: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key of a params mapping; MISSING if there is none."""
    node: Any = raw
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return node


def check_unchanged(path: str | Path, read: dict[str, Any], keys: tuple[str, ...] | None, command: str) -> None:
    """Refuse to finish a stage whose params changed while it ran: the stage computed from the
    values it read, but `dvc repro` records the values in the file when the stage ends, and
    would mark results of the old params as those of the new ones. `keys`: the dotted keys
    the stage depends on (None: the whole file); an edit elsewhere changes nothing."""
    try:
        now = read_source(path)[0]
    except ParamsError:
        now = {}  # deleted or unreadable: every key changed
    changed = ([k for k in keys if lookup(read, k) != lookup(now, k)] if keys is not None
               else ["the file"] if now != read else [])
    if changed:
        raise ParamsError(
            f"{path} changed while `lth {command}` ran ({', '.join(changed)}; it computed from the earlier "
            "values). The stage is not recorded as done; rerun the pipeline when you are done editing."
        )
