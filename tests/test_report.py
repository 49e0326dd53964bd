import copy

import pandas as pd

from lth import report
from lth.params import from_dict


def rows(branch, percents, stops, accs, start=0, experiment="tiny", criterion="large_final", kept="original",
         pruned="zero"):
    return [{"experiment": experiment, "dataset": "mnist", "model": "lenet_300_100", "schedule": "iterative",
             "criterion": criterion, "kept": kept, "pruned": pruned, "branch": branch, "seed": 0, "round": start + k, "percent_remaining": p, "early_stop_iteration": s,
             "early_stop_test_accuracy": a, "final_test_accuracy": a, "final_train_accuracy": 1.0}
            for k, (p, s, a) in enumerate(zip(percents, stops, accs, strict=True))]


def write_empty_supermask_tables(path):
    for name in ("untrained.csv", "supermask.csv"):
        (path / name).write_text("experiment,dataset,model\n")


def test_report_puts_our_numbers_beside_the_papers(tmp_path, tiny_params):
    tiny_params["experiments"]["tiny"]["controls"] = ["reinit"]
    tiny_params["experiments"]["tiny"]["prune"]["rounds"] = 3
    p = from_dict(tiny_params)
    percents = [100.0, 21.1, 13.5, 7.0]
    table = pd.DataFrame(rows("ticket", percents, [1000, 500, 400, 800], [0.980, 0.983, 0.985, 0.979])
                         + rows("reinit", percents[1:], [900, 950, 990], [0.975, 0.970, 0.960], start=1))
    table.to_csv(tmp_path / "rounds.csv", index=False)
    write_empty_supermask_tables(tmp_path)
    report.run(p, tmp_path, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert "Ours: early stopping up to 2.50x faster (at 13.5%), test accuracy up to +0.50 points (at 13.5%)" in text
    assert "- 21.1% (round 1): early stop 2.00x sooner than dense, test accuracy +0.30 points" in text
    assert "random reinit: 97.50%, early stop at 900 (1.80x the ticket's)" in text
    assert "- 3.6%: not reached (the last round here has 7.0%)" in text
    assert "just over 98% test accuracy" in text  # the paper's headline beside ours
    assert "![fig1_mnist](figures/fig1_mnist.png)" in text
    assert "Deconstructing" not in text  # no Zhou section without Zhou experiments


def test_report_ranks_zhou_criteria_and_supermasks(tmp_path, tiny_params):
    base = tiny_params["experiments"]["tiny"]
    base["prune"]["rounds"] = 2
    small = copy.deepcopy(base)
    small["prune"]["criterion"] = "small_final"
    base["supermask"] = {"untrained": {"criteria": ["large_final_same_sign", "random"],
                                       "actions": ["original", "signed_constant"],
                                       "rates": {"fc": 0.2, "output": 0.1}, "steps": 1}}
    tiny_params["experiments"]["small"] = small
    p = from_dict(tiny_params)
    percents = [100.0, 20.0, 7.2]
    pd.DataFrame(rows("ticket", percents, [900, 500, 600], [0.97, 0.98, 0.979])
                 + rows("ticket", percents, [900, 800, 900], [0.97, 0.95, 0.91], experiment="small",
                        criterion="small_final")).to_csv(tmp_path / "rounds.csv", index=False)
    untrained = pd.DataFrame([
        {"experiment": "tiny", "dataset": "mnist", "model": "lenet_300_100", "seed": 0, "criterion": c,
         "action": a, "steps": k, "percent_remaining": pr, "validation_loss": 1.0, "validation_accuracy": va,
         "test_loss": 1.0, "test_accuracy": ta}
        for c, a, k, pr, va, ta in [
            ("large_final_same_sign", "signed_constant", 0, 100.0, 0.10, 0.11),
            ("large_final_same_sign", "signed_constant", 1, 20.0, 0.80, 0.79),
            ("large_final_same_sign", "original", 0, 100.0, 0.10, 0.09),
            ("large_final_same_sign", "original", 1, 20.0, 0.60, 0.62),
            ("random", "original", 0, 100.0, 0.10, 0.50),  # best test, but not best validation
            ("random", "original", 1, 20.0, 0.12, 0.10)]])
    untrained.to_csv(tmp_path / "untrained.csv", index=False)
    (tmp_path / "supermask.csv").write_text("experiment,dataset,model\n")
    report.run(p, tmp_path, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert "### zhou_criterion_mnist_lenet_300_100: mask criteria at about 7.0% remaining" in text
    ranking = text.split("mask criteria at about 7.0% remaining")[1]
    assert ranking.index("| large_final | 7.2 | 97.90 |") < ranking.index("| small_final | 7.2 | 91.00 |")
    assert "large_final_same_sign: signed_constant: 79.00% at 20.0%; original: 62.00% at 20.0%" in text
    assert "| random | original | 20.0 | 12.00 | 10.00 |" in text  # chosen on validation, not test
    assert "Paper: 86% test accuracy on MNIST (FC)" in text


def test_report_gives_the_papers_claims_with_the_trials_spread(tmp_path, tiny_params):
    tiny_params["experiments"]["tiny"]["controls"] = ["reinit"]
    tiny_params["experiments"]["tiny"]["prune"]["rounds"] = 3
    tiny_params["seeds"] = [0, 1]
    p = from_dict(tiny_params)
    percents = [100.0, 21.1, 13.5, 7.0]
    trials = []
    for seed, (stops, accs) in enumerate((([1000, 500, 400, 800], [0.980, 0.983, 0.985, 0.979]),
                                          ([2000, 1500, 400, 800], [0.970, 0.983, 0.975, 0.979]))):
        for row in rows("ticket", percents, stops, accs) + rows("reinit", percents[1:], [900, 950, 990],
                                                                [0.975, 0.970, 0.960], start=1):
            trials.append({**row, "seed": seed})
    pd.DataFrame(trials).to_csv(tmp_path / "rounds.csv", index=False)
    write_empty_supermask_tables(tmp_path)
    report.run(p, tmp_path, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    # each trial against its own dense network: 97.5% mean dense, 50% and 25% sooner at 21.1%
    assert "| dense network: test accuracy at early stop | 100 | just over 98% | 97.50% | 97.00% to 98.00% | 2 |" in text
    assert "| ticket's early stop, sooner than the dense one's by | 21.1 | 38% | 37.50% | 25.00% to 50.00% | 2 |" in text
    assert "| ticket's test accuracy at early stop minus the dense one's | 13.5 | +0.3 points | +0.50 points | " \
           "+0.50 points to +0.50 points | 2 |" in text
    assert "| 3.6 | about 0 | not run |  | 0 |" in text  # the lineage stops at 7.0%
    assert "| random reinit's test accuracy at early stop minus the ticket's | 21.1 | -0.5 points | -0.80 points |" in text
    assert "data.normalize = standardize (per-channel mean and std of the training split)" in text


def test_the_stability_section_gives_each_barrier_over_trials_beside_the_paper(tiny_params):
    tiny_params["experiments"]["tiny"]["stability"] = {"rounds": [0, 2], "rewind_iterations": [0, 10], "points": 30}
    barriers = pd.DataFrame([
        {"experiment": "tiny", "seed": s, "round": r, "percent_remaining": p, "rewind_iteration": k,
         "error_barrier": b, "test_error_a": 0.02, "test_error_b": 0.03, "copy_iterations": 30 - k}
        for s, r, p, k, b in [(0, 0, 100.0, 0, 0.001), (1, 0, 100.0, 0, 0.003), (0, 2, 64.1, 0, 0.05),
                              (1, 2, 64.1, 0, 0.03), (0, 2, 64.1, 10, 0.0), (1, 2, 64.1, 10, 0.002)]])
    text = "\n".join(report.stability_section(from_dict(tiny_params), barriers))
    assert "LeNet on MNIST is stable from initialization" in text
    assert "| 0 | 100.0 | 0 | 30 | 0.20 | 0.10-0.30 | 2.50 | yes |" in text
    assert "| 2 | 64.1 | 0 | 30 | 4.00 | 3.00-5.00 | 2.50 | no |" in text
