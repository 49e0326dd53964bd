"""The figures say only what they draw, and their legends read as the paper's."""

import pandas as pd
import pytest

from lth import figures, plan
from lth.params import from_dict


def rounds_table(seeds, branches, rounds=3) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for k in range(rounds):
            for branch in (["ticket"] if k == 0 else branches):
                rows.append({"experiment": "tiny", "dataset": "mnist", "model": "lenet_300_100",
                             "schedule": "iterative", "branch": branch, "seed": seed, "round": k,
                             "percent_remaining": 100 * 0.8 ** k, "early_stop_iteration": 100 * (k + 1 + seed),
                             "early_stop_test_accuracy": 0.9 + k / 100 - (branch == "reinit") / 50,
                             "final_test_accuracy": 0.9, "final_train_accuracy": 1.0})
    return pd.DataFrame(rows)


def texts(fig):
    legend = fig.legends[0]
    # the dash pattern of each entry: None for a solid line
    return (fig._suptitle.get_text(), [t.get_text() for t in legend.get_texts()],
            [h._unscaled_dash_pattern[1] for h in legend.legend_handles])


@pytest.mark.parametrize("seeds, branches, title, labels, styles", [
    ([0], ["ticket"], "mnist: winning tickets\n(one trial)", ["winning ticket"], [None]),
    ([0, 1], ["ticket", "reinit"], "mnist: winning tickets vs random reinit\n(mean of 2 trials, min-max band)",
     ["winning ticket", "random reinit"], [None, figures.DASHES["reinit"]]),
])
def test_fig1_states_what_it_draws_with_one_legend_entry_per_line(tiny_params, seeds, branches, title, labels,
                                                                   styles):
    spec = plan.FigureSpec("fig1", "mnist", None, ("tiny",))
    fig = figures.draw(spec, from_dict(tiny_params), {"rounds": rounds_table(seeds, branches)})
    assert texts(fig) == (title, labels, styles)
    for ax in fig.axes:
        assert ax.get_legend() is None  # one legend for the figure, not one per panel


def test_fig4_names_each_lineage_and_control_once(tiny_params):
    spec = plan.FigureSpec("fig4", "mnist", "lenet_300_100", ("tiny",))
    fig = figures.draw(spec, from_dict(tiny_params), {"rounds": rounds_table([0], ["ticket", "reinit", "random"])})
    title, labels, styles = texts(fig)
    assert title == "lenet_300_100 on mnist\n(one trial)"
    assert labels == ["tiny: winning ticket", "tiny: random reinit", "tiny: random pruning"]
    assert styles == [None, figures.DASHES["reinit"], figures.DASHES["random"]]
