"""A training step for LeNet-300-100 without autograd, near the matrix-product floor.

The step of a fully connected ReLU network at batch 60 is small enough that autograd's
bookkeeping costs as much as the arithmetic (benchmarks/bench.py). Here forward and
backward are written out: nine matrix products (forward, weight gradient, input
gradient per layer; the first layer's input gradient is skipped), a softmax, and
elementwise ReLU masks, into preallocated gradient buffers; then a fused Adam step.

Sparse layers: at high sparsity most of a dense product multiplies zeros. A layer whose
density is at most SPARSE_DENSITY and which has at least SPARSE_MIN_WEIGHTS weights
keeps only its surviving weights, as the values of a CSR matrix whose pattern is the
mask (if its pruned weights are all zero): the forward product is a CSR x dense product, the weight gradient a sampled
product at the surviving positions only (torch.sparse.sampled_addmm), the input
gradient a product with the transposed pattern, and Adam updates the surviving values
only. Pruned weights are then not merely held at zero: they are not stored. The
thresholds come from the benchmark's ms/iteration-vs-density curve on a 2-core CPU.

Dense and sparse layers give the same mathematics with different float summation
orders, so results differ from the autograd step's in the last bits; each path is
deterministic, and which path a layer takes depends only on its mask.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

SPARSE_DENSITY = 0.10
SPARSE_MIN_WEIGHTS = 100_000


def supports(model: nn.Module, mask: dict[str, torch.Tensor]) -> bool:
    """A plain stack of Linear layers with ReLU and no dropout (LeNet-300-100), every weight masked."""
    from lth.models import LeNet300100

    return (type(model) is LeNet300100 and model.dropout.p == 0.0
            and set(mask) == {"fc1.weight", "fc2.weight", "output.weight"})


def csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    # the indices come from a valid CSR tensor and never change: skip the per-call checks
    return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class Layer:
    """One Linear layer's trainable tensors, dense or CSR, with its gradient buffers."""

    def __init__(self, linear: nn.Linear, mask: torch.Tensor):
        self.linear = linear
        self.bias = linear.bias.detach()
        self.bias.grad = torch.zeros_like(self.bias)
        weight = linear.weight.detach()
        density = mask.mean().item()
        # CSR stores the survivors only: pruned weights frozen at nonzero values (mask-0 actions
        # other than zero) must stay in the products, so such a layer stays dense
        self.sparse = (density <= SPARSE_DENSITY and weight.numel() >= SPARSE_MIN_WEIGHTS
                       and not bool(weight[mask == 0].any()))
        if not self.sparse:
            self.weight = weight
            self.mask = mask
            self.weight.grad = torch.zeros_like(weight)
            return
        with warnings.catch_warnings():
            # torch warns once that CSR support is beta; what is used here is tested against autograd
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            pattern = (mask != 0).to_sparse_csr()
        self.crow, self.col = pattern.crow_indices(), pattern.col_indices()
        # the survivors in row-major order, which is CSR order
        self.pattern_mask = mask != 0
        self.values = weight[self.pattern_mask].clone()
        self.values.grad = torch.zeros_like(self.values)
        self.shape = tuple(weight.shape)
        # the transposed pattern, for the input gradient: a permutation of the same values
        order = torch.arange(len(self.values), device=weight.device, dtype=torch.float64)
        transposed = csr(self.crow, self.col, order, self.shape).t().to_sparse_csr()
        self.t_crow, self.t_col = transposed.crow_indices(), transposed.col_indices()
        self.t_order = transposed.values().long()

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.values if self.sparse else self.weight, self.bias]

    def csr(self) -> torch.Tensor:
        return csr(self.crow, self.col, self.values, self.shape)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.sparse:
            return torch.sparse.mm(self.csr(), h.t()).t().add_(self.bias)
        return torch.addmm(self.bias, h, self.weight.t())

    def backward(self, g: torch.Tensor, h: torch.Tensor, need_input_grad: bool) -> torch.Tensor | None:
        """Fill the parameter gradients from the output gradient g; return the input gradient."""
        torch.sum(g, 0, out=self.bias.grad)
        if self.sparse:
            grad = torch.sparse.sampled_addmm(self.csr(), g.t(), h, beta=0.0)
            self.values.grad.copy_(grad.values())
            if not need_input_grad:
                return None
            transposed = csr(self.t_crow, self.t_col, self.values[self.t_order], self.shape[::-1])
            return torch.sparse.mm(transposed, g.t()).t()
        torch.mm(g.t(), h, out=self.weight.grad)
        self.weight.grad.mul_(self.mask)
        return g @ self.weight if need_input_grad else None

    def reload(self) -> None:
        """Take the surviving values from the model's dense weight (after it was restored)."""
        if self.sparse:
            self.values.copy_(self.linear.weight.detach()[self.pattern_mask])

    def write_back(self) -> None:
        """Copy sparse values into the model's dense weight (zeros elsewhere)."""
        if self.sparse:
            with torch.no_grad():
                self.linear.weight.copy_(self.csr().to_dense())


class MLPStep:
    """step(images, labels) -> (loss, logits) for a model `supports` accepts."""

    def __init__(self, model: nn.Module, mask: dict[str, torch.Tensor], lr: float):
        self.layers = [Layer(model.fc1, mask["fc1.weight"]), Layer(model.fc2, mask["fc2.weight"]),
                       Layer(model.output, mask["output.weight"])]
        params = [p for layer in self.layers for p in layer.params]
        self.optimizer = torch.optim.Adam(params, lr=lr, fused=True)
        self.minus_ones = None

    @property
    def sparse_layers(self) -> list[str]:
        return [name for name, layer in zip(("fc1", "fc2", "output"), self.layers, strict=True) if layer.sparse]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = [images.flatten(1)]
        for layer in self.layers[:-1]:
            inputs.append(layer.forward(inputs[-1]).relu_())
        logits = self.layers[-1].forward(inputs[-1])
        loss = F.cross_entropy(logits, labels)
        # d loss / d logits of the mean cross-entropy: (softmax - onehot) / batch
        g = torch.softmax(logits, 1)
        if self.minus_ones is None or len(self.minus_ones) != len(labels):
            self.minus_ones = torch.full((len(labels), 1), -1.0, device=labels.device)
        g.scatter_add_(1, labels[:, None], self.minus_ones).div_(len(labels))
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i].backward(g, inputs[i], need_input_grad=i > 0)
            if i > 0:
                g = torch.ops.aten.threshold_backward(g, inputs[i], 0.0)  # through the ReLU, one kernel
        self.optimizer.step()
        return loss, logits

    def write_back(self) -> None:
        for layer in self.layers:
            layer.write_back()

    def reload(self) -> None:
        for layer in self.layers:
            layer.reload()
