"""The `figures` stage: paper-style figures from the tidy tables (seaborn).

Lines are means over trials (seeds); bands span min to max, as in Frankle & Carbin.
Percent-of-weights-remaining axes are logarithmic and decrease left to right.

- fig1_<dataset>: Fig. 1 style: early-stop iteration and test accuracy at early stop vs
  percent remaining; winning tickets solid, random reinitialization dashed.
- fig3_<experiment>: Fig. 3 style: test accuracy vs training iteration, one curve per
  percent remaining; one panel for the tickets and one per control.
- fig4_<dataset>_<model>: Fig. 4 style: early-stop iteration, accuracy at early stop, and
  test and train accuracy at the end of training; iterative, one-shot and controls.
- fig5_<dataset>: Fig. 5 style: Fig. 4's quantities for Conv-2/4/6, reinit dashed.
- fig7_<dataset>_<model>: Figs. 7 and 8 style (VGG-19, Resnet-18): test accuracy after each
  training length in figures.iterations vs percent remaining, one panel per experiment
  (their learning-rate settings), one colour per length, random reinit dashed.
  (Figures 1, 3, 4, 5 and 7 show Frankle & Carbin's algorithm: large_final, original, zero.)
- zhou_{criterion,kept,pruned}_<dataset>_<model>: Zhou et al. style: test accuracy at
  early stop and early-stop iteration vs percent remaining, one line per mask criterion /
  mask-1 action (random signs dashed) / mask-0 action, the other two parts as Frankle's.
- zhou_untrained_<dataset>_<model>: supermasks: the untrained network's test accuracy
  under each criterion's one-shot mask, a panel per mask-1 action (init values, signed constant).
- stability_path_<experiment>: Frankle et al. 2020 style: test error along the linear path
  between the two copies, a panel per round, one line per iteration k at which they parted.
- stability_barrier_<experiment>: the error barrier vs k, one line per round (percent
  remaining), the paper's 2-point stability line dotted; beside it the copies' test error.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from lth import plan  # noqa: E402
from lth.artifacts import atomic_path, read  # noqa: E402
from lth.params import FigureParams, Params  # noqa: E402

# every figure's legend, below its panels; handles long enough that a dashed line reads as dashed
# beside its marker (at 2 em the marker hides a (5, 3) gap)
LEGEND = {"loc": "lower center", "frameon": False, "fontsize": "small", "handlelength": 4}
MIN_MAX = ("pi", 100)  # a 100% percentile interval is the min-max band
DASHES = {"ticket": "", "reinit": (5, 3), "random": (1, 2)}
QUANTITIES = {
    "early_stop_iteration": "Early-stop iteration (val. loss)",
    "early_stop_test_accuracy": "Test accuracy at early stop",
    "final_test_accuracy": "Test accuracy at end of training",
    "final_train_accuracy": "Train accuracy at end of training",
}
LABELS = plan.BRANCH_LABELS
percent_label = plan.percent_label


def percent_axis(ax, percents, tick_percents=None) -> None:
    """Log x axis, decreasing left to right, ticked at one lineage's percents."""
    ax.set_xscale("log")
    ticks = sorted({round(p, 1) for p in (percents if tick_percents is None else tick_percents)}, reverse=True)
    step = max(1, len(ticks) // 7)  # keep the labels readable
    ticks = ticks[::step]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([percent_label(t) for t in ticks])
    ax.set_xlim(max(percents) * 1.15, min(percents) / 1.15)
    ax.set_xlabel("Percent of weights remaining")


def line_label(row) -> str:
    label = f"{row['experiment']}: {LABELS[row['branch']]}"
    return label + (" (one-shot)" if row["schedule"] == "one_shot" and row["branch"] == "ticket" else "")


def trials(n: int) -> str:
    """What the lines are: one trial, or a mean with a band (only where there is a band)."""
    return "one trial" if n == 1 else f"mean of {n} trials, min-max band"


def panels(data: pd.DataFrame, quantities: list[str], hue: str, title: str) -> plt.Figure:
    """A panel per quantity against percent remaining: a colour per `hue` value, the branch's
    dashes (ticket solid, reinit dashed, random dotted), and one legend entry per line drawn."""
    hues = list(dict.fromkeys(data[hue]))
    colors = dict(zip(hues, sns.color_palette(n_colors=len(hues)), strict=True))
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.6 * len(quantities), 4), squeeze=False)
    for ax, q in zip(axes[0], quantities, strict=True):
        sns.lineplot(data=data, x="percent_remaining", y=q, hue=hue, hue_order=hues, palette=colors, style="branch",
                     dashes=DASHES, errorbar=MIN_MAX, marker="o", markersize=4, ax=ax, legend=False)
        first = data[data.experiment == data.experiment.iloc[0]]
        percent_axis(ax, data["percent_remaining"].to_numpy(), first["percent_remaining"].to_numpy())
        ax.set_ylabel(QUANTITIES[q])
        ax.grid(True, alpha=0.3)
    lines = list(dict.fromkeys(zip(data[hue], data["branch"], strict=True)))
    handles = [Line2D([], [], color=colors[h], marker="o", markersize=4,
                      linestyle="-" if not DASHES[b] else (0, DASHES[b]),
                      label=h if hue == "line" else LABELS[b] if len(hues) == 1 else f"{h}: {LABELS[b]}")
               for h, b in lines]
    fig.legend(handles=handles, ncol=min(len(handles), 6), **LEGEND)
    fig.suptitle(f"{title}\n({trials(data['seed'].nunique())})", fontsize="medium")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def tickets_and_reinit(rounds: pd.DataFrame, spec: plan.FigureSpec) -> pd.DataFrame:
    return rounds[rounds.experiment.isin(spec.members) & rounds.branch.isin(["ticket", "reinit"])]


def versus_reinit(data: pd.DataFrame) -> str:
    """The title's claim, only where the reinit control is drawn."""
    return " vs random reinit" if (data.branch == "reinit").any() else ""


def fig1(rounds: pd.DataFrame, spec: plan.FigureSpec) -> plt.Figure:
    data = tickets_and_reinit(rounds, spec)
    return panels(data, ["early_stop_iteration", "early_stop_test_accuracy"], "experiment",
                  f"{spec.dataset}: winning tickets{versus_reinit(data)}")


def fig4(rounds: pd.DataFrame, spec: plan.FigureSpec) -> plt.Figure:
    data = rounds[rounds.experiment.isin(spec.members)].copy()
    data["line"] = data.apply(line_label, axis=1)
    return panels(data, list(QUANTITIES), "line", f"{spec.model} on {spec.dataset}")


def fig5(rounds: pd.DataFrame, spec: plan.FigureSpec) -> plt.Figure:
    data = tickets_and_reinit(rounds, spec)
    return panels(data, list(QUANTITIES), "model",
                  f"Conv-2/4/6 on {spec.dataset}: winning tickets{versus_reinit(data)}")


def at_lengths(curves: pd.DataFrame, lengths: list[int]) -> pd.DataFrame:
    """Each training's last evaluation at or before each length, labelled by the length
    (trainings shorter than a length are left out of its line)."""
    keys = ["experiment", "branch", "seed", "round"]
    rows = []
    for length in lengths:
        reached = curves.groupby(keys)["iteration"].transform("max") >= length
        upto = curves[reached & (curves.iteration <= length)]
        last = upto.loc[upto.groupby(keys)["iteration"].idxmax()]
        rows.append(last.assign(length=f"{length / 1000:g}K" if length >= 1000 else str(length)))
    return pd.concat(rows, ignore_index=True)


def fig7(curves: pd.DataFrame, spec: plan.FigureSpec, lengths: list[int]) -> plt.Figure:
    data = at_lengths(curves[curves.experiment.isin(spec.members) & curves.branch.isin(["ticket", "reinit"])],
                      sorted(lengths))
    order = list(dict.fromkeys(data.sort_values("iteration")["length"]))
    fig, axes = plt.subplots(1, len(spec.members), figsize=(5.2 * len(spec.members), 4.3), squeeze=False,
                             sharey=True)
    for ax, experiment in zip(axes[0], spec.members, strict=True):
        mine = data[data.experiment == experiment]
        sns.lineplot(data=mine, x="percent_remaining", y="test_accuracy", hue="length", hue_order=order,
                     style="branch", dashes=DASHES, errorbar=MIN_MAX, marker="o", markersize=4, ax=ax)
        percent_axis(ax, mine["percent_remaining"].to_numpy())
        ax.set_ylabel("Test accuracy")
        ax.set_title(experiment)
        ax.grid(True, alpha=0.3)
        ax.get_legend().remove()
    handles, labels = axes[0][0].get_legend_handles_labels()
    labels = [LABELS.get(label, label) for label in labels]
    fig.legend(handles, labels, ncol=min(len(labels), 6), **LEGEND)
    n = data["seed"].nunique()
    fig.suptitle(f"{spec.model} on {spec.dataset}: test accuracy after training for each length"
                 + f"\n({trials(n)})", fontsize="medium")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def fig3(rounds: pd.DataFrame, curves: pd.DataFrame, spec: plan.FigureSpec, wanted: list[float]) -> plt.Figure:
    (experiment,) = spec.members
    mine = curves[(curves.experiment == experiment) & (curves.iteration > 0)]
    by_round = rounds[rounds.experiment == experiment].groupby("round")["percent_remaining"].first()
    chosen = plan.nearest_rounds(by_round.to_dict(), wanted)
    order = [percent_label(by_round[k]) for k in chosen]
    branches = list(dict.fromkeys(mine["branch"]))
    fig, axes = plt.subplots(1, len(branches), figsize=(6 * len(branches), 4.5), squeeze=False, sharey=True)
    for ax, branch in zip(axes[0], branches, strict=True):
        # controls start at round 1; their panel shows the dense round 0 for reference
        data = mine[mine["round"].isin(chosen) & ((mine.branch == branch) | (mine["round"] == 0))].copy()
        data["Pm"] = data["percent_remaining"].map(percent_label)
        sns.lineplot(data=data, x="iteration", y="test_accuracy", hue="Pm", hue_order=order,
                     errorbar=MIN_MAX, ax=ax)
        ax.set_xlabel("Training iterations")
        ax.set_ylabel("Test accuracy")
        ax.set_title(LABELS[branch])
        ax.legend(title="Percent remaining", loc="lower right")
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{experiment}: test accuracy during training")
    fig.tight_layout()
    return fig


# Zhou et al.'s mask-1 actions with the original signs (solid) and with random signs (dashed)
RANDOM_SIGNS = {"random_reinit", "random_reshuffle", "rand_signed_constant"}


def palette(n: int) -> list:
    """Distinct colours for up to 20 lines (seaborn's default cycles after 10)."""
    return sns.color_palette("tab10" if n <= 10 else "tab20", n)


def zhou_comparison(rounds: pd.DataFrame, spec: plan.FigureSpec) -> plt.Figure:
    """Zhou et al. Fig. 2/3 style: test accuracy at early stop (and the early-stop
    iteration) vs percent remaining, one line per value of the varied part."""
    varied = spec.varied
    data = rounds[rounds.experiment.isin(spec.members) & (rounds.branch == "ticket")].copy()
    order = list(dict.fromkeys(data[varied]))
    dashes = {v: (5, 3) if varied == "kept" and v in RANDOM_SIGNS else "" for v in order}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, q in zip(axes, ["early_stop_test_accuracy", "early_stop_iteration"], strict=True):
        sns.lineplot(data=data, x="percent_remaining", y=q, hue=varied, hue_order=order,
                     palette=palette(len(order)), style=varied,
                     style_order=order, dashes=dashes, errorbar=MIN_MAX, marker="o", markersize=4, ax=ax)
        percent_axis(ax, data["percent_remaining"].to_numpy())
        ax.set_ylabel(QUANTITIES[q])
        ax.grid(True, alpha=0.3)
        ax.get_legend().remove()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=min(len(labels), 5), **LEGEND)
    fig.suptitle(f"{spec.model} on {spec.dataset}: {plan.ZHOU_TITLES[varied]}"
                 + (", random signs dashed" if varied == "kept" else "")
                 + f"\n({trials(data['seed'].nunique())})", fontsize="medium")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def zhou_untrained(untrained: pd.DataFrame, spec: plan.FigureSpec) -> plt.Figure:
    """Zhou et al. Fig. 5 style: test accuracy of the untrained network under each
    criterion's mask vs percent remaining; one panel per mask-1 action."""
    data = untrained[untrained.experiment.isin(spec.members)]
    actions = list(dict.fromkeys(data.action))
    criteria = list(dict.fromkeys(data.criterion))
    fig, axes = plt.subplots(1, len(actions), figsize=(6 * len(actions), 4.6), squeeze=False, sharey=True)
    for ax, action in zip(axes[0], actions, strict=True):
        sns.lineplot(data=data[data.action == action], x="percent_remaining", y="test_accuracy", hue="criterion",
                     hue_order=criteria, palette=palette(len(criteria)), errorbar=MIN_MAX, marker="o",
                     markersize=3, ax=ax)
        percent_axis(ax, data["percent_remaining"].to_numpy())
        ax.set_ylabel("Test accuracy of the untrained network")
        ax.set_title({"original": "initial values"}.get(action, action))
        ax.grid(True, alpha=0.3)
        ax.get_legend().remove()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=min(len(labels), 5), **LEGEND)
    fig.suptitle(f"{spec.model} on {spec.dataset}: supermasks (one-shot masks on theta_0, no training)",
                 fontsize="medium")
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


def round_label(r: int, percent: float) -> str:
    return f"round {r}: {percent_label(percent)}%"


def stability_path(paths: pd.DataFrame, spec: plan.FigureSpec) -> plt.Figure:
    """Test error along the path, a panel per round, one line per k."""
    data = paths[paths.experiment.isin(spec.members)].assign(
        error=lambda d: 100 * d.test_error, k=lambda d: d.rewind_iteration.map("k = {}".format))
    rounds = data.groupby("round")["percent_remaining"].first()
    order = [f"k = {k}" for k in sorted(data.rewind_iteration.unique())]
    fig, axes = plt.subplots(1, len(rounds), figsize=(4.8 * len(rounds), 4.2), squeeze=False, sharey=True)
    for ax, (r, percent) in zip(axes[0], rounds.items(), strict=True):
        sns.lineplot(data=data[data["round"] == r], x="alpha", y="error", hue="k", hue_order=order,
                     palette=palette(len(order)), errorbar=MIN_MAX, ax=ax)
        ax.set_title(round_label(r, percent))
        ax.set_xlabel("Interpolation (0: copy A, 1: copy B)")
        ax.set_ylabel("Test error (%)")
        ax.grid(True, alpha=0.3)
        ax.get_legend().remove()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, [f"copies part at {label}" for label in labels], ncol=len(labels), **LEGEND)
    n = data["seed"].nunique()
    fig.suptitle(f"{spec.members[0]}: test error on the line between two copies trained from iteration k\n"
                 f"({trials(n)})", fontsize="medium")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def stability_barrier(barriers: pd.DataFrame, spec: plan.FigureSpec) -> plt.Figure:
    """The error barrier, and the copies' test error, vs k: one line per round."""
    data = barriers[barriers.experiment.isin(spec.members)].assign(
        barrier=lambda d: 100 * d.error_barrier, error=lambda d: 50 * (d.test_error_a + d.test_error_b),
        line=lambda d: [round_label(r, p) for r, p in zip(d["round"], d.percent_remaining, strict=True)])
    order = list(dict.fromkeys(data.sort_values("round").line))
    ks = sorted(data.rewind_iteration.unique())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, q, label in zip(axes, ["barrier", "error"], ["Error barrier (points)", "Test error of the copies (%)"],
                            strict=True):
        sns.lineplot(data=data, x="rewind_iteration", y=q, hue="line", hue_order=order, palette=palette(len(order)),
                     errorbar=MIN_MAX, marker="o", markersize=4, ax=ax)
        if ks[-1] > 0:  # k = 0 on the axis: linear up to the smallest positive k, logarithmic beyond
            linear = min(k for k in ks if k > 0)
            ax.set_xscale("symlog", linthresh=linear)
            ax.set_xlim(-0.15 * linear, 1.3 * ks[-1])
        ax.xaxis.set_major_locator(FixedLocator(ks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(k) for k in ks])
        ax.set_xlabel("Iteration k at which the copies part")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.get_legend().remove()
    axes[0].axhline(plan.STABLE_POINTS, color="grey", linestyle=":", linewidth=1)
    axes[0].set_ylim(top=max(axes[0].get_ylim()[1], 1.15 * plan.STABLE_POINTS))
    axes[0].annotate("stable below this (the paper)", (0.02, plan.STABLE_POINTS), xycoords=("axes fraction", "data"),
                     textcoords="offset points", xytext=(0, -11), fontsize="small", color="grey")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=min(len(labels), 5), **LEGEND)
    n = data["seed"].nunique()
    fig.suptitle(f"{spec.members[0]}: instability vs the iteration the copies part at, dense and sparse\n"
                 f"({trials(n)})", fontsize="medium")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def save(fig: plt.Figure, out_dir: Path, name: str, params: FigureParams) -> list[Path]:
    written = []
    for fmt in params.formats:
        path = out_dir / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            # No timestamps in the files, so reruns give identical bytes.
            meta = {"CreationDate": None} if fmt == "pdf" else {"Date": None} if fmt == "svg" else {}
            fig.savefig(tmp, format=fmt, dpi=params.dpi, metadata=meta)
        written.append(path)
    plt.close(fig)
    return written


def draw(spec: plan.FigureSpec, p: Params, tables: dict[str, pd.DataFrame]) -> plt.Figure:
    rounds = tables["rounds"]
    if spec.kind == "fig1":
        return fig1(rounds, spec)
    if spec.kind == "fig3":
        return fig3(rounds, tables["curves"], spec, p.figures.curve_percents)
    if spec.kind == "fig4":
        return fig4(rounds, spec)
    if spec.kind == "fig5":
        return fig5(rounds, spec)
    if spec.kind == "fig7":
        return fig7(tables["curves"], spec, p.figures.iterations)
    if spec.kind == "zhou_comparison":
        return zhou_comparison(rounds, spec)
    if spec.kind == "zhou_untrained":
        return zhou_untrained(tables["untrained"], spec)
    if spec.kind == "stability_path":
        return stability_path(tables["stability_path"], spec)
    if spec.kind == "stability_barrier":
        return stability_barrier(tables["stability"], spec)
    raise ValueError(f"unknown figure kind {spec.kind!r}")


def run(p: Params, tables: Path, out_dir: Path) -> list[Path]:
    sns.set_theme(style="ticks", context="notebook")
    frames = {Path(t).stem: read(tables / t, "aggregate", pd.read_csv) for t in plan.tables(p)}
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in plan.figure_specs(p):
        written += save(draw(spec, p, frames), out_dir, spec.name, p.figures)
    return written
