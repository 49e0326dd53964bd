import pandas as pd

from lth import report
from lth.params import from_dict


def rows(branch, percents, stops, accs, start=0):
    return [{"experiment": "tiny", "dataset": "mnist", "model": "lenet_300_100", "schedule": "iterative",
             "branch": branch, "seed": 0, "round": start + k, "percent_remaining": p, "early_stop_iteration": s,
             "early_stop_test_accuracy": a, "final_test_accuracy": a, "final_train_accuracy": 1.0}
            for k, (p, s, a) in enumerate(zip(percents, stops, accs, strict=True))]


def test_report_puts_our_numbers_beside_the_papers(tmp_path, tiny_params):
    tiny_params["experiments"]["tiny"]["controls"] = ["reinit"]
    tiny_params["experiments"]["tiny"]["prune"]["rounds"] = 3
    p = from_dict(tiny_params)
    percents = [100.0, 21.1, 13.5, 7.0]
    table = pd.DataFrame(rows("ticket", percents, [1000, 500, 400, 800], [0.980, 0.983, 0.985, 0.979])
                         + rows("reinit", percents[1:], [900, 950, 990], [0.975, 0.970, 0.960], start=1))
    table.to_csv(tmp_path / "rounds.csv", index=False)
    report.run(p, tmp_path, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert "Ours: early stopping up to 2.50x faster (at 13.5%), test accuracy up to +0.50 points (at 13.5%)" in text
    assert "- 21.1% (round 1): early stop 2.00x sooner than dense, test accuracy +0.30 points" in text
    assert "random reinit: 97.50%, early stop at 900 (1.80x the ticket's)" in text
    assert "- 3.6%: not reached (the last round here has 7.0%)" in text
    assert "just over 98% test accuracy" in text  # the paper's headline beside ours
    assert "![fig1_mnist](figures/fig1_mnist.png)" in text
