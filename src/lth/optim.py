"""Adam and SGD as plain state and one call to torch's own update functions; the
learning-rate schedule.

torch.optim's Optimizer objects compute exactly these updates, but constructing one
imports torch._dynamo, which costs every stage seconds before its first step
(benchmarks/README.md, start-up). These classes call the same functions that
torch.optim.Adam(fused=True) and torch.optim.SGD call in their step(), with the state
created as they create it, so the results are the same bit for bit (tests/test_optim.py).
They keep the Optimizer attributes that checkpoints read: `param_groups[0]["params"]` and
`state[param]`.

The schedule (`Schedule`) is open_lth's (training/optimizers.py, get_lr_schedule): step t,
counted from 0, trains at lr * gamma^(milestones <= t) * min(1, t / warmup), the product
torch's LambdaLR computes after t scheduler steps. A round starts at t = 0, a rewound
round at t = reset.rewind_iteration (open_lth fast-forwards the schedule to the rewind
step: warmup before it is not repeated).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.optim.adam import adam
from torch.optim.sgd import sgd

if TYPE_CHECKING:
    from lth.params import TrainParams


class Optimizer:
    """What the two share: one parameter group, state per parameter, gradients zeroed in place."""

    param_groups: list[dict]
    state: dict[torch.Tensor, dict[str, torch.Tensor]]

    def state_keys(self) -> tuple[str, ...]:
        """The state each parameter has after its first step (what a checkpoint must hold)."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        for p in self.param_groups[0]["params"]:
            if p.grad is not None:
                p.grad.zero_()


class Adam(Optimizer):
    """torch.optim.Adam(params, lr, fused=True): the fused kernel, one pass over each tensor."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.param_groups = [{"params": list(params), "lr": lr, "betas": betas, "eps": eps,
                              "weight_decay": weight_decay}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = defaultdict(dict)  # as torch.optim's

    def state_keys(self) -> tuple[str, ...]:
        return ("step", "exp_avg", "exp_avg_sq")

    def state_of(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        # as Adam creates it at a parameter's first step (fused: a float32 step on p's device)
        if not self.state.get(p):
            self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                             "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                             "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return self.state[p]

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        states = [self.state_of(p) for p in params]
        beta1, beta2 = group["betas"]
        adam(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
             [], [s["step"] for s in states], fused=True, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
             weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)


class SGD(Optimizer):
    """torch.optim.SGD(params, lr, momentum, weight_decay=..., nesterov=...), fused on CUDA:
    the momentum buffer starts as the first (decayed) gradient."""

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        self.param_groups = [{"params": list(params), "lr": lr, "momentum": momentum, "nesterov": nesterov,
                              "weight_decay": weight_decay}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = defaultdict(dict)  # as torch.optim's

    def state_keys(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.param_groups[0]["momentum"] else ()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        buffers = [self.state[p].get("momentum_buffer") for p in params]
        # on CUDA the fused kernel (one launch for all tensors: torch.optim.SGD(fused=True));
        # elsewhere foreach=None, fused=None: the kernels torch.optim.SGD's default picks
        fused = True if params and params[0].is_cuda else None
        sgd(params, [p.grad for p in params], buffers, foreach=None, fused=fused, weight_decay=group["weight_decay"],
            momentum=group["momentum"], lr=group["lr"], dampening=0.0, nesterov=group["nesterov"], maximize=False)
        if group["momentum"]:
            for p, buffer in zip(params, buffers, strict=True):
                self.state[p]["momentum_buffer"] = buffer


def build(params, recipe: TrainParams) -> Optimizer:
    """The optimizer that `recipe` (a train section) names, over `params`."""
    if recipe.optimizer == "sgd":
        return SGD(params, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                   weight_decay=recipe.weight_decay)
    # the fused kernel: one pass over each tensor (benchmarks/bench.py times the step beside a foreach one)
    return Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


@dataclass(frozen=True)
class Schedule:
    """The learning rate at each step of a training (module docstring: open_lth's formula)."""

    lr: float
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup: int = 0

    @classmethod
    def of(cls, recipe: TrainParams) -> Schedule:
        return cls(recipe.lr, tuple(recipe.milestones), recipe.gamma, recipe.warmup)

    @property
    def constant(self) -> bool:
        return not self.milestones and not self.warmup

    def at(self, t: int) -> float:
        """The lr of step t, counted from 0 (LambdaLR's base_lr * lambda(t), the same float ops)."""
        factor = 1.0 * self.gamma ** bisect.bisect(self.milestones, t)
        if self.warmup:
            factor *= min(1.0, t / self.warmup)
        return self.lr * factor
