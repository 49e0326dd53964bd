"""`lth`: one subcommand per pipeline stage, plus tools to keep the pipeline in order.

A subcommand parses its arguments and calls its stage's `run` in the module of its
concern (`run_<stage>` where one module holds two stages). Imports are lazy so that a
stage pays only for what it uses: `prune` and `reset` never import torch; parsing arguments
imports nothing heavy. A stage's module is imported with the garbage collector paused, and
the `lth` program exits without the interpreter's teardown (`_collector_paused`, `main`): both
are start-up and exit costs of torch, not work (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from contextlib import contextmanager
from pathlib import Path

DESCRIPTION = """\
Lottery tickets by iterative magnitude pruning, one pipeline stage per subcommand.

Each round k of an experiment's lineage (one per seed) is three stages:
  prune   mask_k  = drop each layer's rate of its surviving weights, by |trained_{k-1}|
  reset   ticket_k = mask_k * theta_0  (the winning-ticket candidate)
  train   train ticket_k under mask_k; curve, early stop, metrics
Round 0 trains theta_0 densely. Controls branch off each round: `reinit` (the mask with
a fresh init) and `shuffle` (a random mask of the same per-layer sparsity). Supermasks
(Zhou et al.): `untrained` evaluates masked untrained networks, `supermask` learns a
mask over frozen weights. `stability` (Frankle et al. 2020) trains two copies of a round
from iteration k and evaluates the path between them. `data` and `init` come first;
`aggregate`, `figures` and `report` end the pipeline.
`dvc repro` and `snakemake --cores N` both run exactly these commands, reading params.yaml.
"""


@contextmanager
def _collector_paused():
    """For a stage's imports: the garbage collector paused, then what they made frozen.
    Importing torch (or pandas, matplotlib) makes about a million objects, and each full
    collection on the way walks all of them: paused, `import torch` takes about 0.3 s less.
    Frozen, they are never walked again, by the collections while the stage runs nor at exit."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _params(args):
    from lth.params import load_source

    params, args.params_read = load_source(args.params)  # checked again when the command ends (main)
    return params


def _check_params_unchanged(args) -> None:
    """What the command read of params.yaml is still there: the keys its stage depends on
    (plan.TEMPLATES, as dvc.yaml lists them), or the whole file for the other commands."""
    from lth.params import check_unchanged
    from lth.plan import TEMPLATES

    template = TEMPLATES.get(args.command)
    keys = None if template is None else tuple(
        k.format(experiment=getattr(args, "experiment", None)) for k in template.params)
    check_unchanged(args.params, args.params_read, keys, args.command)


def _experiment(args):
    from lth.params import ParamsError

    p = _params(args)
    if args.experiment not in p.experiments:
        raise ParamsError(f"{args.params}: no experiment {args.experiment!r}; "
                          f"experiments are: {', '.join(p.experiments)}")
    return p, p.experiments[args.experiment]


def cmd_data(args) -> None:
    with _collector_paused():
        from lth import data

    from lth.params import check_local_dirs

    params = _params(args)
    check_local_dirs(args.params_read, args.params)
    summary = data.run(args.dataset, params.data, Path(args.raw), Path(args.out))
    print(f"data: {summary}")


def cmd_init(args) -> None:
    with _collector_paused():
        from lth import init

    _, e = _experiment(args)
    init.run(e, args.seed, Path(args.out), Path(args.mask))
    print(f"init: theta_0 of {e.model.name}, {e.model.init} (seed {args.seed}) -> {args.out}")


def cmd_train(args) -> None:
    with _collector_paused():
        from lth import train

    p, e = _experiment(args)
    metrics = train.run(e, p.runtime, p.data, Path(args.data), Path(args.ticket), Path(args.mask),
                        Path(args.out), seed=args.seed, schedule_start=args.schedule_start, round_index=args.round)
    print(f"train: {metrics['percent_remaining']:.1f}% remaining, early stop at "
          f"{metrics['early_stop_iteration']}, test accuracy {metrics['early_stop_test_accuracy']:.4f}")


def _remaining(report: dict, path: str) -> None:
    print(f"{report['percent_remaining']:.2f}% of weights remaining -> {path}")


def cmd_prune(args) -> None:
    with _collector_paused():
        from lth import pruning

    _, e = _experiment(args)
    _remaining(pruning.run(e.prune, args.steps, Path(args.initial), Path(args.trained), Path(args.mask),
                           Path(args.out)), args.out)


def cmd_shuffle(args) -> None:
    with _collector_paused():
        from lth import pruning

    _remaining(pruning.run_shuffle(Path(args.mask), Path(args.out), args.seed), args.out)


def cmd_reset(args) -> None:
    with _collector_paused():
        from lth import reset

    _, e = _experiment(args)
    reset.run(e.reset, args.seed, Path(args.theta0), Path(args.trained), Path(args.mask), Path(args.out),
              e.model.init)
    print(f"reset: ticket = {e.reset.kept}({args.theta0}) where kept, {e.reset.pruned} where pruned -> {args.out}")


def cmd_untrained(args) -> None:
    with _collector_paused():
        from lth import supermask

    p, e = _experiment(args)
    if e.supermask.untrained is None:
        raise _not_set(args, "supermask.untrained")
    rows = supermask.run_untrained(e, p.runtime, p.data, Path(args.data), Path(args.theta0), Path(args.trained),
                                   Path(args.out), seed=args.seed)
    best = max(rows, key=lambda r: r["validation_accuracy"])
    print(f"untrained: {len(rows)} masked untrained networks evaluated -> {args.out}; best by validation: "
          f"{best['criterion']} + {best['action']} at {best['percent_remaining']:.1f}%, "
          f"test accuracy {best['test_accuracy']:.4f}")


def cmd_supermask(args) -> None:
    with _collector_paused():
        from lth import supermask

    p, e = _experiment(args)
    if e.supermask.learned is None:
        raise _not_set(args, "supermask.learned")
    m = supermask.run(e, p.runtime, p.data, Path(args.data), Path(args.theta0), Path(args.out), seed=args.seed)
    print(f"supermask: {m['final_percent_expected']:.1f}% expected ones, test accuracy "
          f"{m['final_sampled_test_accuracy']:.4f} (sampled) / {m['final_expected_test_accuracy']:.4f} (expected)")


def _not_set(args, key: str):
    from lth.params import ParamsError

    return ParamsError(f"{args.params}: experiments.{args.experiment}.{key} is not set, "
                       "so there is nothing to do; set it (see params.schema.yaml)")


def cmd_stability(args) -> None:
    from lth import stability

    p, e = _experiment(args)
    if e.stability is None:
        raise _not_set(args, "stability")
    m = stability.run(e, p.runtime, p.data, Path(args.data), Path(args.ticket), Path(args.mask), Path(args.out),
                      seed=args.seed, copy_seeds=tuple(args.copy_seeds), k=args.rewind_iteration,
                      schedule_start=args.schedule_start, round_index=args.round)
    print(f"stability: copies from iteration {m['rewind_iteration']}, test error {100 * m['test_error_a']:.2f}% "
          f"and {100 * m['test_error_b']:.2f}%, error barrier {100 * m['error_barrier']:.2f} points -> {args.out}")


def cmd_reinit(args) -> None:
    with _collector_paused():
        from lth import reset

    _, e = _experiment(args)
    reset.run_reinit(args.seed, Path(args.theta0), Path(args.mask), Path(args.out), e.model.init)
    print(f"reinit: ticket's mask * fresh {e.model.init} init (seed {args.seed}) -> {args.out}")


def cmd_aggregate(args) -> None:
    with _collector_paused():
        from lth import aggregate

    rounds = aggregate.run(_params(args), Path(args.out))
    print(f"aggregate: {len(rounds)} trainings -> {args.out}")


def cmd_figures(args) -> None:
    with _collector_paused():
        from lth import figures

    written = figures.run(_params(args), Path(args.tables), Path(args.out))
    print("figures: " + ", ".join(map(str, written)))


def cmd_report(args) -> None:
    with _collector_paused():
        from lth import report

    report.run(_params(args), Path(args.results), Path(args.out))
    print(f"report: {args.out}")


def cmd_dvc_yaml(args) -> None:
    from lth import plan
    from lth.artifacts import write_text

    write_text(args.out, plan.dvc_yaml(_params(args), args.params))
    print(f"wrote {args.out} from {args.params}")


def cmd_profile(args) -> None:
    from lth import plan, profiles
    from lth.artifacts import write_text
    from lth.params import from_dict

    path = profiles.path_of(args.name)
    resolved = profiles.resolve(path)
    dvc_yaml = plan.dvc_yaml(from_dict(resolved, path), args.out)  # refuses bad params before writing either
    write_text(args.out, profiles.render(args.name, path, resolved))
    write_text(args.dvc_yaml, dvc_yaml)
    print(f"wrote {args.out} from {path}, and {args.dvc_yaml} from it; next: dvc repro or snakemake --cores N")


def cmd_check(args) -> None:
    from lth import plan
    from lth.artifacts import write_text
    from lth.params import check_environment

    p = _params(args)
    check_environment(args.params_read, args.params)
    plan.check_dvc_yaml(p, args.dvc_yaml, args.params)
    done = f"{args.params} is valid and {args.dvc_yaml} matches it"
    if args.out:  # dvc's `check` stage: the same text every time, so nothing after it reruns
        write_text(args.out, done + "\n")
    print(done)


class Version(argparse.Action):
    """--version: the package version and the commit of the code (asked only when printed)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from lth import __version__
        from lth.provenance import code_version

        print(f"lth {__version__} ({code_version()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lth", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=Version, nargs=0, help="print the version and git commit, then exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    def add(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        p.set_defaults(func=func)
        return p

    p = add("data", cmd_data, "acquire a dataset (md5-verified) and save its train/validation/test split")
    p.add_argument("--dataset", required=True, choices=["mnist", "fashion_mnist", "cifar10"])
    p.add_argument("--raw", required=True, help="directory for the verified raw files")
    p.add_argument("--out", required=True, help="prepared tensors (.safetensors)")

    p = add("init", cmd_init, "create theta_0 (model.init: Glorot normal by default) and the dense round-0 mask")
    p.add_argument("--experiment", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="theta_0 (.safetensors)")
    p.add_argument("--mask", required=True, help="dense mask of round 0 (.safetensors)")

    p = add("train", cmd_train, "train a ticket under its mask; write weights, curve and metrics")
    p.add_argument("--experiment", required=True)
    p.add_argument("--seed", type=int, required=True, help="seed of the batch order, augmentation and dropout")
    p.add_argument("--schedule-start", type=int, default=0,
                   help="the learning-rate schedule's step at the first iteration (a rewound round: the "
                        "rewind iteration)")
    p.add_argument("--round", type=int, default=0, help="the round: with --seed, it seeds the augmentation's draws")
    p.add_argument("--data", required=True, help="prepared tensors from `lth data`")
    p.add_argument("--ticket", required=True, help="starting weights (theta_0 or a reset ticket)")
    p.add_argument("--mask", required=True, help="mask of this round")
    p.add_argument("--out", required=True, help="round directory")

    p = add("prune", cmd_prune, "prune the surviving weights by a criterion (default: trained magnitude)")
    p.add_argument("--experiment", required=True)
    p.add_argument("--steps", type=int, default=1,
                   help="rounds of pruning applied at once (1 = iterative; k = one-shot to round k)")
    p.add_argument("--initial", required=True,
                   help="the weights that training started from (theta_0 or the rewind point)")
    p.add_argument("--trained", required=True, help="trained weights to rank")
    p.add_argument("--mask", required=True, help="mask those weights were trained under")
    p.add_argument("--out", required=True, help="new mask; sparsity.json is written beside it")

    p = add("reset", cmd_reset, "surviving weights back to theta_0 (or the rewind point): mask * start")
    p.add_argument("--experiment", required=True)
    p.add_argument("--seed", type=int, required=True, help="seed of the random mask-1 actions")
    p.add_argument("--theta0", required=True, help="theta_0, or round 0's weights at the rewind iteration")
    p.add_argument("--trained", required=True,
                   help="the trained weights the mask was ranked on (mask-0 variants use their movement)")
    p.add_argument("--mask", required=True)
    p.add_argument("--out", required=True)

    p = add("untrained", cmd_untrained,
            "supermasks: evaluate theta_0 under one-shot masks of each criterion, with no training")
    p.add_argument("--experiment", required=True)
    p.add_argument("--seed", type=int, required=True, help="seed of the random mask-1 actions")
    p.add_argument("--data", required=True, help="prepared tensors from `lth data`")
    p.add_argument("--theta0", required=True)
    p.add_argument("--trained", required=True, help="round 0's trained weights (the masks are ranked on them)")
    p.add_argument("--out", required=True, help="table (.csv), one row per criterion, action and percent")

    p = add("supermask", cmd_supermask,
            "learn a supermask: frozen weights, Bernoulli(sigmoid(score)) masks, straight-through gradient")
    p.add_argument("--experiment", required=True)
    p.add_argument("--seed", type=int, required=True, help="seed of the batch order and mask samples")
    p.add_argument("--data", required=True, help="prepared tensors from `lth data`")
    p.add_argument("--theta0", required=True)
    p.add_argument("--out", required=True, help="directory for scores, curve and metrics")

    p = add("stability", cmd_stability,
            "instability analysis: two copies trained from iteration k of a round, the path between them")
    p.add_argument("--experiment", required=True)
    p.add_argument("--seed", type=int, required=True, help="seed of the trial's data order (to iteration k)")
    p.add_argument("--copy-seeds", type=int, nargs=2, required=True, metavar=("A", "B"),
                   help="seeds of the two copies' data orders and dropout")
    p.add_argument("--rewind-iteration", type=int, required=True, help="k: the iteration at which the copies part")
    p.add_argument("--schedule-start", type=int, default=0,
                   help="the learning-rate schedule's step at the round's first iteration (as lth train's)")
    p.add_argument("--round", type=int, default=0, help="the round: with the seeds, it seeds the augmentation")
    p.add_argument("--data", required=True, help="prepared tensors from `lth data`")
    p.add_argument("--ticket", required=True, help="the round's starting weights (theta_0 or its ticket)")
    p.add_argument("--mask", required=True, help="mask of the round")
    p.add_argument("--out", required=True, help="directory for the copies, the path and its barriers")

    p = add("reinit", cmd_reinit, "control: the ticket's mask with a fresh random initialization")
    p.add_argument("--experiment", required=True)
    p.add_argument("--seed", type=int, required=True, help="seed of the fresh initialization")
    p.add_argument("--theta0", required=True, help="theta_0 (for shapes, biases and BatchNorm's initial state)")
    p.add_argument("--mask", required=True, help="the ticket's mask")
    p.add_argument("--out", required=True)

    p = add("shuffle", cmd_shuffle, "control: a random mask with the ticket's per-layer sparsity")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--mask", required=True, help="the ticket's mask")
    p.add_argument("--out", required=True)

    p = add("aggregate", cmd_aggregate, "collect every training's metrics and curves into tidy CSV tables")
    p.add_argument("--out", required=True, help="results directory")

    p = add("figures", cmd_figures, "draw the paper-style figures (PNG/PDF) from the tables")
    p.add_argument("--tables", required=True, help="directory with rounds.csv and curves.csv")
    p.add_argument("--out", required=True, help="figures directory")

    p = add("report", cmd_report, "write the Markdown report: our numbers beside the paper's")
    p.add_argument("--results", required=True, help="results directory (tables and figures/)")
    p.add_argument("--out", required=True, help="report file (.md)")

    p = add("dvc-yaml", cmd_dvc_yaml, "generate dvc.yaml from params.yaml")
    p.add_argument("--out", default="dvc.yaml")

    p = sub.add_parser("profile",
                       help="write params.yaml (every value explicit) and its dvc.yaml from profiles/NAME.yaml")
    p.add_argument("name", help="a profile: profiles/NAME.yaml, or a path to one")
    p.add_argument("--out", default="params.yaml")
    p.add_argument("--dvc-yaml", default="dvc.yaml")
    p.set_defaults(func=cmd_profile)

    p = add("check", cmd_check, "validate params.yaml and check that dvc.yaml matches it (dvc's first stage)")
    p.add_argument("--dvc-yaml", default="dvc.yaml")
    p.add_argument("--out", help="a file to write when the check passes (for dvc's `check` stage)")
    p.add_argument("--plan", help="the digest of the stages dvc.yaml was generated with: it is in the `check` "
                                  "stage's command so that dvc reruns the check when dvc.yaml changes")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status. Without `argv` (the `lth` program, `python -m
    lth.cli`) the command ends the process itself once its files are written and closed: the
    interpreter's teardown of torch's modules takes about half a second of every stage that
    trains (benchmarks/README.md), and none of it is the stage's work. Errors other than
    LthError (tracebacks) end the process the usual way."""
    args = build_parser().parse_args(argv)
    from lth import LthError

    try:
        args.func(args)
        if getattr(args, "params_read", None) is not None:
            _check_params_unchanged(args)
        status = 0
    except LthError as err:
        print(f"lth {args.command}: error: {err}", file=sys.stderr)
        status = 1
    if argv is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
