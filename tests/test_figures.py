"""The figures stage's own logic on hand-made tables (the pipeline tests draw real ones)."""

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
    assert "min-max" not in fig._suptitle.get_text()  # one trial: no band claimed
    fig.savefig(tmp_path / "f.png")


def test_figure_lengths_beyond_every_training_are_refused(tiny_params):
    tiny_params["figures"]["iterations"] = [10, 31]
    with pytest.raises(ParamsError, match=r"figures.iterations lists 31.*longest is 30"):
        from_dict(tiny_params)
