"""The autograd-free LeNet step (dense and CSR layers) against autograd."""

import pytest
import torch
import torch.nn.functional as F

from lth import mlp_step, models
from lth.params import TrainParams

ADAM = TrainParams(lr=1e-3, batch_size=60, iterations=1, eval_every=1)


def masked_lenet(keep: float, seed: int = 0):
    model = models.initialize(models.build("lenet_300_100", (1, 28, 28), 10), seed)
    g = torch.Generator().manual_seed(seed + 1)
    mask = {n: (torch.rand(p.shape, generator=g) < keep).float() for n, p in model.named_parameters()
            if n.endswith("weight")}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in mask:
                p.mul_(mask[n])
    return model, mask


SGD = TrainParams(lr=0.05, batch_size=60, iterations=1, eval_every=1, optimizer="sgd", momentum=0.9, nesterov=True,
                  weight_decay=1e-3)
REFERENCE = {"adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
             "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)}


@pytest.mark.parametrize("recipe", [ADAM, SGD], ids=lambda r: r.optimizer)
@pytest.mark.parametrize("keep, sparse", [(0.5, []), (0.05, ["fc1"])])
def test_step_matches_autograd_and_keeps_pruned_weights_zero(keep, sparse, recipe):
    reference, mask = masked_lenet(keep)
    fast, _ = masked_lenet(keep)
    step = mlp_step.MLPStep(fast, mask, recipe)
    assert step.sparse_layers == sparse
    optimizer = REFERENCE[recipe.optimizer](reference.parameters())
    g = torch.Generator().manual_seed(2)
    for _ in range(4):
        x, y = torch.randn(60, 1, 28, 28, generator=g), torch.randint(0, 10, (60,), generator=g)
        loss = F.cross_entropy(reference(x), y)
        optimizer.zero_grad()
        loss.backward()
        for n, p in reference.named_parameters():
            if n in mask:
                p.grad.mul_(mask[n])
        # the gradients themselves, before either optimizer steps
        logits = step(x, y)
        grads = {"fc1.weight": step.layers[0].weight_grad(), "fc1.bias": step.layers[0].bias.grad[:300],
                 "fc2.weight": step.layers[1].weight_grad(), "output.weight": step.layers[2].weight_grad()}
        for n, grad in grads.items():
            torch.testing.assert_close(grad, dict(reference.named_parameters())[n].grad, rtol=1e-4, atol=1e-6)
        optimizer.step()
        torch.testing.assert_close(F.cross_entropy(logits, y), loss.detach(), rtol=1e-5, atol=1e-6)
        assert logits.shape == (60, 10)
    step.write_back()
    for (n, p), (_, q) in zip(reference.named_parameters(), fast.named_parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-5)
        if n in mask:
            assert torch.all(q[mask[n] == 0] == 0)
            assert not torch.equal(q, masked_lenet(keep)[0].get_parameter(n))  # it trained


def test_only_plain_lenet_takes_the_fast_path():
    model, mask = masked_lenet(1.0)
    assert mlp_step.supports(model, mask)
    dropout = models.build("lenet_300_100", (1, 28, 28), 10, dropout=0.5)
    assert not mlp_step.supports(dropout, mask)
    conv = models.build("conv2", (1, 28, 28), 10)
    assert not mlp_step.supports(conv, {n: p for n, p in conv.named_parameters() if n.endswith("weight")})


def test_sparse_and_dense_paths_agree():
    """The same mask trained with fc1 as CSR and as dense (sparse=False, as on CUDA) gives the
    same weights up to rounding."""
    results = []
    for sparse in (True, False):
        model, mask = masked_lenet(0.05)
        step = mlp_step.MLPStep(model, mask, ADAM, sparse=sparse)
        assert step.sparse_layers == (["fc1"] if sparse else [])
        g = torch.Generator().manual_seed(3)
        for _ in range(5):
            step(torch.randn(60, 1, 28, 28, generator=g), torch.randint(0, 10, (60,), generator=g))
        step.write_back()
        results.append(model.fc1.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-6)


def test_a_layer_with_frozen_nonzero_pruned_weights_stays_dense():
    """Mask-0 actions other than zero keep pruned weights at nonzero values: CSR cannot hold
    them, so the layer takes the dense path and they still count in the products."""
    model, mask = masked_lenet(0.05)
    frozen = masked_lenet(1.0)[0].fc1.weight.detach()
    with torch.no_grad():
        model.fc1.weight.copy_(torch.where(mask["fc1.weight"] == 0, frozen, model.fc1.weight))
    step = mlp_step.MLPStep(model, mask, ADAM)
    assert step.sparse_layers == []
    before = model.fc1.weight.detach().clone()
    g = torch.Generator().manual_seed(4)
    for _ in range(3):
        step(torch.randn(60, 1, 28, 28, generator=g), torch.randint(0, 10, (60,), generator=g))
    step.write_back()
    pruned = mask["fc1.weight"] == 0
    assert torch.equal(model.fc1.weight[pruned], before[pruned]) and bool(before[pruned].any())


@pytest.mark.parametrize("keep, sparse", [(1.0, []), (0.5, []), (0.05, ["fc1"])])
def test_evaluation_from_the_step_matches_the_model(keep, sparse):
    """Training evaluates from the step's own tensors, features-major (CSR layers included):
    the same loss and accuracy as the model itself after write_back, up to rounding."""
    from lth import loop, train

    model, mask = masked_lenet(keep)
    step = mlp_step.MLPStep(model, mask, ADAM)
    assert step.sparse_layers == sparse
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        step(torch.randn(60, 1, 28, 28, generator=g), torch.randint(0, 10, (60,), generator=g))
    split = loop.Split(torch.randn(2500, 1, 28, 28, generator=g), torch.randint(0, 10, (2500,), generator=g))
    ours = train.evaluators(step, model, {"validation": split, "test": split})["test"]()
    step.write_back()
    loss, accuracy = loop.evaluate(model, split)
    assert ours[0] == pytest.approx(loss, rel=1e-5) and ours[1] == accuracy
    assert loss != loop.evaluate(masked_lenet(keep)[0], split)[0]  # it trained


def test_write_back_and_reload_round_trip_weights_and_biases():
    model, mask = masked_lenet(0.05)
    step = mlp_step.MLPStep(model, mask, ADAM)
    g = torch.Generator().manual_seed(6)
    step(torch.randn(60, 1, 28, 28, generator=g), torch.randint(0, 10, (60,), generator=g))
    step.write_back()
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert not torch.equal(trained["fc1.bias"], masked_lenet(0.05)[0].fc1.bias)  # biases train too

    def model_after_write_back() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        step.write_back()
        return dict(model.named_parameters())

    assert all(torch.equal(p, trained[n]) for n, p in model_after_write_back().items())
    # reload: the step takes back whatever the model holds (as after a checkpoint is restored)
    step.flat.zero_()
    step.reload()
    assert all(torch.equal(p, trained[n]) for n, p in model_after_write_back().items())


def test_the_single_adam_call_is_torch_adam_bit_for_bit():
    """The step calls Adam's functional fused kernel on one flat buffer: the same numbers as
    torch.optim.Adam(fused=True) stepping that buffer."""
    model, mask = masked_lenet(0.5)
    step = mlp_step.MLPStep(model, mask, ADAM)
    initial, reference = step.flat.clone(), step.flat.clone()
    optimizer = torch.optim.Adam([reference], lr=1e-3, fused=True)
    g = torch.Generator().manual_seed(7)
    for _ in range(3):
        grad = torch.randn(step.flat.shape, generator=g)
        step.flat.grad.copy_(grad)
        reference.grad = grad.clone()
        step.adam_step()
        optimizer.step()
    assert torch.equal(step.flat, reference) and not torch.equal(step.flat, initial)
    assert torch.equal(step.state["exp_avg_sq"], optimizer.state[reference]["exp_avg_sq"])


@pytest.mark.parametrize("keep", [1.0, 0.5])
def test_padding_units_stay_zero_and_never_reach_the_model(keep):
    """Dense hidden layers are padded to a multiple of PAD_WIDTH outputs (fc1: 304, fc2: 104):
    after training, the padding's weights, biases and Adam moments are still exactly zero, the
    model has its own shapes, and the step's evaluation gives the model's logits."""
    model, mask = masked_lenet(keep)
    step = mlp_step.MLPStep(model, mask, ADAM)
    assert [layer.width for layer in step.layers] == [304, 104, 10]
    g = torch.Generator().manual_seed(4)
    for _ in range(20):
        step(torch.randn(60, 1, 28, 28, generator=g), torch.randint(0, 10, (60,), generator=g))
    fc1, fc2, out = step.layers
    # each padded tensor, and the same entries of Adam's moments (flat, in the order of the params)
    regions = [(fc1.weight_t, (slice(None), slice(300, None))), (fc1.bias, (slice(300, None),)),
               (fc2.weight_t, (slice(300, None),)), (fc2.weight_t, (slice(None), slice(100, None))),
               (fc2.bias, (slice(100, None),)), (out.weight_t, (slice(100, None),))]
    offsets, offset = {}, 0
    for layer in step.layers:
        for param in layer.params:
            offsets[id(param)] = offset
            offset += param.numel()
    padding = []
    for param, index in regions:
        padding.append(param[index])
        for moment in (step.state["exp_avg"], step.state["exp_avg_sq"]):
            start = offsets[id(param)]
            padding.append(moment[start:start + param.numel()].view(param.shape)[index])
    assert len(padding) == 18 and all(t.numel() for t in padding)
    assert all(bool((t == 0).all()) for t in padding)
    assert bool(fc1.real(fc1.weight_t).ne(0).any())  # the real weights trained
    step.write_back()
    assert model.fc1.weight.shape == (300, 784) and model.fc2.weight.shape == (100, 300)
    x = torch.randn(200, 1, 28, 28, generator=g)
    torch.testing.assert_close(step.logits(step.evaluation_inputs(x)), model(x), rtol=1e-5, atol=1e-5)
