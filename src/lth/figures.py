"""The `figures` stage: paper-style figures from the tidy tables (seaborn).

fig1_early_stop: Frankle & Carbin Fig. 1 style, early-stop iteration (left) and test
accuracy at early stop (right) vs percent of weights remaining, log x axis decreasing.
fig3_test_accuracy: Fig. 3 style, test accuracy vs training iteration, one curve per
percent remaining. Lines are means over seeds; bands span min to max, as in the paper.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from lth.artifacts import atomic_path, read  # noqa: E402
from lth.params import FigureParams  # noqa: E402

MIN_MAX = ("pi", 100)  # a 100% percentile interval is the min-max band


def percent_label(p: float) -> str:
    """As the paper labels them: 100, 51.3, 7.0, 3.6, 0.45."""
    if p >= 99.95:
        return "100"
    return f"{p:.1f}" if p >= 1 else f"{p:.2g}"


def percent_axis(ax, percents) -> None:
    """Log x axis, decreasing left to right, ticked at the rounds' percents."""
    ax.set_xscale("log")
    ticks = sorted(set(round(p, 1) for p in percents), reverse=True)
    if len(ticks) > 8:  # keep every other tick readable
        ticks = ticks[::2]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([percent_label(t) for t in ticks])
    ax.set_xlim(max(percents) * 1.15, min(percents) / 1.15)
    ax.set_xlabel("Percent of weights remaining")


def fig1_early_stop(rounds: pd.DataFrame) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    percents = rounds["percent_remaining"].to_numpy()
    for ax, column, label in ((axes[0], "early_stop_iteration", "Early-stop iteration (val. loss)"),
                              (axes[1], "early_stop_test_accuracy", "Test accuracy at early stop")):
        sns.lineplot(data=rounds, x="percent_remaining", y=column, errorbar=MIN_MAX, marker="o",
                     label="winning ticket (iterative pruning)", ax=ax)
        percent_axis(ax, percents)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[1].legend(loc="lower left")
    axes[0].get_legend().remove()
    n = rounds["seed"].nunique()
    fig.suptitle(f"{rounds['experiment'].iloc[0]}: early stopping and accuracy vs sparsity "
                 f"(mean of {n} trial{'s' * (n > 1)}, min-max band)")
    fig.tight_layout()
    return fig


def nearest_rounds(rounds: pd.DataFrame, wanted: list[float]) -> list[int]:
    by_round = rounds.groupby("round")["percent_remaining"].first()
    chosen = []
    for w in wanted:
        k = int((by_round - w).abs().idxmin())
        if k not in chosen:
            chosen.append(k)
    return chosen


def fig3_test_accuracy(rounds: pd.DataFrame, curves: pd.DataFrame, wanted: list[float]) -> plt.Figure:
    chosen = nearest_rounds(rounds, wanted)
    data = curves[curves["round"].isin(chosen)].copy()
    data["Pm"] = data["percent_remaining"].map(percent_label)
    order = [percent_label(p) for p in
             rounds.groupby("round")["percent_remaining"].first().loc[chosen]]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sns.lineplot(data=data[data["iteration"] > 0], x="iteration", y="test_accuracy", hue="Pm",
                 hue_order=order, errorbar=MIN_MAX, ax=ax)
    ax.set_xlabel("Training iterations")
    ax.set_ylabel("Test accuracy")
    ax.legend(title="Percent remaining", loc="lower right")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{rounds['experiment'].iloc[0]}: test accuracy during training (winning tickets)")
    fig.tight_layout()
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


def run(params: FigureParams, tables: Path, out_dir: Path) -> list[Path]:
    sns.set_theme(style="ticks", context="notebook")
    rounds = read(tables / "rounds.csv", "aggregate", pd.read_csv)
    curves = read(tables / "curves.csv", "aggregate", pd.read_csv)
    out_dir.mkdir(parents=True, exist_ok=True)
    return (save(fig1_early_stop(rounds), out_dir, "fig1_early_stop", params)
            + save(fig3_test_accuracy(rounds, curves, params.curve_percents), out_dir,
                   "fig3_test_accuracy", params))
