"""A training step for LeNet-300-100 without autograd, near the matrix-product floor.

The step of a fully connected ReLU network at batch 60 is small enough that autograd's
bookkeeping costs as much as the arithmetic. What each choice below bought, measured, is in
benchmarks/README.md ("How the LeNet step gets near the floor"). Here forward and
backward are written out: eight matrix products (forward, weight gradient, input
gradient per layer; the first layer's input gradient is not needed), a softmax, and
elementwise ReLU masks, into preallocated gradient buffers; then one optimizer step.
All trainable tensors are views of one flat buffer (and their gradients of another), so
that step is a single kernel over one tensor: for Adam, the fused kernel called through
the functional torch.optim.adam.adam without the Optimizer.step wrapper (faster); for
SGD (`train.optimizer: sgd`), optim.SGD's step over that one tensor.

Dense layers keep their weight transposed (in x out, contiguous): at batch 60 the
weight-gradient product h^T g then writes its output in the order MKL writes fastest.
The model's weights and biases are therefore stale during training: train() writes them
back before snapshots, checkpoints and at the end, and evaluates from the step's own
tensors (below). A layer whose mask keeps every weight skips the gradient masking.

Dense hidden layers are padded with zero units to a multiple of PAD_WIDTH outputs (fc1:
300 to 304; the next layer gets zero input weights for them): MKL runs these products
faster at 304 columns than at 300, in training and in evaluation. The padding units stay
exactly zero: their weights, bias and moments start at zero and every gradient into them
is zero (their ReLU input is zero, so no gradient passes back through them, and their
activations are zero, so the next layer's weights from them get none either). They are
never written back to the model.

Sparse layers: at high sparsity most of a dense product multiplies zeros. A layer whose
density is at most SPARSE_DENSITY and which has at least SPARSE_MIN_WEIGHTS weights
keeps only its surviving weights, as the values of a CSR matrix whose pattern is the
mask (if its pruned weights are all zero): the forward product is a CSR x dense product,
the weight gradient a sampled product at the surviving positions only
(torch.sparse.sampled_addmm), the input gradient a product with the transposed pattern,
and Adam updates the surviving values only. Pruned weights are then not merely held at
zero: they are not stored. The thresholds come from the benchmark's
ms/iteration-vs-density curve on the project's 2-core CPU (benchmarks/README.md).

On CUDA every layer is dense (MLPStep's `sparse=False`, which train.make_step passes for a
CUDA device): the CSR forms pay off on a CPU whose time goes into multiplying zeros; on a
GPU a LeNet step is launch-bound, not arithmetic-bound, and cuSPARSE's calls cannot be
captured in a CUDA graph (graphed.py).

Evaluation inputs are stored features-major (features x examples): a CSR layer then
multiplies a contiguous dense matrix, and evaluation too gets cheaper as the network gets
sparser. A network without CSR layers evaluates examples-major on the transposed view, as
in training (faster with the padded fc1).

Dense and sparse layers give the same mathematics with different float summation
orders, so results differ from the autograd step's in the last bits; each path is
deterministic, and which path a layer takes depends only on its mask.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.optim.adam import adam

from lth import optim
from lth.params import TrainParams

SPARSE_DENSITY = 0.10
SPARSE_MIN_WEIGHTS = 100_000
PAD_WIDTH = 8


def supports(model: nn.Module, mask: dict[str, torch.Tensor]) -> bool:
    """A plain stack of Linear layers with ReLU and no dropout (LeNet-300-100), every weight masked."""
    from lth.models import Network

    return (type(model) is Network and not model.conv_names and model.fc_names == ["fc1", "fc2"]
            and model.dropout.p == 0.0 and set(mask) == {"fc1.weight", "fc2.weight", "output.weight"})


def csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    # the indices come from a valid CSR tensor and never change: skip the per-call checks
    return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class Layer:
    """One Linear layer's trainable tensors, dense (transposed) or CSR, with gradient buffers."""

    def __init__(self, linear: nn.Linear, mask: torch.Tensor, in_width: int, hidden: bool, sparse: bool = True):
        """in_width: the previous layer's (padded) width; hidden: pad a dense layer's outputs;
        sparse: whether the layer may take the CSR form (False: dense whatever its density)."""
        self.linear = linear
        weight = linear.weight.detach()
        self.out_features, self.in_features = weight.shape
        density = mask.mean().item()
        # CSR stores the survivors only: pruned weights frozen at nonzero values (mask-0 actions
        # other than zero) must stay in the products, so such a layer stays dense
        # (and a CSR layer has the model's shape: it cannot take a padded layer's output)
        self.sparse = (sparse and density <= SPARSE_DENSITY and weight.numel() >= SPARSE_MIN_WEIGHTS
                       and not bool(weight[mask == 0].any()) and in_width == self.in_features)
        if not self.sparse:
            self.width = -(-self.out_features // PAD_WIDTH) * PAD_WIDTH if hidden else self.out_features
            self.weight_t = weight.new_zeros(in_width, self.width)
            self.real(self.weight_t).copy_(weight.t())
            self.bias = weight.new_zeros(self.width)
            self.bias[:self.out_features] = linear.bias.detach()
            self.mask_t = None
            if not bool(mask.all()):
                self.mask_t = torch.zeros_like(self.weight_t)
                self.real(self.mask_t).copy_(mask.t())
            return
        self.width = self.out_features
        self.bias = linear.bias.detach().clone()
        with warnings.catch_warnings():
            # torch warns once that CSR support is beta; what is used here is tested against autograd
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            pattern = (mask != 0).to_sparse_csr()
        self.crow, self.col = pattern.crow_indices(), pattern.col_indices()
        # the survivors in row-major order, which is CSR order
        self.pattern_mask = mask != 0
        self.values = weight[self.pattern_mask].clone()
        self.shape = tuple(weight.shape)
        # the transposed pattern, for the input gradient: a permutation of the same values
        order = torch.arange(len(self.values), device=weight.device, dtype=torch.float64)
        transposed = csr(self.crow, self.col, order, self.shape).t().to_sparse_csr()
        self.t_crow, self.t_col = transposed.crow_indices(), transposed.col_indices()
        self.t_order = transposed.values().long()

    def real(self, tensor: torch.Tensor) -> torch.Tensor:
        """A dense layer's in x out tensor (weight, its gradient, its mask) without the padding."""
        return tensor[:self.in_features, :self.out_features]

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.values if self.sparse else self.weight_t, self.bias]

    def adopt(self, flat: torch.Tensor, offset: int) -> int:
        """Move this layer's tensors into `flat` from `offset` (their gradients into flat.grad);
        return the offset after them."""
        for name in ("values" if self.sparse else "weight_t", "bias"):
            tensor = getattr(self, name)
            end = offset + tensor.numel()
            view = flat[offset:end].view(tensor.shape)
            view.copy_(tensor)
            view.grad = flat.grad[offset:end].view(tensor.shape)
            setattr(self, name, view)
            offset = end
        if not self.sparse:
            self.weight = self.weight_t.t()  # out x in: the input gradient's operand, made once
        return offset

    def csr(self) -> torch.Tensor:
        return csr(self.crow, self.col, self.values, self.shape)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Examples x features in, examples x outputs out (training)."""
        if self.sparse:
            return torch.sparse.mm(self.csr(), h.t()).t().add_(self.bias)
        return torch.addmm(self.bias, h, self.weight_t)

    def forward_features_major(self, h: torch.Tensor) -> torch.Tensor:
        """Features x examples in, outputs x examples out (evaluation)."""
        if self.sparse:
            return torch.sparse.mm(self.csr(), h).add_(self.bias[:, None])
        return torch.addmm(self.bias[:, None], self.weight, h)

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
        torch.mm(h.t(), g, out=self.weight_t.grad)
        if self.mask_t is not None:
            self.weight_t.grad.mul_(self.mask_t)
        return torch.mm(g, self.weight) if need_input_grad else None

    def weight_grad(self) -> torch.Tensor:
        """The last weight gradient in the model's layout (out x in, zeros at pruned weights)."""
        if self.sparse:
            return torch.zeros(self.shape, device=self.values.device).masked_scatter_(self.pattern_mask,
                                                                                      self.values.grad)
        return self.real(self.weight_t.grad).t()

    def reload(self) -> None:
        """Take the trained values from the model's weight (after it was restored)."""
        weight = self.linear.weight.detach()
        if self.sparse:
            self.values.copy_(weight[self.pattern_mask])
        else:
            self.real(self.weight_t).copy_(weight.t())
        self.bias[:self.out_features].copy_(self.linear.bias.detach())

    def write_back(self) -> None:
        """Copy the trained values into the model's weight (zeros elsewhere, for CSR) and bias."""
        with torch.no_grad():
            self.linear.weight.copy_(self.csr().to_dense() if self.sparse else self.real(self.weight_t).t())
            self.linear.bias.copy_(self.bias[:self.out_features])


class MLPStep:
    """step(images, labels) -> logits (before the step) for a model `supports` accepts. The loss
    itself is not computed: its gradient needs only the softmax, and training reports the
    loss once per evaluation from the logits (train.Window). sparse=False keeps every layer
    dense (on CUDA: module docstring); True lets a layer take the CSR form its mask allows."""

    def __init__(self, model: nn.Module, mask: dict[str, torch.Tensor], recipe: TrainParams, sparse: bool = True):
        self.layers, width = [], model.fc1.in_features
        for name in ("fc1", "fc2", "output"):
            self.layers.append(Layer(getattr(model, name), mask[f"{name}.weight"], width, hidden=name != "output",
                                     sparse=sparse))
            width = self.layers[-1].width
        size = sum(p.numel() for layer in self.layers for p in layer.params)
        self.flat = torch.empty(size, dtype=model.fc1.weight.dtype, device=model.fc1.weight.device)
        self.flat.grad = torch.zeros_like(self.flat)
        offset = 0
        for layer in self.layers:
            offset = layer.adopt(self.flat, offset)
        # the optimizer holds the hyperparameters and the state (checkpoints save it and restore
        # it in place); Adam's state is created now, as its first step would create it
        self.optimizer = optim.build([self.flat], recipe)
        if isinstance(self.optimizer, optim.Adam):
            self.state = self.optimizer.state_of(self.flat)
            self.update = self.adam_step
        else:
            self.update = self.optimizer.step
        self.minus_ones = None

    @property
    def sparse_layers(self) -> list[str]:
        return [name for name, layer in zip(("fc1", "fc2", "output"), self.layers, strict=True) if layer.sparse]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        inputs = [images.flatten(1)]
        for layer in self.layers[:-1]:
            inputs.append(layer.forward(inputs[-1]).relu_())
        logits = self.layers[-1].forward(inputs[-1])
        # d loss / d logits of the mean cross-entropy: (softmax - onehot) / batch
        g = torch.softmax(logits, 1)
        if self.minus_ones is None or len(self.minus_ones) != len(labels):
            self.minus_ones = torch.full((len(labels), 1), -1.0, device=labels.device)
        g.scatter_add_(1, labels[:, None], self.minus_ones).div_(len(labels))
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i].backward(g, inputs[i], need_input_grad=i > 0)
            if i > 0:
                g = torch.ops.aten.threshold_backward(g, inputs[i], 0.0)  # through the ReLU, one kernel
        self.update()
        return logits

    def adam_step(self) -> None:
        # optim.Adam.step's call, without rebuilding its lists every step
        group, state = self.optimizer.param_groups[0], self.state
        beta1, beta2 = group["betas"]
        adam([self.flat], [self.flat.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
             fused=True, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
             weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    def evaluation_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """A split's images as `logits` takes them: features x examples, contiguous."""
        return images.flatten(1).t().contiguous()

    @torch.no_grad()
    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Examples x classes, from features-major inputs (a column slice of evaluation_inputs)."""
        if not self.sparse_layers:
            h = h.t()
            for layer in self.layers[:-1]:
                h = layer.forward(h).relu_()
            return self.layers[-1].forward(h)
        for layer in self.layers[:-1]:
            h = layer.forward_features_major(h).relu_()
        # contiguous: the loss and argmax over a transposed 1000 x 10 cost far more than this copy
        return self.layers[-1].forward_features_major(h).t().contiguous()

    def write_back(self) -> None:
        for layer in self.layers:
            layer.write_back()

    def reload(self) -> None:
        for layer in self.layers:
            layer.reload()
