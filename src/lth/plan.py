"""The plan: which stages exist for a params file, what each reads and writes.

This is the one place that knows file names and the dependency structure. `dvc.yaml`
is generated from it (`lth dvc-yaml`) and checked against it (`lth check`); the
Snakefile asks it for each job's inputs and command. Both tools therefore run the same
`lth` commands with the same arguments on the same files.

Each stage kind is a template whose `{field}`s are filled from an item (seed, round,
paths). In dvc.yaml a template becomes a `foreach` stage with `${item.field}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lth import LthError

from lth.params import Params

PARAMS_FILE = "params.yaml"
CODE = "src/lth/"


# ---- file names ------------------------------------------------------------------
def raw_dir(p: Params) -> str:
    return f"data/raw/{p.data.dataset}"


def prepared(p: Params) -> str:
    return f"data/prepared/{p.data.dataset}.safetensors"


def seed_dir(p: Params, seed: int) -> str:
    return f"runs/{p.experiment}/seed{seed}"


def theta0(p: Params, seed: int) -> str:
    return f"{seed_dir(p, seed)}/theta0.safetensors"


def round_dir(p: Params, seed: int, k: int) -> str:
    return f"{seed_dir(p, seed)}/round{k:02d}"


def results_dir(p: Params) -> str:
    return f"results/{p.experiment}"


FIGURES = ("fig1_early_stop", "fig3_test_accuracy")


def figure_files(p: Params) -> list[str]:
    return [f"{results_dir(p)}/figures/{name}.{fmt}" for name in FIGURES for fmt in p.figures.formats]


# ---- stage templates -------------------------------------------------------------
@dataclass(frozen=True)
class Template:
    """One stage kind: its subcommand, and what it reads and writes, with {fields}."""

    name: str
    cmd: str
    code: tuple[str, ...]
    params: tuple[str, ...]
    deps: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()

    @property
    def fields(self) -> set[str]:
        texts = (self.cmd, *self.deps, *self.outs, *self.metrics)
        return {f for t in texts for f in re.findall(r"{(\w+)}", t)}


TEMPLATES = {
    t.name: t
    for t in (
        Template("data", "lth data --params {params_file} --raw {raw} --out {prepared}",
                 code=("data.py", "artifacts.py"), params=("data",),
                 outs=("{raw}", "{prepared}")),
        Template("init", "lth init --params {params_file} --seed {seed} --out {theta0} --mask {mask}",
                 code=("models.py", "masks.py", "artifacts.py"), params=("model", "data.dataset"),
                 outs=("{theta0}", "{mask}"), metrics=("{sparsity}",)),
        Template("train", "lth train --params {params_file} --seed {seed} --data {prepared} "
                          "--ticket {ticket} --mask {mask} --out {dir}",
                 code=("train.py", "models.py", "masks.py", "artifacts.py"), params=("model", "train"),
                 deps=("{prepared}", "{ticket}", "{mask}"),
                 outs=("{dir}/trained.safetensors", "{dir}/curve.csv"),
                 metrics=("{dir}/metrics.json",)),
        Template("prune", "lth prune --params {params_file} --trained {trained} --mask {previous_mask} "
                          "--out {mask}",
                 code=("pruning.py", "masks.py", "artifacts.py"), params=("prune.criterion", "prune.rates"),
                 deps=("{trained}", "{previous_mask}"),
                 outs=("{mask}",), metrics=("{sparsity}",)),
        Template("reset", "lth reset --theta0 {theta0} --mask {mask} --out {ticket}",
                 code=("reset.py", "masks.py", "artifacts.py"), params=(),
                 deps=("{theta0}", "{mask}"), outs=("{ticket}",)),
        Template("aggregate", "lth aggregate --params {params_file} --out {results}",
                 code=("aggregate.py", "plan.py", "artifacts.py"), params=("experiment", "seeds", "prune.rounds"),
                 deps=("{runs}",), outs=("{results}/rounds.csv", "{results}/curves.csv")),
        Template("figures", "lth figures --params {params_file} --tables {results} --out {results}/figures",
                 code=("figures.py", "artifacts.py"), params=("figures",),
                 deps=("{results}/rounds.csv", "{results}/curves.csv"), outs=("{figures}",)),
    )
}


@dataclass(frozen=True)
class Stage:
    """A concrete stage: a template filled in for one item."""

    name: str
    key: str | None  # the foreach key in dvc.yaml, None for a single stage
    item: dict = field(hash=False)
    cmd: str = ""
    deps: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    params: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.name if self.key is None else f"{self.name}@{self.key}"


def _fill(text: str, item: dict) -> list[str]:
    """Fill a template string; a list-valued field expands to several strings."""
    lists = {k: v for k, v in item.items() if isinstance(v, list)}
    for k, values in lists.items():
        if "{" + k + "}" in text:
            return [text.replace("{" + k + "}", v).format(**item) for v in values]
    return [text.format(**item)]


def make_stage(template: Template, key: str | None, item: dict) -> Stage:
    expand = lambda texts: tuple(s for t in texts for s in _fill(t, item))  # noqa: E731
    return Stage(
        name=template.name, key=key, item=item,
        cmd=template.cmd.format(**item),
        deps=tuple(CODE + c for c in template.code) + expand(template.deps),
        outs=expand(template.outs), metrics=expand(template.metrics), params=template.params,
    )


def round_key(seed: int, k: int) -> str:
    return f"s{seed}-r{k:02d}"


def round_item(p: Params, seed: int, k: int, params_file: str) -> dict:
    d = round_dir(p, seed, k)
    return {
        "params_file": params_file, "seed": seed, "round": k, "dir": d,
        "prepared": prepared(p), "theta0": theta0(p, seed),
        "mask": f"{d}/mask.safetensors", "sparsity": f"{d}/sparsity.json",
        "ticket": theta0(p, seed) if k == 0 else f"{d}/ticket.safetensors",
        "trained": f"{round_dir(p, seed, k - 1)}/trained.safetensors" if k else "",
        "previous_mask": f"{round_dir(p, seed, k - 1)}/mask.safetensors" if k else "",
    }


def stages(p: Params, params_file: str = PARAMS_FILE) -> list[Stage]:
    """Every stage of the pipeline for these params, in an order that respects deps."""
    T = TEMPLATES
    data_item = {"params_file": params_file, "raw": raw_dir(p), "prepared": prepared(p)}
    out = [make_stage(T["data"], None, data_item)]
    for seed in p.seeds:
        r0 = round_item(p, seed, 0, params_file)
        out.append(make_stage(T["init"], f"s{seed}", r0))
        out.append(make_stage(T["train"], round_key(seed, 0), r0))
        for k in range(1, p.prune.rounds + 1):
            item = round_item(p, seed, k, params_file)
            for name in ("prune", "reset", "train"):
                out.append(make_stage(T[name], round_key(seed, k), item))
    results = {"params_file": params_file, "results": results_dir(p),
               "runs": [f"{round_dir(p, s, k)}/{f}" for s in p.seeds for k in range(p.prune.rounds + 1)
                        for f in ("metrics.json", "curve.csv")],
               "figures": figure_files(p)}
    out.append(make_stage(T["aggregate"], None, results))
    out.append(make_stage(T["figures"], None, results))
    return out


def find(p: Params, stage_id: str, params_file: str = PARAMS_FILE) -> Stage:
    for s in stages(p, params_file):
        if s.id == stage_id:
            return s
    raise KeyError(f"no stage {stage_id!r} in the plan for these params")


# ---- dvc.yaml --------------------------------------------------------------------
def _dvc_template(template: Template, example: Stage) -> dict:
    """A `do:` block: the template with `{field}` -> `${item.field}`."""
    fields = {k: "${item.%s}" % k for k in example.item if k in template.fields}
    list_fields = [k for k, v in example.item.items() if isinstance(v, list)]
    if list_fields:
        raise ValueError(f"stage {template.name}: list fields {list_fields} cannot be templated")
    block = {"cmd": template.cmd.format(**fields),
             "deps": [CODE + c for c in template.code] + [d.format(**fields) for d in template.deps]}
    if template.params:
        block["params"] = list(template.params)
    block["outs"] = [o.format(**fields) for o in template.outs]
    if template.metrics:
        block["metrics"] = [m.format(**fields) for m in template.metrics]
    return block


def _dvc_single(s: Stage) -> dict:
    block = {"cmd": s.cmd, "deps": list(s.deps)}
    if s.params:
        block["params"] = list(s.params)
    block["outs"] = list(s.outs)
    if s.metrics:
        block["metrics"] = list(s.metrics)
    return block


def dvc_yaml(p: Params, params_file: str = PARAMS_FILE) -> str:
    """The text of dvc.yaml for these params."""
    groups: dict[str, list[Stage]] = {}
    for s in stages(p, params_file):
        groups.setdefault(s.name, []).append(s)
    doc = {}
    for name, group in groups.items():
        if group[0].key is None:
            doc[name] = _dvc_single(group[0])
        else:
            used = TEMPLATES[name].fields - {"params_file"}
            items = {s.key: {k: v for k, v in s.item.items() if k in used} for s in group}
            do = _dvc_template(TEMPLATES[name], group[0])
            do["cmd"] = do["cmd"].replace("${item.params_file}", params_file)
            doc[name] = {"foreach": items, "do": do}
    header = ("# GENERATED by `lth dvc-yaml` from params.yaml (see src/lth/plan.py): do not edit.\n"
              "# After changing params.yaml, run `lth dvc-yaml`; `lth check` fails while they disagree.\n")
    return header + yaml.safe_dump({"stages": doc}, sort_keys=False, width=120)


def check_dvc_yaml(p: Params, path: str | Path = "dvc.yaml", params_file: str = PARAMS_FILE) -> None:
    expected = dvc_yaml(p, params_file)
    path = Path(path)
    actual = path.read_text() if path.exists() else ""
    if actual != expected:
        raise LthError(
            f"{path} is out of date with {params_file} (stages or paths differ). "
            "Run `lth dvc-yaml` to regenerate it, then `dvc repro`."
        )
