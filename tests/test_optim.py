"""lth.optim computes torch.optim's updates bit for bit, without importing torch._dynamo."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from lth import optim


def problem(seed: int):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(7, 5, generator=g), torch.randn(5, generator=g)]
    grads = [[torch.randn(p.shape, generator=g) for p in params] for _ in range(6)]
    return params, grads


def run(make, seed=0):
    params, grads = problem(seed)
    params = [torch.nn.Parameter(p.clone()) for p in params]
    opt = make(params)
    for step_grads in grads:
        opt.zero_grad()
        for p, g in zip(params, step_grads, strict=True):
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
        opt.step()
    return params, opt


def test_adam_is_torch_fused_adam_bit_for_bit():
    ours, o = run(lambda ps: optim.Adam(ps, lr=1e-3))
    theirs, t = run(lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True))
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(o.state[a][key], t.state[b][key])
            assert o.state[a][key].dtype == t.state[b][key].dtype


def test_adam_with_weight_decay_is_torch_fused_adam_bit_for_bit():
    ours, _ = run(lambda ps: optim.Adam(ps, lr=1e-3, weight_decay=0.5))
    theirs, _ = run(lambda ps: torch.optim.Adam(ps, lr=1e-3, weight_decay=0.5, fused=True))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    plain, _ = run(lambda ps: optim.Adam(ps, lr=1e-3))
    assert not torch.equal(plain[0], ours[0])  # the decay is used


SGD_SETTINGS = [dict(momentum=0.9), dict(momentum=0.9, nesterov=True), dict(momentum=0.9, weight_decay=0.3),
                dict(momentum=0.9, nesterov=True, weight_decay=0.3), dict(weight_decay=0.3), dict()]


@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=lambda s: "-".join(s) or "plain")
def test_sgd_is_torch_sgd_bit_for_bit(settings):
    ours, o = run(lambda ps: optim.SGD(ps, lr=100.0, **settings))
    theirs, t = run(lambda ps: torch.optim.SGD(ps, lr=100.0, **settings))
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
        if settings.get("momentum"):
            assert torch.equal(o.state[a]["momentum_buffer"], t.state[b]["momentum_buffer"])
    assert set(o.state_keys()) == ({"momentum_buffer"} if settings.get("momentum") else set())


def test_each_sgd_setting_changes_the_result():
    results = [run(lambda ps, s=s: optim.SGD(ps, lr=100.0, **s))[0][0] for s in SGD_SETTINGS]
    assert all(not torch.equal(a, b) for i, a in enumerate(results) for b in results[i + 1:])


def open_lth_lrs(lr, milestones, gamma, warmup, start, steps):
    """The learning rates of `steps` steps after `start`, as open_lth's train() sets them: its
    get_lr_schedule's LambdaLR (training/optimizers.py), stepped `start` times first."""
    import bisect

    lambdas = [lambda it: 1.0]
    if milestones:
        lambdas.append(lambda it: gamma ** bisect.bisect(milestones, it))
    if warmup:
        lambdas.append(lambda it: min(1.0, it / warmup))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: np.prod([f(it) for f in lambdas]))
    lrs = []
    for _ in range(start + steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    return lrs[start:]


@pytest.mark.parametrize("milestones, gamma, warmup", [((), 0.1, 0), ((30, 45), 0.1, 0), ((), 0.1, 20),
                                                       ((30, 45), 0.5, 20), ((10,), 0.1, 40)])
@pytest.mark.parametrize("start", [0, 7, 25])
def test_the_schedule_is_open_lths(milestones, gamma, warmup, start):
    schedule = optim.Schedule(0.1, milestones, gamma, warmup)
    assert [schedule.at(start + t) for t in range(60)] == open_lth_lrs(0.1, milestones, gamma, warmup, start, 60)
    assert schedule.constant == (not milestones and not warmup)


def test_the_schedule_at_chosen_steps():
    s = optim.Schedule(0.1, milestones=(20, 25), gamma=0.1, warmup=10)
    assert s.at(0) == 0.0  # open_lth's first warmup step: lr 0
    assert s.at(5) == 0.1 * 0.5 and s.at(10) == s.at(19) == 0.1
    assert s.at(20) == 0.1 * 0.1 and s.at(24) == s.at(20) and s.at(25) == 0.1 * (0.1 ** 2) and s.at(99) == s.at(25)


def test_training_steps_do_not_import_torch_dynamo():
    """Constructing a torch.optim Optimizer imports torch._dynamo: seconds of every stage's start."""
    code = ("import sys, torch\n"
            "from lth import models, optim, mlp_step, train, supermask\n"
            "from lth.params import TrainParams\n"
            "m = models.build('lenet_300_100', (1, 28, 28), 10)\n"
            "mask = {n: torch.ones_like(p) for n, p in m.named_parameters() if n.endswith('weight')}\n"
            "recipe = TrainParams(1e-3, 4, 1, 1)\n"
            "step = train.make_step(m, mask, recipe)\n"
            "step(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))\n"
            "c = models.build('conv2', (1, 28, 28), 10)\n"
            "cmask = {n: torch.ones_like(p) for n, p in c.named_parameters() if n.endswith('weight')}\n"
            "train.make_step(c, cmask, recipe)(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))\n"
            "sgd = TrainParams(1e-3, 4, 1, 1, optimizer='sgd', momentum=0.9, nesterov=True, weight_decay=1e-4)\n"
            "train.make_step(m, mask, sgd)(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))\n"
            "train.make_step(c, cmask, sgd)(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))\n"
            "s = optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1, momentum=0.9)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
