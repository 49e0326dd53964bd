"""lth.optim computes torch.optim's updates bit for bit, without importing torch._dynamo."""

import subprocess
import sys

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


def test_sgd_with_momentum_is_torch_sgd_bit_for_bit():
    ours, o = run(lambda ps: optim.SGD(ps, lr=100.0, momentum=0.9))
    theirs, t = run(lambda ps: torch.optim.SGD(ps, lr=100.0, momentum=0.9))
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(o.state[a]["momentum_buffer"], t.state[b]["momentum_buffer"])
    changed, _ = run(lambda ps: optim.SGD(ps, lr=100.0, momentum=0.5))
    assert not torch.equal(changed[0], ours[0])  # the momentum is used


def test_training_steps_do_not_import_torch_dynamo():
    """Constructing a torch.optim Optimizer imports torch._dynamo: seconds of every stage's start."""
    code = ("import sys, torch\n"
            "from lth import models, optim, mlp_step, train, supermask\n"
            "m = models.build('lenet_300_100', (1, 28, 28), 10)\n"
            "mask = {n: torch.ones_like(p) for n, p in m.named_parameters() if n.endswith('weight')}\n"
            "step = train.make_step(m, mask, 1e-3)\n"
            "step(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))\n"
            "c = models.build('conv2', (1, 28, 28), 10)\n"
            "cmask = {n: torch.ones_like(p) for n, p in c.named_parameters() if n.endswith('weight')}\n"
            "train.make_step(c, cmask, 1e-3)(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))\n"
            "s = optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1, momentum=0.9)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
