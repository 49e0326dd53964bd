import numpy as np
import pytest
import torch

from lth import masks, models, reset
from lth.artifacts import load_arrays, save_arrays


def arrays(model, init, seed=0, shape=(3, 32, 32)):
    return models.state_arrays(models.initialize(models.build(model, shape, 10), seed, init))


@pytest.mark.parametrize("init", sorted(models.INITS))
def test_weights_follow_the_init_and_reset_knows_its_std(init):
    """Each conv and fc weight has the std reset.INIT_STD gives the reinit control."""
    theta0 = arrays("resnet20", init)
    for name in ("blocks.8.conv2.weight", "blocks.4.conv1.weight", "output.weight"):
        w = theta0[name]
        assert w.std() == pytest.approx(reset.INIT_STD[init](w.shape), rel=0.03 if w.size > 9000 else 0.1), name
    other = "glorot_normal" if init == "kaiming_normal" else "kaiming_normal"
    w = theta0["blocks.8.conv2.weight"]  # 64 -> 64: fan_in 576, fan_out 576: the stds differ by sqrt(2)
    assert w.std() != pytest.approx(reset.INIT_STD[other](w.shape), rel=0.1)


def test_batchnorm_starts_as_the_init_says_and_biases_at_zero():
    glorot, kaiming = arrays("resnet8", "glorot_normal"), arrays("resnet8", "kaiming_normal")
    for name in glorot:
        if masks.is_batchnorm(name) and name.endswith(".weight"):
            assert np.all(glorot[name] == 1)
            assert kaiming[name].min() >= 0 and kaiming[name].max() < 1 and len(np.unique(kaiming[name])) > 1
        elif not masks.is_prunable(name):
            expected = 1 if name.endswith("running_var") else 0  # shifts, biases, means, num_batches_tracked
            assert np.all(glorot[name] == expected) and np.all(kaiming[name] == expected), name


def test_init_is_drawn_from_the_seed_alone():
    a, b, c = (arrays("vgg11", "kaiming_normal", seed=s, shape=(1, 28, 28)) for s in (4, 4, 5))
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not np.array_equal(a["conv3.weight"], c["conv3.weight"])
    with pytest.raises(models.ModelError, match="unknown init 'he'; choose one of glorot_normal, kaiming_normal"):
        models.initialize(models.build("resnet8", (3, 32, 32), 10), 0, "he")


def test_running_statistics_travel_with_the_weights_through_an_artifact(tmp_path):
    """A trained network's buffers are in its artifact, and the network loaded from it
    evaluates (eval mode: running statistics) exactly as the one that wrote it."""
    model = models.initialize(models.build("resnet8", (3, 32, 32), 10), 0).train()
    for _ in range(3):
        model(torch.randn(16, 3, 32, 32) * 3 + 1)  # batch statistics far from the initial 0 and 1
    save_arrays(tmp_path / "trained.safetensors", models.state_arrays(model))
    loaded = load_arrays(tmp_path / "trained.safetensors", "train")
    assert loaded["bn.num_batches_tracked"].tolist() == [3] and not np.allclose(loaded["bn.running_var"], 1)
    again = models.load_arrays_into(models.build("resnet8", (3, 32, 32), 10), loaded)
    assert int(again.bn.num_batches_tracked) == 3
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), again.eval()(x))
        fresh = models.initialize(models.build("resnet8", (3, 32, 32), 10), 0).eval()
        fresh.load_state_dict({n: p for n, p in model.state_dict().items() if "running" not in n}, strict=False)
        assert not torch.allclose(fresh(x), again(x))  # without the statistics it is another network


def test_models_without_buffers_have_only_their_parameters_in_artifacts():
    for name in ("lenet_300_100", "conv2"):
        model = models.build(name, (1, 28, 28), 10)
        assert list(models.state_arrays(model)) == [n for n, _ in model.named_parameters()]


def test_load_refuses_weights_without_the_running_statistics():
    model = models.build("resnet8", (3, 32, 32), 10)
    params = {n: p.detach().numpy() for n, p in model.named_parameters()}
    with pytest.raises(models.ModelError, match="do not match model parameters and buffers"):
        models.load_arrays_into(model, params)
