"""The plan: which stages exist for a params file, what each reads and writes.

This is the one place that lays out the files (named in outputs.py) and the dependency
structure. `dvc.yaml`
is generated from it (`lth dvc-yaml`) and checked against it (`lth check`); the
Snakefile asks it for each job's inputs and command. Both tools therefore run the same
`lth` commands with the same arguments on the same files.

Sharing: experiments whose dense round 0 would be identical (same dataset, model,
training and rewind point) share it: their round 0 and theta_0 live under the first
such experiment (its "trunk"). Controls (reinit, random) branch off every pruned round
and reuse that round's mask. Trials (seeds) share nothing but the data.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lth import LthError, outputs
from lth.outputs import RESULTS, TABLES
from lth.params import Experiment, Params

PARAMS_FILE = "params.yaml"
CODE = "src/lth/"
REINIT_SEED_OFFSET = 1_000_000_000  # reinit seeds never collide with trial seeds (< 1e6)
# the stability copies' seeds: above every trial (< 1e6), round (< 1e9) and reinit (< 2e9) seed
STABILITY_SEED_OFFSET = 2_000_000_000


# ---- file layout -----------------------------------------------------------------
def raw_dir(dataset: str) -> str:
    return f"{outputs.RAW}/{dataset}"


def prepared(dataset: str) -> str:
    return f"{outputs.PREPARED}/{dataset}.safetensors"


def trunk(p: Params, e: Experiment) -> str:
    """The first experiment whose round 0 is identical to e's (possibly e itself)."""
    for other in p.experiments.values():
        if (other.dataset, other.model, other.train, other.reset.rewind_iteration) == \
                (e.dataset, e.model, e.train, e.reset.rewind_iteration):
            return other.name
    raise AssertionError("unreachable: e is among the experiments")


def seed_dir(experiment: str, seed: int | str) -> str:
    return f"runs/{experiment}/seed{seed}"


def round_dir(p: Params, e: Experiment, seed: int, k: int) -> str:
    owner = trunk(p, e) if k == 0 else e.name
    return f"{seed_dir(owner, seed)}/round{k:02d}"


def branch_dir(p: Params, e: Experiment, seed: int, k: int, branch: str) -> str:
    d = round_dir(p, e, seed, k)
    return d if branch == "ticket" else f"{d}/{branch}"


def theta0(p: Params, e: Experiment, seed: int) -> str:
    return f"{seed_dir(trunk(p, e), seed)}/{outputs.THETA0}"


def reset_source(p: Params, e: Experiment, seed: int) -> str:
    """What survivors restart from: theta_0, or round 0's weights at the rewind iteration."""
    if e.reset.rewind_iteration == 0:
        return theta0(p, e, seed)
    return f"{round_dir(p, e, seed, 0)}/{outputs.REWIND}"


def untrained_table(e: Experiment, seed: int) -> str:
    return f"{seed_dir(e.name, seed)}/{outputs.UNTRAINED}"


def supermask_dir(e: Experiment, seed: int) -> str:
    return f"{seed_dir(e.name, seed)}/{outputs.SUPERMASK}"


def stability_dir(e: Experiment, seed: int, r: int, k: int) -> str:
    """Under the experiment's own directory, also for round 0 (whose training may live under
    its trunk): the analysis reads the experiment's `stability.points`."""
    return f"{seed_dir(e.name, seed)}/{outputs.STABILITY}/round{r:02d}/k{k}"


def copy_seeds(seed: int, r: int) -> tuple[int, int]:
    """The data orders (and dropout draws) of round r's two stability copies in trial `seed`;
    the same for every k, so that the copies branching at different k see the same noise."""
    base = STABILITY_SEED_OFFSET + 2 * (1000 * seed + r)
    return base, base + 1


def stability_dirs(p: Params) -> list[tuple[Experiment, int, int, int, str]]:
    """(experiment, seed, round, k, directory) of every stability analysis."""
    return [(e, seed, r, k, stability_dir(e, seed, r, k)) for e in p.experiments.values() if e.stability
            for seed in p.seeds for r in e.stability.rounds for k in e.stability.rewind_iterations]


def tables(p: Params) -> tuple[str, ...]:
    """The aggregate stage's tables: the stability ones only when an experiment asks for them,
    so that a pipeline without stability keeps its stages as they were."""
    return TABLES + (outputs.STABILITY_TABLES if any(e.stability for e in p.experiments.values()) else ())


# Zhou et al. vary one part of Frankle & Carbin's algorithm at a time; each comparison holds
# the other two parts at Frankle & Carbin's choice.
ZHOU_BASE = {"criterion": "large_final", "kept": "original", "pruned": "zero"}
# The parts in words, for the figures' titles and the report's headings (both read the plan).
ZHOU_TITLES = {"criterion": "mask criteria", "kept": "mask-1 actions (what kept weights start from)",
               "pruned": "mask-0 actions (what pruned weights do)"}


# Frankle et al. 2020 call a network stable when its error barrier is within about this many
# percentage points (the figures draw the line, the report marks each analysis)
STABLE_POINTS = 2.0


def zhou_attributes(e: Experiment) -> dict[str, str]:
    return {"criterion": e.prune.criterion, "kept": e.reset.kept, "pruned": e.reset.pruned}


@dataclass(frozen=True)
class FigureSpec:
    """A figure to draw: its kind, the dataset (and model) it is about, and the experiments
    it shows. Titles are the figures stage's; the file name follows from the spec.

    kinds: fig1, fig3 (one experiment's curves), fig4, fig5, fig7 (Frankle & Carbin's figures;
    fig7 is their Figs. 7 and 8, drawn where figures.iterations asks for it),
    zhou_comparison (`varied`: the part of Zhou's decomposition it varies), zhou_untrained,
    stability_path and stability_barrier (one experiment's instability analysis).
    """

    kind: str
    dataset: str
    model: str | None  # None for the figures that span models (fig1, fig5)
    members: tuple[str, ...]  # experiment names
    varied: str | None = None

    @property
    def name(self) -> str:
        if self.kind in PER_EXPERIMENT:
            return f"{self.kind}_{self.members[0]}"
        kind = f"zhou_{self.varied}" if self.kind == "zhou_comparison" else self.kind
        return "_".join(x for x in (kind, self.dataset, self.model) if x is not None)


PER_EXPERIMENT = ("fig3", "stability_path", "stability_barrier")  # figures named after their one experiment


def figure_specs(p: Params) -> list[FigureSpec]:
    """Frankle & Carbin's figures of their algorithm's lineages, then Zhou's comparisons of
    the variations, then the untrained supermasks, then the instability analyses."""
    exps = p.experiments.values()
    frankle = [e for e in exps if zhou_attributes(e) == ZHOU_BASE]
    iterative = [e for e in frankle if e.prune.schedule == "iterative"]
    convs = [e for e in iterative if e.model.name.startswith("conv")]
    untrained = [e for e in exps if e.supermask.untrained]
    return (by_dataset("fig1", iterative)
            + [FigureSpec("fig3", e.dataset, e.model.name, (e.name,)) for e in iterative]
            + by_dataset("fig4", frankle, per_model=True) + by_dataset("fig5", convs)
            + (by_dataset("fig7", iterative, per_model=True) if p.figures.iterations else [])
            + zhou_comparisons(p) + by_dataset("zhou_untrained", untrained, per_model=True)
            + [FigureSpec(kind, e.dataset, e.model.name, (e.name,)) for e in exps if e.stability
               for kind in ("stability_path", "stability_barrier")])


def by_dataset(kind: str, exps: list[Experiment], per_model: bool = False) -> list[FigureSpec]:
    """A figure per dataset (or per dataset and model) of these experiments, showing them all."""
    key = (lambda e: (e.dataset, e.model.name)) if per_model else (lambda e: (e.dataset, None))
    return [FigureSpec(kind, dataset, model, tuple(e.name for e in exps if key(e) == (dataset, model)))
            for dataset, model in dict.fromkeys(map(key, exps))]


def zhou_comparisons(p: Params) -> list[FigureSpec]:
    """For every (dataset, model): a comparison per part that its iterative experiments vary
    with the other two parts at the base."""
    out = []
    for dataset, model in dict.fromkeys((e.dataset, e.model.name) for e in p.experiments.values()):
        for varied in ZHOU_BASE:
            members = [e for e in p.experiments.values()
                       if (e.dataset, e.model.name) == (dataset, model) and e.prune.schedule == "iterative"
                       and all(v == ZHOU_BASE[k] for k, v in zhou_attributes(e).items() if k != varied)]
            if len({zhou_attributes(e)[varied] for e in members}) > 1:
                out.append(FigureSpec("zhou_comparison", dataset, model, tuple(e.name for e in members), varied))
    return out


def figure_outputs(p: Params) -> list[tuple[FigureSpec, str]]:
    """Each figure file with the spec it draws (Snakemake's report captions go by its kind)."""
    return [(f, f"{RESULTS}/figures/{f.name}.{fmt}") for f in figure_specs(p) for fmt in p.figures.formats]


def figure_files(p: Params) -> list[str]:
    return [path for _, path in figure_outputs(p)]


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
        texts = (self.cmd, *self.deps, *self.outs, *self.metrics, *self.params)
        return {f for t in texts for f in re.findall(r"{(\w+)}", t)}


def written(stage: str, directory: str) -> dict[str, tuple[str, ...]]:
    """The outs of a stage that writes its files (outputs.OUTPUTS) into `directory`. Its JSON
    files (metrics with provenance, sparsity per layer) are plain outs: dvc's metrics are the
    compact per-experiment files of `aggregate`, which `dvc exp show` can show."""
    return {"outs": tuple(f"{directory}/{name}" for name in outputs.names(stage))}


EXP = "experiments.{experiment}"
# what computing stages read of `runtime` (results depend on the thread count; not on checkpoint_every)
# and of `data` beyond the prepared file (the input scaling)
COMPUTE = ("runtime.device", "runtime.threads", "data.normalize")
TEMPLATES = {
    t.name: t
    for t in (
        Template("data", "lth data --params {params_file} --dataset {dataset} --raw {raw} --out {prepared}",
                 # not data.local_dirs: verified files are the same wherever they came from
                 code=("data.py", "artifacts.py"),
                 params=tuple(f"data.{k}" for k in ("validation_size", "split_seed", "train_subset", "test_subset")),
                 outs=("{raw}", "{prepared}")),
        Template("init", "lth init --params {params_file} --experiment {experiment} --seed {seed} "
                         "--out {theta0} --mask {mask}",
                 code=("init.py", "models.py", "architectures.py", "masks.py", "artifacts.py"),
                 params=(f"{EXP}.model", f"{EXP}.dataset"),
                 outs=("{theta0}", "{mask}", "{sparsity}")),
        Template("train", "lth train --params {params_file} --experiment {experiment} --seed {seed} "
                          "--schedule-start {schedule_start} --round {round} --data {prepared} --ticket {ticket} --mask {mask} "
                          "--out {dir}",
                 code=("train.py", "loop.py", "checkpoint.py", "mlp_step.py", "graphed.py", "optim.py", "augment.py",
                       "models.py", "architectures.py", "masks.py", "provenance.py", "artifacts.py"),
                 params=(*COMPUTE, f"{EXP}.model", f"{EXP}.train", f"{EXP}.reset.rewind_iteration"),
                 deps=("{prepared}", "{ticket}", "{mask}"), **written("train", "{dir}")),
        Template("prune", "lth prune --params {params_file} --experiment {experiment} --steps {steps} "
                          "--initial {initial} --trained {trained} --mask {previous_mask} --out {mask}",
                 code=("pruning.py", "masks.py", "artifacts.py"),
                 params=tuple(f"{EXP}.prune.{k}" for k in ("schedule", "scope", "criterion", "rates")),
                 deps=("{initial}", "{trained}", "{previous_mask}"), outs=("{mask}", "{sparsity}")),
        Template("reset", "lth reset --params {params_file} --experiment {experiment} --seed {reset_seed} "
                          "--theta0 {theta0} --trained {trained} --mask {mask} --out {ticket}",
                 code=("reset.py", "masks.py", "artifacts.py"),
                 # the model section for model.init, the distribution random mask-1 actions draw from
                 # (dvc refuses a params key missing from the file, and init has a default)
                 params=(f"{EXP}.model", f"{EXP}.reset.kept", f"{EXP}.reset.pruned"),
                 deps=("{theta0}", "{trained}", "{mask}"), outs=("{ticket}",)),
        Template("reinit", "lth reinit --params {params_file} --experiment {experiment} --seed {reinit_seed} "
                           "--theta0 {theta0} --mask {mask} --out {ticket}",
                 code=("reset.py", "masks.py", "artifacts.py"), params=(f"{EXP}.model",),
                 deps=("{theta0}", "{mask}"), outs=("{ticket}",)),
        Template("shuffle", "lth shuffle --seed {shuffle_seed} --mask {ticket_mask} --out {mask}",
                 code=("pruning.py", "masks.py", "artifacts.py"), params=(),
                 deps=("{ticket_mask}",), outs=("{mask}", "{sparsity}")),
        Template("untrained", "lth untrained --params {params_file} --experiment {experiment} --seed {seed} "
                              "--data {prepared} --theta0 {theta0} --trained {trained} --out {table}",
                 code=("supermask.py", "loop.py", "optim.py", "pruning.py", "reset.py", "models.py", "architectures.py",
                       "masks.py", "provenance.py", "artifacts.py"),
                 params=(*COMPUTE, f"{EXP}.model", f"{EXP}.prune.scope", f"{EXP}.supermask.untrained"),
                 deps=("{prepared}", "{theta0}", "{trained}"), outs=("{table}",)),
        Template("supermask", "lth supermask --params {params_file} --experiment {experiment} --seed {seed} "
                              "--data {prepared} --theta0 {theta0} --out {dir}",
                 # pruning.py: supermask.py holds the untrained stage too
                 code=("supermask.py", "loop.py", "optim.py", "pruning.py", "reset.py", "models.py", "architectures.py",
                       "masks.py", "provenance.py", "artifacts.py"),
                 params=(*COMPUTE, f"{EXP}.model", f"{EXP}.supermask.learned"),
                 deps=("{prepared}", "{theta0}"), **written("supermask", "{dir}")),
        Template("stability", "lth stability --params {params_file} --experiment {experiment} --seed {seed} "
                              "--copy-seeds {copy_a} {copy_b} --rewind-iteration {k} --schedule-start {schedule_start} "
                              "--round {round} --data {prepared} "
                              "--ticket {ticket} --mask {mask} --out {dir}",
                 code=("stability.py", "train.py", "loop.py", "checkpoint.py", "mlp_step.py", "graphed.py", "optim.py",
                       "augment.py", "models.py", "architectures.py", "masks.py", "provenance.py", "artifacts.py"),
                 # not stability.rounds or rewind_iterations: they say which of these stages exist
                 params=(*COMPUTE, f"{EXP}.model", f"{EXP}.train", f"{EXP}.stability.points"),
                 deps=("{prepared}", "{ticket}", "{mask}"), **written("stability", "{dir}")),
        Template("aggregate", "lth aggregate --params {params_file} --out {results}",
                 code=("aggregate.py", "plan.py", "artifacts.py"),
                 params=("seeds", "experiments", "figures.curve_percents"),  # the rounds its metrics report
                 deps=("{runs}",), outs=("{tables}", "{plots}"), metrics=("{metrics}",)),
        Template("figures", "lth figures --params {params_file} --tables {results} --out {results}/figures",
                 code=("figures.py", "plan.py", "artifacts.py"), params=("figures", "experiments"),
                 deps=("{tables}",), outs=("{figures}",)),
        Template("report", "lth report --params {params_file} --results {results} --out {results}/"
                           + outputs.REPORT,
                 code=("report.py", "architectures.py", "plan.py", "artifacts.py"),
                 params=("seeds", *COMPUTE, "figures.formats", "experiments"),
                 deps=("{report_tables}",), **written("report", "{results}")),
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
    for k, values in item.items():
        if isinstance(values, list) and "{" + k + "}" in text:
            return [text.replace("{" + k + "}", v).format(**item) for v in values]
    return [text.format(**item)]


def make_stage(name: str, key: str | None, item: dict) -> Stage:
    t = TEMPLATES[name]
    expand = lambda texts: tuple(s for x in texts for s in _fill(x, item))  # noqa: E731
    return Stage(name=name, key=key, item=item, cmd=t.cmd.format(**item),
                 deps=tuple(CODE + c for c in t.code) + expand(t.deps),
                 outs=expand(t.outs), metrics=expand(t.metrics), params=expand(t.params))


def lineage(p: Params, e: Experiment, seed: int, params_file: str) -> list[Stage]:
    """init and round 0 (only for a trunk), then prune/reset/train and controls per round."""
    base = {"params_file": params_file, "experiment": e.name, "seed": seed,
            "prepared": prepared(e.dataset)}
    r0 = round_dir(p, e, seed, 0)
    out = []
    if trunk(p, e) == e.name:
        out.append(make_stage("init", f"{e.name}-s{seed}", {
            **base, "theta0": theta0(p, e, seed), "mask": f"{r0}/{outputs.MASK}",
            "sparsity": f"{r0}/{outputs.SPARSITY}"}))
        out.append(make_stage("train", f"{e.name}-s{seed}-r00", {
            **base, "schedule_start": 0, "round": 0, "dir": r0, "ticket": theta0(p, e, seed), "mask": f"{r0}/{outputs.MASK}"}))
    if e.supermask.untrained:
        out.append(make_stage("untrained", f"{e.name}-s{seed}", {
            **base, "theta0": theta0(p, e, seed), "trained": f"{r0}/{outputs.TRAINED}",
            "table": untrained_table(e, seed)}))
    if e.supermask.learned:
        out.append(make_stage("supermask", f"{e.name}-s{seed}", {
            **base, "theta0": theta0(p, e, seed), "dir": supermask_dir(e, seed)}))
    for k in range(1, e.prune.rounds + 1):
        key = f"{e.name}-s{seed}-r{k:02d}"
        round_seed = 1000 * seed + k  # the random draws of round k of this trial
        # round k (and its controls) starts at the rewind point, and at its place in the
        # learning-rate schedule (open_lth's semantics; optim.Schedule)
        rewound = {**base, "schedule_start": e.reset.rewind_iteration, "round": k}
        d = round_dir(p, e, seed, k)
        source = round_dir(p, e, seed, 0 if e.prune.schedule == "one_shot" else k - 1)
        mask = f"{d}/{outputs.MASK}"
        trained = f"{source}/{outputs.TRAINED}"
        out.append(make_stage("prune", key, {
            **base, "steps": k if e.prune.schedule == "one_shot" else 1, "initial": reset_source(p, e, seed),
            "trained": trained, "previous_mask": f"{source}/{outputs.MASK}",
            "mask": mask, "sparsity": f"{d}/{outputs.SPARSITY}"}))
        out.append(make_stage("reset", key, {
            **base, "reset_seed": round_seed, "theta0": reset_source(p, e, seed), "trained": trained,
            "mask": mask, "ticket": f"{d}/{outputs.TICKET}"}))
        out.append(make_stage("train", key, {**rewound, "dir": d, "ticket": f"{d}/{outputs.TICKET}", "mask": mask}))
        if "reinit" in e.controls:
            reinit = f"{d}/{outputs.REINIT}"
            out.append(make_stage("reinit", key, {
                **base, "reinit_seed": REINIT_SEED_OFFSET + round_seed, "theta0": theta0(p, e, seed), "mask": mask,
                "ticket": f"{reinit}/{outputs.TICKET}"}))
            out.append(make_stage("train", f"{key}-reinit", {
                **rewound, "dir": reinit, "ticket": f"{reinit}/{outputs.TICKET}", "mask": mask}))
        if "random" in e.controls:
            random = f"{d}/{outputs.RANDOM}"
            out.append(make_stage("shuffle", key, {
                "shuffle_seed": round_seed, "ticket_mask": mask, "mask": f"{random}/{outputs.MASK}",
                "sparsity": f"{random}/{outputs.SPARSITY}"}))
            out.append(make_stage("reset", f"{key}-random", {
                **base, "reset_seed": round_seed, "theta0": reset_source(p, e, seed), "trained": trained,
                "mask": f"{random}/{outputs.MASK}", "ticket": f"{random}/{outputs.TICKET}"}))
            out.append(make_stage("train", f"{key}-random", {
                **rewound, "dir": random, "ticket": f"{random}/{outputs.TICKET}", "mask": f"{random}/{outputs.MASK}"}))
    for r in e.stability.rounds if e.stability else ():
        # from what round r's training starts: theta_0 densely, or the round's ticket
        start = theta0(p, e, seed) if r == 0 else f"{round_dir(p, e, seed, r)}/{outputs.TICKET}"
        copy_a, copy_b = copy_seeds(seed, r)
        for k in e.stability.rewind_iterations:
            out.append(make_stage("stability", f"{e.name}-s{seed}-r{r:02d}-k{k}", {
                **base, "copy_a": copy_a, "copy_b": copy_b, "k": k, "ticket": start, "round": r,
                "schedule_start": 0 if r == 0 else e.reset.rewind_iteration,
                "mask": f"{round_dir(p, e, seed, r)}/{outputs.MASK}", "dir": stability_dir(e, seed, r, k)}))
    return out


def branches(e: Experiment) -> list[str]:
    return ["ticket", *e.controls]


# The branches in words, as the figures' legends and dvc's plots name them
BRANCH_LABELS = {"ticket": "winning ticket", "reinit": "random reinit", "random": "random pruning"}


def percent_label(p: float) -> str:
    """As the paper labels them: 100, 51.3, 7.0, 3.6, 0.45."""
    if p >= 99.95:
        return "100"
    return f"{p:.1f}" if p >= 1 else f"{p:.2g}"


def nearest_rounds(percent_by_round: dict[int, float], wanted: list[float]) -> list[int]:
    """The rounds whose percent remaining is nearest each wanted percent (figures.curve_percents:
    the rounds that Fig. 3 draws and dvc's metrics report), each once, in the wanted order."""
    chosen = []
    for w in wanted:
        k = min(percent_by_round, key=lambda r: (abs(percent_by_round[r] - w), r))
        if k not in chosen:
            chosen.append(k)
    return chosen


def trained_dirs(p: Params) -> list[tuple[Experiment, int, int, str, str]]:
    """(experiment, seed, round, branch, directory) of every training, as aggregate reads them."""
    out = []
    for e in p.experiments.values():
        for seed in p.seeds:
            for k in range(e.prune.rounds + 1):
                for b in branches(e) if k else ["ticket"]:
                    out.append((e, seed, k, b, branch_dir(p, e, seed, k, b)))
    return out


def supermask_files(p: Params) -> list[str]:
    """The untrained-evaluation tables and learned-supermask metrics that aggregate reads."""
    out = []
    for e in p.experiments.values():
        for seed in p.seeds:
            if e.supermask.untrained:
                out.append(untrained_table(e, seed))
            if e.supermask.learned:
                out.append(f"{supermask_dir(e, seed)}/{outputs.METRICS}")
    return out


def metrics_files(p: Params) -> list[str]:
    """dvc's metrics: one compact file per experiment (aggregate.views)."""
    return [f"{RESULTS}/{outputs.METRICS_DIR}/{name}.json" for name in p.experiments]


def plot_files(p: Params) -> dict[str, dict[str, str]]:
    """{experiment: {kind: file}} of the tables that dvc.yaml declares as plots."""
    return {name: {kind: f"{RESULTS}/{outputs.PLOTS_DIR}/{name}/{file}" for kind, file in
                   (("curves", outputs.PLOT_CURVES), ("early_stop", outputs.PLOT_EARLY_STOP))}
            for name in p.experiments}


def stages(p: Params, params_file: str = PARAMS_FILE) -> list[Stage]:
    """Every stage of the pipeline for these params, in an order that respects deps."""
    datasets = dict.fromkeys(e.dataset for e in p.experiments.values())
    out = [make_stage("data", d, {"params_file": params_file, "dataset": d, "raw": raw_dir(d),
                                  "prepared": prepared(d)}) for d in datasets]
    for e in p.experiments.values():
        for seed in p.seeds:
            out += lineage(p, e, seed, params_file)
    stability = [f"{d}/{f}" for *_, d in stability_dirs(p) for f in (outputs.INTERPOLATION, outputs.INSTABILITY)]
    read_by_report = (outputs.ROUNDS, outputs.UNTRAINED, outputs.LEARNED) + ((outputs.STABILITY_BARRIERS,) if stability
                                                                            else ())
    results = {"params_file": params_file, "results": RESULTS, "figures": figure_files(p),
               "tables": [f"{RESULTS}/{t}" for t in TABLES], "metrics": metrics_files(p),
               "plots": [f for files in plot_files(p).values() for f in files.values()],
               "runs": list(dict.fromkeys(f"{d}/{f}" for *_, d in trained_dirs(p)
                                          for f in (outputs.METRICS, outputs.CURVE))) + supermask_files(p) + stability,
               "tables": [f"{RESULTS}/{t}" for t in tables(p)],
               "report_tables": [f"{RESULTS}/{t}" for t in read_by_report]}
    out += [make_stage(name, None, results) for name in ("aggregate", "figures", "report")]
    return out


# ---- what the computing stages claim of the machine (Snakemake resources) --------------------
# The stages that compute on runtime.device; every other stage is quick CPU work.
DEVICE_STAGES = ("train", "untrained", "supermask", "stability")
# The Snakemake resource each of them claims one of: the global limit (trainings_at_once) says
# how many share the device. dvc repro runs one stage at a time and needs none.
TRAININGS = "trainings"


def device_resources(p: Params) -> dict[str, int]:
    """The resources of a DEVICE_STAGES job: one of TRAININGS, and on a cluster a GPU when the params
    ask for CUDA (snakemake-executor-plugin-slurm turns gpu=1 into --gpus=1; locally a plain resource)."""
    return {TRAININGS: 1, **({"gpu": 1} if p.runtime.device == "cuda" else {})}


def trainings_at_once(p: Params) -> int | None:
    """How many DEVICE_STAGES jobs Snakemake may run at once on this machine's device, or None for
    no limit beyond the cores: runtime.trainings_per_device where given (on any device); else 1 where
    the trainings run on a CUDA device (several share one only when asked: a ResNet or VGG may need
    all of its memory) and no limit on the CPU, where each reserves runtime.threads cores already."""
    if p.runtime.trainings_per_device is not None:
        return p.runtime.trainings_per_device
    return 1 if trains_on_cuda(p.runtime.device) else None


GPU_DRIVERS = ("/proc/driver/nvidia", "/dev/kfd")  # Linux: NVIDIA's driver, AMD's (ROCm torch's "cuda")


def trains_on_cuda(device: str) -> bool:
    """Whether the stages' runtime.device means CUDA on this machine, as lth.loop.resolve_device
    decides it. torch is imported only to resolve `auto`, and not on a Linux machine without a
    GPU driver: Snakemake asks at every start, and the import takes a second or more."""
    if device != "auto":
        return device == "cuda"
    if sys.platform == "linux" and not any(Path(driver).exists() for driver in GPU_DRIVERS):
        return False
    import torch

    return torch.cuda.is_available()


# ---- dvc.yaml --------------------------------------------------------------------
# dvc.yaml lists one stage per round, so it is generated from params.yaml, and DVC cannot
# expand it from params itself (its templating has no arithmetic and `prune.rounds` is not a
# list). Instead its first stage, `check`, refuses a dvc.yaml that no longer matches
# params.yaml before any other stage starts. It runs whenever params.yaml, the code that plans
# or dvc.yaml changed (DVC takes no dvc.yaml as a dependency: its command carries the digest of
# the other stages), which is whenever they can disagree, so `dvc status` stays quiet otherwise.
# Its output never changes, so it reruns nothing downstream; the stages that depend on no
# other (data, init) depend on it, and so everything runs after it.
CHECKED = f"{RESULTS}/{outputs.CHECKED}"
CHECK_CODE = ("plan.py", "outputs.py", "params.py", "params.schema.yaml")


def check_stage(params_file: str = PARAMS_FILE, plan_digest: str = "") -> Stage:
    cmd = f"lth check --params {params_file} --out {CHECKED}" + (f" --plan {plan_digest}" if plan_digest else "")
    return Stage(name="check", key=None, item={}, cmd=cmd, deps=(params_file, *(CODE + c for c in CHECK_CODE)),
                 outs=(CHECKED,))


def _params_block(keys: list[str], params_file: str) -> list:
    """dvc.yaml's params of a stage: keys of params.yaml, or of the file the commands read."""
    return keys if params_file == PARAMS_FILE else [{params_file: keys}]


def _dvc_block(t: Template, placeholders: dict[str, str], params_file: str) -> dict:
    """A `do:` block: the template with each {field} as dvc's ${item.field}."""
    def fill(text: str) -> str:
        return text.format(**placeholders)

    roots = [] if t.deps else [CHECKED]  # a stage that depends on no other stage waits for the check
    block = {"cmd": fill(t.cmd), "deps": [CODE + c for c in t.code] + roots + [fill(d) for d in t.deps]}
    if t.params:
        block["params"] = _params_block([fill(x) for x in t.params], params_file)
    block["outs"] = [fill(o) for o in t.outs]
    if t.metrics:
        block["metrics"] = [fill(m) for m in t.metrics]
    return block


def dvc_doc(p: Params, params_file: str = PARAMS_FILE) -> dict:
    """dvc.yaml as a mapping: the check, then a `foreach` stage per template, then the plots."""
    doc = {}
    groups: dict[str, list[Stage]] = {}
    for s in stages(p, params_file):
        groups.setdefault(s.name, []).append(s)
    for name, group in groups.items():
        t = TEMPLATES[name]
        if group[0].key is None:
            s = group[0]
            doc[name] = {"cmd": s.cmd, "deps": list(s.deps),
                         **({"params": _params_block(list(s.params), params_file)} if s.params else {}),
                         "outs": list(s.outs), **({"metrics": list(s.metrics)} if s.metrics else {})}
            continue
        used = t.fields - {"params_file"}
        items = {s.key: {k: v for k, v in s.item.items() if k in used} for s in group}
        placeholders = {k: "${item." + k + "}" for k in used} | {"params_file": params_file}
        doc[name] = {"foreach": items, "do": _dvc_block(t, placeholders, params_file)}
    plots = dvc_plots(p)
    digest = hashlib.sha256(yaml.safe_dump([doc, plots]).encode()).hexdigest()[:16]
    check = check_stage(params_file, digest)
    check_block = {"cmd": check.cmd, "deps": list(check.deps), "outs": list(check.outs)}
    return {"stages": {"check": check_block, **doc}, "plots": plots}


# dvc's plots: the templates (vega-lite, in .dvc/plots/) draw one line per `line` column value,
# dashed by `branch` (ticket solid, controls dashed, as the paper), a panel per experiment
# compared (`dvc plots diff`); their x axis is linear (curves) or a reversed log percent axis.
def dvc_plots(p: Params) -> list[dict]:
    out = []
    for name, files in plot_files(p).items():
        out += [
            {f"{name}: test accuracy during training": {
                "template": "lth_curves", "x": "iteration", "y": {files["curves"]: "test_accuracy"},
                "x_label": "Training iterations", "y_label": "Test accuracy"}},
            {f"{name}: test accuracy at early stop": {
                "template": "lth_percent", "x": "percent_remaining", "y": {files["early_stop"]: "test_accuracy"},
                "x_label": "Percent of weights remaining", "y_label": "Test accuracy at early stop"}},
            {f"{name}: early-stop iteration": {
                "template": "lth_percent", "x": "percent_remaining",
                "y": {files["early_stop"]: "early_stop_iteration"},
                "x_label": "Percent of weights remaining", "y_label": "Early-stop iteration (val. loss)"}},
        ]
    return out


def dvc_yaml(p: Params, params_file: str = PARAMS_FILE) -> str:
    """The text of dvc.yaml for these params."""
    header = (f"# GENERATED by `{regenerate_command(params_file)}` (see src/lth/plan.py): do not edit.\n"
              f"# Its first stage, `check`, refuses to run the others while it does not match {params_file}.\n")
    return header + yaml.safe_dump(dvc_doc(p, params_file), sort_keys=False, width=120)


def regenerate_command(params_file: str) -> str:
    return "lth dvc-yaml" + ("" if params_file == PARAMS_FILE else f" --params {params_file}")


def stage_ids(doc: dict) -> set[str]:
    """The stage names dvc shows for a dvc.yaml mapping (`name@key` for foreach items)."""
    out = set()
    for name, block in (doc.get("stages") or {}).items():
        items = block.get("foreach") if isinstance(block, dict) else None
        out |= {f"{name}@{key}" for key in items} if isinstance(items, dict) else {name}
    return out


def _listed(ids: set[str], most: int = 4) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


def difference(expected: dict, actual: dict) -> str:
    """What differs between two dvc.yaml mappings, in words: stages added, removed, changed."""
    want, have = stage_ids(expected), stage_ids(actual)
    parts = []
    if want - have:
        parts.append(f"it lacks {_listed(want - have)}")
    if have - want:
        parts.append(f"it still has {_listed(have - want)}, which the params no longer plan")
    wanted, had = expected.get("stages", {}), actual.get("stages") or {}
    # the check's command carries a digest of the rest: it differs whenever anything does
    changed = {name for name in wanted.keys() & had.keys() if wanted[name] != had[name]} - {"check"}
    if changed and not parts:  # stages added or removed change the results' deps too: not news
        parts.append(f"the commands, files or params of {_listed(changed)} differ")
    rest = {k for k in expected.keys() | actual.keys() if k != "stages" and expected.get(k) != actual.get(k)}
    if rest:
        parts.append(f"its {', '.join(sorted(rest))} differ")
    return "; ".join(parts) or "its text differs"


def check_dvc_yaml(p: Params, path: str | Path = "dvc.yaml", params_file: str = PARAMS_FILE) -> None:
    """Refuse a dvc.yaml that is not the one `lth dvc-yaml` makes from these params, saying
    what differs and what to run (which depends on where DVC runs us)."""
    import os

    path = Path(path)
    expected = dvc_yaml(p, params_file)
    actual = path.read_text() if path.exists() else ""
    if actual == expected:
        return
    try:
        actual_doc = yaml.safe_load(actual) or {}
    except yaml.YAMLError:
        actual_doc = {}
    what = (difference(dvc_doc(p, params_file), actual_doc if isinstance(actual_doc, dict) else {})
            if path.exists() else "there is none")
    regenerate = regenerate_command(params_file)
    if os.environ.get("DVC_EXP_BASELINE_REV") and f"{os.sep}.dvc{os.sep}tmp{os.sep}" in str(Path.cwd()):
        todo = (f"A queued experiment cannot change which stages exist or what they write. Queue it "
                f"from a workspace that has them: set the values in {params_file}, run `{regenerate}`, "
                "then `dvc exp run --queue` (once per value of a sweep), and `dvc exp run --run-all`.")
    else:
        todo = (f"Run `{regenerate}`, then run again: `dvc repro`, or `dvc exp run` without -S "
                f"({params_file} keeps the values -S set).")
    raise LthError(f"{path} does not match {params_file} ({what}); nothing has run. {todo}")
