"""Several trainings per device: runtime.trainings_per_device becomes Snakemake's `trainings`
resource, claimed by every job that computes on the device, with the workflow's own global
limit (which `--resources` overrides). Real Snakemake on tiny configs."""

import copy
import re
from datetime import datetime

import pytest
from conftest import TINY, Pipeline, make_workspace, run, write_params

from lth import plan
from lth.params import ParamsError, from_dict


def device_params(**runtime) -> dict:
    """TINY with every kind of job that computes on the device: rounds and their controls,
    untrained and learned supermasks, and the instability analysis."""
    params = copy.deepcopy(TINY)
    params["runtime"].update(runtime)
    e = params["experiments"]["tiny"]
    e["controls"] = ["reinit", "random"]
    e["supermask"] = {
        "untrained": {"criteria": ["large_final_same_sign"], "actions": ["original"], "rates": {"fc": 0.5, "output": 0.2},
                      "steps": 2},
        "learned": {"iterations": 20, "batch_size": 50, "lr": 100, "momentum": 0.9, "weights": "signed_constant",
                    "eval_every": 10, "samples": 2}}
    e["stability"] = {"rounds": [0], "rewind_iterations": [0], "points": 3}
    return params


def dry_run_resources(out: str) -> list[tuple[str, str]]:
    """(rule, its resources line) of every job of a `snakemake -n` log."""
    return [(rule, re.search(r"^    resources: (.*)$", block, re.M).group(1))
            for rule, block in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", out, re.M) if rule != "all"]


def test_every_job_on_the_device_claims_a_training_and_the_limit_is_the_params(tmp_path):
    ws = make_workspace(tmp_path / "ws", device_params(device="cuda", trainings_per_device=3))
    out = run(["snakemake", "-n"], ws, timeout=300)
    log = out.stdout + out.stderr
    jobs = dry_run_resources(log)
    assert {rule for rule, _ in jobs} >= {*plan.DEVICE_STAGES, "reinit", "prune", "reset", "init", "data"}
    for rule, resources in jobs:
        claims = set(resources.split(", "))
        if rule in plan.DEVICE_STAGES:
            assert {"trainings=1", "gpu=1"} <= claims, (rule, resources)
        else:
            assert not {r for r in claims if r.startswith(("trainings=", "gpu="))}, (rule, resources)
    assert "At most 3 of train, untrained, supermask, stability at once on the device (trainings=3" in log
    # the user's --resources wins: the workflow sets no limit of its own
    given = run(["snakemake", "-n", "--resources", "trainings=5"], ws, timeout=300)
    assert "At most" not in given.stdout + given.stderr
    # without the param: one at a time on CUDA
    write_params(ws, device_params(device="cuda"))
    default = run(["snakemake", "-n"], ws, timeout=300)
    assert "At most 1 of train, untrained, supermask, stability at once on the device (trainings=1: " \
           "runtime.trainings_per_device in params.yaml, by default 1 on CUDA;" in default.stdout + default.stderr


def test_on_the_cpu_only_the_cores_limit_unless_the_params_say(tiny_params):
    assert plan.trainings_at_once(from_dict(tiny_params)) is None  # device cpu: cores / threads
    tiny_params["runtime"]["trainings_per_device"] = 2
    assert plan.trainings_at_once(from_dict(tiny_params)) == 2
    tiny_params["runtime"] = {"device": "cuda", "threads": 1}
    assert plan.trainings_at_once(from_dict(tiny_params)) == 1  # one training per GPU unless asked
    assert plan.device_resources(from_dict(tiny_params)) == {"trainings": 1, "gpu": 1}
    assert plan.trains_on_cuda("cuda") and not plan.trains_on_cuda("cpu")


def test_auto_means_cuda_where_torch_sees_a_device():
    import torch

    assert plan.trains_on_cuda("auto") == torch.cuda.is_available()


@pytest.mark.parametrize("value, expected", [(0, "= 0 is out of range; it must be at least 1"),
                                             (2.0, "= 2.0 has the wrong type; expected integer")])
def test_a_bad_trainings_per_device_is_refused_naming_the_key(tiny_params, value, expected):
    tiny_params["runtime"]["trainings_per_device"] = value
    with pytest.raises(ParamsError, match=re.escape(f"params.yaml: runtime.trainings_per_device {expected}")):
        from_dict(tiny_params)


def training_intervals(log: str) -> list[tuple[datetime, datetime]]:
    """(start, end) of each `train` job of a snakemake log: the timestamps Snakemake prints when it
    starts a job and when it sees it finished (to the second)."""
    when = lambda stamp: datetime.strptime(stamp, "%a %b %d %H:%M:%S %Y")  # noqa: E731
    started = {jobid: when(stamp) for stamp, jobid in
               re.findall(r"^\[(.+?)\]\n(?:local)?rule train:\n(?:    .*\n)*?    jobid: (\d+)$", log, re.M)}
    finished = dict((jobid, when(stamp)) for stamp, jobid in
                    re.findall(r"^\[(.+?)\]\nFinished jobid: (\d+) \(Rule: train\)", log, re.M))
    assert started and started.keys() == finished.keys(), log[-3000:]
    return [(started[j], finished[j]) for j in started]


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals that overlap (a job starting the second another ends does not)."""
    return max(sum(s < t_end and t_start < e for s, e in intervals) for t_start, t_end in intervals)


@pytest.mark.pipeline
@pytest.mark.parametrize("per_device, options, most", [(1, [], 1), (2, [], 2), (2, ["--resources", "trainings=1"], 1)])
def test_snakemake_runs_at_most_the_limit_of_trainings_at_once(tmp_path, mnist_dir, per_device, options, most):
    """Three independent trainings (one per seed) under --cores 2, threads 1: the cores allow two."""
    params = copy.deepcopy(TINY)
    params["seeds"] = [0, 1, 2]
    params["runtime"]["trainings_per_device"] = per_device
    pipe = Pipeline("snakemake", tmp_path / "ws", params, mnist_dir)
    targets = [f"runs/tiny/seed{s}/round00/metrics.json" for s in params["seeds"]]
    result = run(["snakemake", *targets, "--cores", "2", *options], pipe.path, pipe.env)  # --resources takes all after it
    log = result.stdout + result.stderr
    provided = re.search(r"^Provided resources: .*trainings=(?:Resource\(\"trainings\", )?(\d+)", log, re.M)
    assert provided and int(provided.group(1)) == most  # Snakemake 9 shows it as Resource("trainings", 1)
    intervals = training_intervals(log)
    assert len(intervals) == 3
    assert most_at_once(intervals) == most, intervals
