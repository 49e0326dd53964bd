"""The benchmark script runs end to end and writes what the README says (a smoke test on a
tiny slice: timings are never asserted, only that every number was measured)."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_benchmark_writes_its_tables(tmp_path, prepared):
    out = tmp_path / "bench"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--models", "lenet_300_100",
                           "--skip-pipeline", "--repeat", "2", "--passes", "1", "--slice", "200", "--out", str(out),
                           "--data", str(prepared), "--runs", "1", "--compare", "100", "200", "--compare-runs", "1",
                           "--rounds", "2", "--round-iterations", "200"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["lenet_step_flops_9"] == 95_832_000 and results["lenet_step_flops_8"] == 67_608_000
    assert [r["percent_remaining"] for r in results["steps"]] == [100.0, 51.28, 21.07, 6.95, 3.58, 1.85]
    assert [r["sparse_layers"] for r in results["steps"]][-3:] == ["fc1"] * 3
    for row in results["steps"]:
        for key in ("step_ms", "eval_ms", "obvious_step_ms", "x_floor9", "x_floor8"):
            assert 0 < row[key] < math.inf, (row["percent_remaining"], key)
    rounds = results["lenet_round"]
    assert [r["percent_remaining"] for r in rounds] == [100.0, 3.6]
    assert all(r["measured_iterations"] == 200 and 0 < r["x_bound_8"] < math.inf for r in rounds)
    assert all(0 < r["once_s"] < r["measured_s"] for r in rounds)  # set-up and iteration 0's evaluation
    # one pass: the once-per-training part and the two 100-iteration segments make up the slice
    assert all(r["segments"] == 2 and math.isclose(r["once_s"] + r["segments_fastest_s"], r["measured_s"])
               for r in rounds)
    assert all(math.isclose(r["extrapolated_50k_s"], r["whole_slice_extrapolated_50k_s"]) for r in rounds)
    assert rounds[0]["flop_bound_8_s"] < rounds[0]["flop_bound_9_s"]
    assert out.with_suffix(".csv").read_text().startswith("eval_ms,")

    # (f) whole processes: each stage's own marks, in order, before its exit
    whole = results["whole"]
    startup = whole["startup"]
    assert list(startup) == ["import torch", "import torch, GC paused", "lth train", "lth untrained", "lth supermask"]
    assert set(startup["import torch"]) == set(startup["import torch, GC paused"]) == {"ready", "wall"}
    assert set(startup["lth untrained"]) == {"ready", "wall"}
    for name in ("lth train", "lth supermask"):
        t = {k: v["median"] for k, v in startup[name].items()}
        assert 0 < t["ready"] < t["first_step"] < t["wall"], name
    for its in ("100", "200"):
        c = whole["compare"][its]
        assert c["lth"]["runs"] == c["openlth_style"]["runs"] == 1
        assert c["ratio"] == c["openlth_style"]["median"] / c["lth"]["median"]
    assert whole["round"]["iterations"] == 200 and whole["round"]["wall"]["runs"] == 2
    assert whole["round"]["wall"]["min"] <= whole["round"]["wall"]["median"] <= whole["round"]["wall"]["max"]
    assert 0 < whole["round"]["flop_bound_8_s"] < whole["round"]["wall"]["min"]
    # no 50K-iteration run was timed: both sides of the paper-round ratio are extrapolated
    assert whole["paper_round_ratio"]["openlth_style_extrapolated"] and whole["paper_round_ratio"]["lth_extrapolated"]

def test_the_device_table_runs_on_the_cpu_with_its_concurrency_table(tmp_path, prepared):
    """(h) as `--device cuda` runs it, on the CPU with tiny settings: the steps against the GEMM
    rate, a whole round, K = 1 and 2 trainings at once, the paper profile extrapolated."""
    out = tmp_path / "bench"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--models", "--skip-pipeline",
                           "--skip-whole", "--repeat", "2", "--passes", "1", "--out", str(out), "--data", str(prepared),
                           "--rounds", "1", "--round-iterations", "100", "--device", "cpu",
                           "--device-models", "lenet_300_100", "resnet8", "--concurrency", "1", "2"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    device = json.loads(out.with_suffix(".json").read_text())["device"]
    assert device["device"].startswith("cpu") and device["gemm_gflops"] > 0 and device["tf32"] is False
    lenet, resnet = device["steps"]
    assert (lenet["model"], lenet["batch"], resnet["model"]) == ("lenet_300_100", 60, "resnet8")
    assert lenet["step_flops"] == 67_608_000  # the eight products the step needs
    assert 0 < lenet["x_floor"] < math.inf and "x_floor" not in resnet
    for row in (lenet, resnet):
        assert math.isclose(row["x_bound"], row["step_ms"] / row["bound_ms"])
    assert 0 < device["round"]["first_step"]["median"] < device["round"]["wall"]["median"]
    table = device["concurrency"]
    assert [r["trainings"] for r in table] == [1, 2] and all(r["iterations"] == 100 for r in table)
    for row in table:
        assert math.isclose(row["throughput_its"], row["trainings"] * 100 / row["wall_s"])
        assert 0 < row["first_step_s"] < row["wall_s"]
        assert math.isclose(row["x_single"], row["throughput_its"] / table[0]["throughput_its"])
    profile = device["profile"]
    assert (profile["profile"], profile["trainings"], profile["iterations"]) == ("lenet_mnist_paper", 405, 405 * 50_000)
    best = max(table, key=lambda r: r["throughput_its"])
    assert profile["at_once"] == best["trainings"]
    assert math.isclose(profile["hours"], 405 * 50_000 / best["throughput_its"] / 3600)


def test_fastest_keeps_each_element_s_fastest_pass():
    """A round measurement is an array (whole slice, once, segments): its fastest is taken per
    element, each segment from its own quietest pass; scalars stay scalars."""
    import numpy as np

    bench = load_bench()
    passes = iter([np.array([3.0, 0.1, 1.0, 2.0]), np.array([2.5, 0.2, 1.5, 0.5]), np.array([4.0, 0.3, 0.8, 1.0])])
    scalars = iter([2.0, 1.0, 3.0])
    best = bench.fastest({"round": lambda: next(passes), "step": lambda: next(scalars)}, passes=3)
    assert best["round"].tolist() == [2.5, 0.1, 0.8, 0.5]
    assert float(best["step"]) == 1.0


def test_the_deep_floor_counts_every_convolution_of_a_step():
    """ResNet-20's forward is 40,813,184 multiply-adds at 32x32 (the 1x1 projections' 262,144
    included); a step is three times that but for the first layer's input gradient."""
    import torch

    from lth import models

    bench = load_bench()
    model = models.build("resnet20", (3, 32, 32), 10)
    products, flops = bench.conv_floor(model, torch.randn(2, 3, 32, 32))
    assert flops == 2 * 2 * (3 * 40_813_184 - 32 * 32 * 16 * 27)
    products()  # runs on the recorded shapes
    measurements, flops = bench.deep_measurements("resnet8", 4, calls=1)
    assert measurements["step"]() > 0 and measurements["floor"]() > 0 and flops > 0


def test_whole_process_times_are_summarised_and_extrapolated():
    """Median and range of each time over runs; 50K iterations extrapolated through the two
    largest measured counts (the part paid once stays once)."""
    bench = load_bench()
    runs = [{"ready": 1.5, "wall": 9.0}, {"ready": 1.2, "wall": 7.0}, {"ready": 3.0, "wall": 8.0}]
    assert bench.summary(runs) == {"ready": {"median": 1.5, "min": 1.2, "max": 3.0, "runs": 3},
                                   "wall": {"median": 8.0, "min": 7.0, "max": 9.0, "runs": 3}}
    assert bench.extrapolated({500: 99.0, 2000: 10.0, 6000: 20.0}, 50_000) == 130.0
