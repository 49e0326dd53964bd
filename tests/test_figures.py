"""The figures stage's own logic on hand-made tables: what they draw, their legends and titles."""

import pandas as pd
import pytest

from lth import figures, plan
from lth.params import ParamsError, from_dict


def curves_table() -> pd.DataFrame:
    """Two trainings evaluated every 100 iterations: a ticket trained 300, a reinit 200."""
    rows = []
    for branch, length in (("ticket", 300), ("reinit", 200)):
        for it in range(0, length + 1, 100):
            rows.append({"experiment": "deep", "branch": branch, "seed": 0, "round": 1,
                         "percent_remaining": 80.0, "iteration": it, "test_accuracy": it / 1000 + (branch == "reinit")})
    return pd.DataFrame(rows)


def test_accuracy_at_a_length_is_the_last_evaluation_at_or_before_it():
    at = figures.at_lengths(curves_table(), [150, 300])
    got = {(r.branch, r.length): (r.iteration, r.test_accuracy) for r in at.itertuples()}
    # 150 -> the evaluation at 100; the reinit never reached 300, so it has no point there
    assert got == {("ticket", "150"): (100, 0.1), ("reinit", "150"): (100, 1.1), ("ticket", "300"): (300, 0.3)}


def test_fig7_is_drawn_where_figures_iterations_asks(tiny_params, tmp_path):
    assert "fig7" not in {s.kind for s in plan.figure_specs(from_dict(tiny_params))}
    tiny_params["figures"]["iterations"] = [10, 30]
    specs = [s for s in plan.figure_specs(from_dict(tiny_params)) if s.kind == "fig7"]
    assert [s.name for s in specs] == ["fig7_mnist_lenet_300_100"]
    rows = []
    for round_, percent in ((0, 100.0), (1, 80.0)):
        for branch in ("ticket", "reinit") if round_ else ("ticket",):
            for it in (0, 10, 20, 30):
                rows.append({"experiment": "tiny", "branch": branch, "seed": 0, "round": round_,
                             "percent_remaining": percent, "iteration": it, "test_accuracy": 0.5 + it / 100})
    fig = figures.fig7(pd.DataFrame(rows), specs[0], [10, 30])
    labels = fig.legends[0].get_texts()
    assert {"10", "30", "winning ticket", "random reinit"} <= {t.get_text() for t in labels}
    assert "min-max" not in fig._suptitle.get_text() and "one trial" in fig._suptitle.get_text()
    fig.savefig(tmp_path / "f.png")


def test_figure_lengths_beyond_every_training_are_refused(tiny_params):
    tiny_params["figures"]["iterations"] = [10, 31]
    with pytest.raises(ParamsError, match=r"figures.iterations lists 31.*longest is 30"):
        from_dict(tiny_params)
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
