"""The `report` stage: a Markdown report, readable offline, that puts our numbers beside
the papers' headline numbers, links the figures, and lists provenance and deviations."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from lth import __version__, outputs, plan
from lth.architectures import architecture
from lth.artifacts import read, write_text
from lth.params import Experiment, Params

# Frankle & Carbin (ICLR 2019, arXiv 1803.03635).
PAPER_HEADLINES = {
    "lenet_300_100": "dense just over 98% test accuracy; at 21% remaining early stopping 38% earlier; "
                     "+0.3 points at 13.5%; back to the dense accuracy at 3.6%; random reinit below "
                     "dense already at 21.1%, where the ticket is 0.5 points more accurate and "
                     "reaches minimum validation loss 2.51x faster",
    "conv2": "early stopping up to 3.5x faster (at 8.8%), test accuracy up to +3.4 points (at 4.6%)",
    "conv4": "early stopping up to 3.5x faster (at 9.2%), test accuracy up to +3.5 points (at 11.1%)",
    "conv6": "early stopping up to 2.5x faster (at 15.1%), test accuracy up to +3.3 points (at 26.4%)",
}


@dataclass(frozen=True)
class Claim:
    """One number the paper states, at a percent of weights remaining (100: the dense network)."""

    measure: str  # a key of MEASURES
    percent: float
    paper: str  # the paper's number, as it states it


# measure -> (what it is, unit, per trial: f(dense, ticket, reinit) with rows of rounds.csv)
MEASURES = {
    "dense_accuracy": ("dense network: test accuracy at early stop", "%",
                       lambda d, t, r: 100 * d.early_stop_test_accuracy),
    "stop_sooner": ("ticket's early stop, sooner than the dense one's by", "%",
                    lambda d, t, r: 100 * (1 - t.early_stop_iteration / d.early_stop_iteration)),
    "speedup": ("ticket's early stop, faster than the dense one's by", "x",
                lambda d, t, r: d.early_stop_iteration / t.early_stop_iteration),
    "accuracy_gain": ("ticket's test accuracy at early stop minus the dense one's", " points",
                      lambda d, t, r: 100 * (t.early_stop_test_accuracy - d.early_stop_test_accuracy)),
    "reinit_gap": ("random reinit's test accuracy at early stop minus the ticket's", " points",
                   lambda d, t, r: 100 * (r.early_stop_test_accuracy - t.early_stop_test_accuracy)),
    "reinit_stop_ratio": ("random reinit's early-stop iteration / the ticket's", "x",
                          lambda d, t, r: r.early_stop_iteration / t.early_stop_iteration),
}
# Frankle & Carbin's headline numbers (arXiv 1803.03635)
PAPER_CLAIMS = {
    "lenet_300_100": [Claim("dense_accuracy", 100.0, "just over 98%"), Claim("stop_sooner", 21.1, "38%"),
                      Claim("accuracy_gain", 13.5, "+0.3 points"), Claim("accuracy_gain", 3.6, "about 0"),
                      Claim("reinit_gap", 21.1, "-0.5 points"), Claim("reinit_stop_ratio", 21.1, "2.51x")],
    "conv2": [Claim("speedup", 8.8, "3.5x"), Claim("accuracy_gain", 4.6, "+3.4 points")],
    "conv4": [Claim("speedup", 9.2, "3.5x"), Claim("accuracy_gain", 11.1, "+3.5 points")],
    "conv6": [Claim("speedup", 15.1, "2.5x"), Claim("accuracy_gain", 26.4, "+3.3 points")],
}
# (percent remaining, what the paper reports there) checked for every iterative experiment
PAPER_POINTS = {
    "lenet_300_100": [21.1, 13.5, 7.0, 3.6],
    "conv2": [8.8, 4.6], "conv4": [11.1, 9.2], "conv6": [26.4, 15.1],
}


# Zhou, Lan, Liu & Yosinski (NeurIPS 2019, arXiv 1905.01067).
ZHOU_PAPER = {
    "criterion": "large_final and magnitude_increase are the best criteria; the small_* criteria the worst",
    "kept": "the kept weights train well from any values that keep their original signs; with random "
            "signs (random_reinit, random_reshuffle, rand_signed_constant) they do not",
    "pruned": "freezing pruned weights at their initial values hurts; zeroing those that moved toward "
              "zero (variants 1 and 2) recovers and can beat the standard zero",
}
ZHOU_UNTRAINED = "86% test accuracy on MNIST (FC) with large_final_same_sign masks and signed-constant weights; " \
                 "more than 80% with the initial values"
ZHOU_LEARNED = "95.3% test accuracy on MNIST (FC)"
# Frankle, Dziugaite, Roy & Carbin (ICML 2020, arXiv 1912.05671)
STABILITY_PAPER = ("LeNet on MNIST is stable from initialization (error barrier about 0 at k = 0), dense and sparse; "
                   "ResNet-20 and VGG-16 on CIFAR-10 are not, and become stable after a few hundred to a few thousand "
                   "iterations. Stable: a barrier within about 2 points")
NORMALIZATION_TEXT = {
    "l2_per_example": "each image divided by its L2 norm, as Frankle & Carbin's released code does",
    "standardize": "per-channel mean and std of the training split",
    "unit_range": "pixels divided by 255",
}
ZHOU_TARGET = 7.0  # percent remaining at which the criteria are ranked


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def means(rounds: pd.DataFrame) -> pd.DataFrame:
    cols = ["percent_remaining", "early_stop_iteration", "early_stop_test_accuracy",
            "final_test_accuracy", "final_train_accuracy"]
    return rounds.groupby(["branch", "round"])[cols].mean().reset_index()


def markdown_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def experiment_section(e: Experiment, rounds: pd.DataFrame) -> list[str]:
    mine = means(rounds[rounds.experiment == e.name])
    ticket = mine[mine.branch == "ticket"].set_index("round")
    dense = ticket.loc[0]
    table = pd.DataFrame({
        "round": ticket.index,
        "% remaining": ticket.percent_remaining.map(lambda v: f"{v:.1f}"),
        "early stop it.": ticket.early_stop_iteration.map(lambda v: f"{v:.0f}"),
        "test acc. at early stop": ticket.early_stop_test_accuracy.map(lambda v: f"{100 * v:.2f}"),
        "speed-up vs dense": (dense.early_stop_iteration / ticket.early_stop_iteration.where(
            ticket.early_stop_iteration > 0)).map(lambda v: "" if pd.isna(v) else f"{v:.2f}x"),
    })
    for control in e.controls:
        c = mine[mine.branch == control].set_index("round")
        table[f"{control}: early stop it."] = c.early_stop_iteration.reindex(ticket.index).map(
            lambda v: "" if pd.isna(v) else f"{v:.0f}")
        table[f"{control}: test acc."] = c.early_stop_test_accuracy.reindex(ticket.index).map(
            lambda v: "" if pd.isna(v) else f"{100 * v:.2f}")
    lines = [f"## {e.name}: {e.model.name} on {e.dataset}",
             "",
             f"{e.prune.schedule} {e.prune.scope} pruning, rates {e.prune.rates}, "
             f"{e.train.iterations} iterations per round"
             + (f" (paper: {architecture(e.model.name).paper_iterations})" if architecture(e.model.name).paper_iterations
                else "") + ", "
             f"reset to {'theta_0' if e.reset.rewind_iteration == 0 else f'iteration {e.reset.rewind_iteration}'}"
             f"; controls: {', '.join(e.controls) or 'none'}. Means over {rounds.seed.nunique()} trial(s).",
             "", markdown_table(table), ""]
    if e.dataset == "fashion_mnist":
        lines += ["*Fashion-MNIST stands in for CIFAR-10 here: these are not CIFAR-10 numbers.*", ""]
    if e.prune.schedule == "iterative" and len(ticket) > 1:
        lines += claims_section(e, rounds)
        pruned = ticket.drop(index=0)
        # a network that never improved stops at iteration 0: no speed-up to speak of
        speedup = dense.early_stop_iteration / pruned.early_stop_iteration.where(pruned.early_stop_iteration > 0)
        gain = 100 * (pruned.early_stop_test_accuracy - dense.early_stop_test_accuracy)
        points = PAPER_POINTS.get(e.model.name, [])
        lines += [f"Paper ({e.model.name}): {PAPER_HEADLINES.get(e.model.name, 'no headline numbers for this model')}.",
                  "", "Ours: " + (f"early stopping up to {speedup.max():.2f}x faster (at "
                                  f"{pruned.percent_remaining[speedup.idxmax()]:.1f}%), " if speedup.notna().any()
                                  else "") + f"test accuracy up to {gain.max():+.2f} "
                  f"points (at {pruned.percent_remaining[gain.idxmax()]:.1f}%)." + (" At the paper's points:" if points
                                                                                   else ""), ""]
        for target in points:
            k = int((ticket.percent_remaining - target).abs().idxmin())
            row = ticket.loc[k]
            if abs(row.percent_remaining - target) > 0.1 * target:
                lines.append(f"- {target}%: not reached (the last round here has "
                             f"{ticket.percent_remaining.iloc[-1]:.1f}%)")
                continue
            text = (f"- {row.percent_remaining:.1f}% (round {k}): early stop "
                    f"{dense.early_stop_iteration / row.early_stop_iteration:.2f}x sooner than dense, test "
                    f"accuracy {100 * (row.early_stop_test_accuracy - dense.early_stop_test_accuracy):+.2f} "
                    f"points ({100 * row.early_stop_test_accuracy:.2f}% vs "
                    f"{100 * dense.early_stop_test_accuracy:.2f}%)")
            reinit = mine[(mine.branch == "reinit") & (mine["round"] == k)]
            if len(reinit):
                r = reinit.iloc[0]
                text += (f"; random reinit: {100 * r.early_stop_test_accuracy:.2f}%, early stop at "
                         f"{r.early_stop_iteration:.0f} ({r.early_stop_iteration / row.early_stop_iteration:.2f}x "
                         "the ticket's)")
            lines.append(text)
        lines.append("")
    return lines


def claims_section(e: Experiment, rounds: pd.DataFrame) -> list[str]:
    """Each of the paper's headline numbers beside ours: the mean and min-max over trials,
    each trial's value computed within the trial (its own dense network and ticket)."""
    mine = rounds[rounds.experiment == e.name]
    rows = []
    for claim in PAPER_CLAIMS.get(e.model.name, []):
        what, unit, measure = MEASURES[claim.measure]
        values = []
        for _, trial in mine.groupby("seed"):
            ticket = trial[trial.branch == "ticket"].set_index("round")
            k = int((ticket.percent_remaining - claim.percent).abs().idxmin())
            if abs(ticket.percent_remaining[k] - claim.percent) > 0.1 * claim.percent:
                continue  # not reached in this lineage
            reinit = trial[(trial.branch == "reinit") & (trial["round"] == k)]
            if claim.measure.startswith("reinit") and reinit.empty:
                continue
            values.append(measure(ticket.loc[0], ticket.loc[k], reinit.iloc[0] if len(reinit) else None))
        show = lambda v: f"{v:{'+' if unit == ' points' else ''}.2f}{unit}"  # noqa: E731
        ours = show(sum(values) / len(values)) if values else "not run"
        spread = f"{show(min(values))} to {show(max(values))}" if values else ""
        rows.append({"claim": what, "% remaining": f"{claim.percent:g}", "paper": claim.paper, "ours (mean)": ours,
                     "min to max over trials": spread, "trials": len(values)})
    if not rows:
        return []
    return ["The paper's headline numbers beside ours (each trial against its own dense network):", "",
            markdown_table(pd.DataFrame(rows)), ""]


def pct(v: float) -> str:
    return f"{100 * v:.2f}"


def comparison_section(rounds: pd.DataFrame, spec: plan.FigureSpec) -> list[str]:
    """Each member at the round nearest ZHOU_TARGET% remaining, best first."""
    varied = spec.varied
    data = rounds[rounds.experiment.isin(spec.members) & (rounds.branch == "ticket")]
    per = data.groupby(["experiment", "round"]).agg(
        value=(varied, "first"), percent=("percent_remaining", "mean"), acc=("early_stop_test_accuracy", "mean"),
        acc_min=("early_stop_test_accuracy", "min"), acc_max=("early_stop_test_accuracy", "max"),
        stop=("early_stop_iteration", "mean")).reset_index()
    at = per.loc[(per.percent - ZHOU_TARGET).abs().groupby(per.experiment).idxmin()]
    at = at.sort_values("acc", ascending=False)
    dense = per[per["round"] == 0].acc.mean()
    table = pd.DataFrame({
        varied: at.value, "% remaining": at.percent.map(lambda v: f"{v:.1f}"),
        "test acc. at early stop": at.acc.map(pct),
        "min-max over trials": [f"{pct(a)}-{pct(b)}" for a, b in zip(at.acc_min, at.acc_max, strict=True)],
        "early stop it.": at.stop.map(lambda v: f"{v:.0f}")})
    return [f"### {spec.name}: {plan.ZHOU_TITLES[varied]} at about {ZHOU_TARGET}% remaining", "",
            f"Paper: {ZHOU_PAPER[varied]}.", "",
            f"Ours (dense round 0: {pct(dense)}%; {data.seed.nunique()} trial(s)), best first:", "",
            markdown_table(table), ""]


def untrained_section(untrained: pd.DataFrame) -> list[str]:
    """The best percent of each criterion and action, chosen on validation accuracy."""
    lines = ["### Supermasks: untrained networks under one-shot masks", "", f"Paper: {ZHOU_UNTRAINED}.", ""]
    per = untrained.groupby(["dataset", "model", "criterion", "action", "steps"])[
        ["percent_remaining", "validation_accuracy", "test_accuracy"]].mean().reset_index()
    best = per.loc[per.groupby(["dataset", "model", "criterion", "action"]).validation_accuracy.idxmax()]
    best = best.sort_values("test_accuracy", ascending=False)
    for (dataset, model), group in best.groupby(["dataset", "model"], sort=False):
        headline = group[group.criterion == "large_final_same_sign"].set_index("action")
        ours = [f"{a}: {pct(r.test_accuracy)}% at {r.percent_remaining:.1f}%" for a, r in headline.iterrows()]
        lines += [f"Ours, {model} on {dataset}, large_final_same_sign: " + ("; ".join(ours) or "not evaluated")
                  + ". Each criterion and action at its best percent remaining (chosen on validation "
                  f"accuracy; {untrained.seed.nunique()} trial(s)):", "",
                  markdown_table(pd.DataFrame({
                      "criterion": group.criterion, "weights": group.action,
                      "% remaining": group.percent_remaining.map(lambda v: f"{v:.1f}"),
                      "validation acc.": group.validation_accuracy.map(pct),
                      "test acc.": group.test_accuracy.map(pct)})), ""]
    return lines


def learned_section(learned: pd.DataFrame) -> list[str]:
    per = learned.groupby(["experiment", "dataset", "model", "weights", "iterations"]).mean(numeric_only=True)
    table = pd.DataFrame({
        "experiment": [k[0] for k in per.index], "weights": [k[3] for k in per.index],
        "iterations": [k[4] for k in per.index],
        "test acc. (sampled masks)": per.final_sampled_test_accuracy.map(pct).to_numpy(),
        "test acc. (expected mask)": per.final_expected_test_accuracy.map(pct).to_numpy(),
        "% expected ones": per.final_percent_expected.map(lambda v: f"{v:.1f}").to_numpy(),
        "at early stop (sampled)": per.early_stop_sampled_test_accuracy.map(pct).to_numpy(),
        "early stop it.": per.early_stop_iteration.map(lambda v: f"{v:.0f}").to_numpy()})
    return ["### Learned supermasks", "", f"Paper: {ZHOU_LEARNED}.", "",
            f"Ours, at the end of training ({learned.seed.nunique()} trial(s); sampled = mean over sampled "
            "masks; early stop on the sampled masks' validation loss):", "", markdown_table(table), ""]


def zhou_section(p: Params, rounds: pd.DataFrame, untrained: pd.DataFrame, learned: pd.DataFrame) -> list[str]:
    comparisons = plan.zhou_comparisons(p)
    if not comparisons and untrained.empty and learned.empty:
        return []
    lines = ["## Deconstructing lottery tickets (Zhou et al. 2019)", ""]
    for spec in comparisons:
        lines += comparison_section(rounds, spec)
    if not untrained.empty:
        lines += untrained_section(untrained)
    if not learned.empty:
        lines += learned_section(learned)
    return lines


def stability_section(p: Params, barriers: pd.DataFrame) -> list[str]:
    """Each analysis's error barrier: mean and min-max over trials, beside the paper's finding."""
    lines = ["## Instability analysis (Frankle et al. 2020)", "", f"Paper: {STABILITY_PAPER}.", ""]
    barriers = barriers.assign(barrier=100 * barriers.error_barrier,
                               ends=50 * (barriers.test_error_a + barriers.test_error_b))
    for name, mine in barriers.groupby("experiment", sort=False):
        per = mine.groupby(["round", "rewind_iteration"]).agg(
            percent=("percent_remaining", "mean"), barrier=("barrier", "mean"), low=("barrier", "min"),
            high=("barrier", "max"), ends=("ends", "mean"), copy_iterations=("copy_iterations", "first")).reset_index()
        table = pd.DataFrame({
            "round": per["round"], "% remaining": per.percent.map(lambda v: f"{v:.1f}"), "k": per.rewind_iteration,
            "copies train": per.copy_iterations, "error barrier (points)": per.barrier.map(lambda v: f"{v:.2f}"),
            "min-max over trials": [f"{a:.2f}-{b:.2f}" for a, b in zip(per.low, per.high, strict=True)],
            "copies' test error (%)": per.ends.map(lambda v: f"{v:.2f}"),
            "stable": per.barrier.map(lambda v: "yes" if v <= plan.STABLE_POINTS else "no")})
        e = p.experiments[name]
        lines += [f"Ours, {name} ({e.model.name} on {e.dataset}, {e.train.iterations} iterations per round; "
                  f"{mine.seed.nunique()} trial(s); each copy trains from k to the end, {e.stability.points} points "
                  "on the path):", "", markdown_table(table), ""]
    return lines


def run(p: Params, results: Path, out: Path) -> None:
    rounds = read(results / outputs.ROUNDS, "aggregate", pd.read_csv)
    untrained = read(results / outputs.UNTRAINED, "aggregate", pd.read_csv)
    learned = read(results / outputs.LEARNED, "aggregate", pd.read_csv)
    lines = ["# Lottery ticket report", "",
             "Produced by the pipeline's `report` stage from `results/rounds.csv`. Tables: "
             + ", ".join(f"[{t}]({t})" for t in plan.tables(p)) + ".", ""]
    for e in p.experiments.values():
        lines += experiment_section(e, rounds)
    lines += zhou_section(p, rounds, untrained, learned)
    if outputs.STABILITY_BARRIERS in plan.tables(p):
        lines += stability_section(p, read(results / outputs.STABILITY_BARRIERS, "aggregate", pd.read_csv))
    lines += ["## Figures", ""]
    for name in (f.name for f in plan.figure_specs(p)):
        lines += [f"### {name}", "", f"![{name}](figures/{name}.png)" if "png" in p.figures.formats
                  else f"[{name}](figures/{name}.{p.figures.formats[0]})", ""]
    lines += ["## Deviations from the papers", "",
              "- Iterations per round as listed above where they differ from the paper's.",
              f"- Input normalisation (unspecified in the paper): data.normalize = {p.data.normalize} "
              f"({NORMALIZATION_TEXT[p.data.normalize]}).",
              "- The training loss and accuracy in the curves are the mean over the minibatches since the last "
              "evaluation (each scored before its update); the final training accuracy is a full pass.",
              "- Ties in magnitude are broken by position; each layer loses round(rate x remaining) weights.",
              "", "## Provenance", "",
              f"- this report: lth {__version__}, torch {package_version('torch')}, numpy "
              f"{package_version('numpy')}; seeds {p.seeds}; runtime.device {p.runtime.device}; "
              f"threads {p.runtime.threads}",
              "- the trainings (from each run's metrics.json; code = git commit or package version):", ""]
    made = [c for c in rounds.columns if c.startswith("made_by_")]
    if made:
        counts = rounds.groupby(made, dropna=False).size().reset_index(name="trainings")
        counts.columns = [c.removeprefix("made_by_") for c in counts.columns]
        lines += [markdown_table(counts), ""]
    write_text(out, "\n".join(lines))
