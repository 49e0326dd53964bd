"""Profiles: named settings that state only what differs, resolved into a complete params file.

profiles/NAME.yaml holds params.yaml's sections, plus two keys of its own:
  base: OTHER              start from profiles/OTHER.yaml (itself resolved first) and override it;
  experiment_defaults: {}  merged under every experiment, so each experiment states what differs.
Mappings merge key by key; lists and scalars replace. A profile's experiment_defaults merge
over its base's before they are applied, so a profile can change every inherited experiment.

`lth profile NAME` writes the result as params.yaml, every value explicit: dvc and
snakemake read only that file, never a profile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lth.params import ParamsError, read_source, schema, validate

PROFILES_DIR = Path("profiles")


def path_of(name: str) -> Path:
    """profiles/NAME.yaml, or NAME itself when it is a path to a .yaml file."""
    path = Path(name) if name.endswith(".yaml") or "/" in name else PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml"))) or "none"
        raise ParamsError(f"no profile {name!r}: {path} does not exist; profiles in {path.parent}: {known}")
    return path


def merge(under: Any, over: Any) -> Any:
    """`over` on top of `under`: mappings merge key by key, anything else replaces."""
    if not (isinstance(under, dict) and isinstance(over, dict)):
        return over
    merged = dict(under)
    for key, value in over.items():
        merged[key] = merge(under[key], value) if key in under else value
    return merged


def stated(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A profile merged over its bases, experiment_defaults not yet applied."""
    raw = read_source(path)[0]
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ParamsError(f"{path}: base = {base!r} must be the name of another profile")
    base_path = path.with_name(f"{base}.yaml")
    if not base_path.is_file():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise ParamsError(f"{path}: base = {base!r} is not a profile: no {base_path}; profiles: {known}")
    chain = (*chain, path)
    if base_path.resolve() in (p.resolve() for p in chain):
        raise ParamsError(f"{path}: base = {base!r} makes a cycle: "
                          + " -> ".join(p.stem for p in (*chain, base_path)))
    return merge(stated(base_path, chain), raw)


def resolve(path: str | Path) -> dict[str, Any]:
    """The complete params mapping a profile stands for, validated as params.yaml is."""
    path = Path(path)
    raw = stated(path)
    defaults = raw.pop("experiment_defaults", {})
    if not isinstance(defaults, dict):
        raise ParamsError(f"{path}: experiment_defaults = {defaults!r} must be a mapping of experiment keys")
    if isinstance(raw.get("experiments"), dict):
        raw["experiments"] = {name: merge(defaults, e) for name, e in raw["experiments"].items()}
    params = in_schema_order(raw, schema())
    validate(params, path)
    return params


def in_schema_order(value: Any, node: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """Every mapping's keys in the order its schema lists them (experiments keep theirs).

    Snakemake records a stage's params by their repr, key order included: one order,
    whatever order a profile states its keys in, keeps a regenerated params.yaml from
    rerunning stages whose values did not change."""
    root = root or node
    if "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if not isinstance(value, dict):
        return value
    properties = node.get("properties", {})
    others = node.get("additionalProperties")
    order = [k for k in properties if k in value] + [k for k in value if k not in properties]
    return {k: in_schema_order(value[k], properties.get(k, others if isinstance(others, dict) else {}), root)
            for k in order}


def render(name: str, path: Path, params: dict[str, Any]) -> str:
    """The params file: a header naming its profile, the profile's own description, then
    every section in full."""
    description = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        description.append(line)
    header = [
        f"# Written by `lth profile {name}` from {path} and the profiles it is based on.",
        "# dvc and snakemake read only this file: editing the profile changes nothing here until",
        f"# `lth profile {name}` runs again, which overwrites this file (and any edits made to it).",
        "# `lth profile` wrote the matching dvc.yaml too. Next: `dvc repro` or `snakemake --cores N`.",
        "#",
    ]
    sections = [yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=None, width=110)
                for key, value in params.items()]
    return "\n".join(header + description) + "\n" + "\n".join(sections)
