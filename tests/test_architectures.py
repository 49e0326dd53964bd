import re
import subprocess
import sys

import pytest
import torch

from lth import architectures, masks, models
from lth.params import schema


MODELS = [*sorted(architectures.ARCHITECTURES), "resnet8", "resnet20", "resnet20_4"]


@pytest.mark.parametrize("dataset", sorted(architectures.DATASETS))
@pytest.mark.parametrize("model", MODELS)
def test_torch_models_have_the_tables_layers(model, dataset):
    """What params validation counts without torch is what training builds, on 28x28x1 and
    32x32x3 inputs; the names' rule finds what is prunable and BatchNorm by module type."""
    net = models.build(model, architectures.input_shape(dataset), architectures.num_classes(dataset))
    weights = {n.removesuffix(".weight"): p for n, p in net.named_parameters() if masks.is_prunable(n)}
    layers = architectures.dataset_layers(model, dataset)
    assert list(weights) == [layer.name for layer in layers]
    for layer in layers:
        assert masks.layer_kind(f"{layer.name}.weight") == layer.kind
        assert weights[layer.name].numel() == layer.weights
    modules = dict(net.named_modules())
    for name, t in net.state_dict().items():
        module = modules[name.rpartition(".")[0]]
        assert masks.is_batchnorm(name) == isinstance(module, torch.nn.BatchNorm2d), name
        assert masks.is_prunable(name) == (isinstance(module, torch.nn.Conv2d | torch.nn.Linear)
                                           and name.endswith(".weight")), name
    assert architectures.architecture(model).batchnorm == any(map(masks.is_batchnorm, net.state_dict()))
    assert net(torch.zeros(2, *architectures.input_shape(dataset))).shape == (2, layers[-1].outputs)


def count(model, kind=None, shape=(3, 32, 32)):
    return sum(layer.weights for layer in architectures.layers(model, shape, 10) if kind in (None, layer.kind))


def test_resnet20_and_vgg19_have_the_papers_weight_counts():
    """Frankle & Carbin's Resnet-18 (resnet20): ~274K weights, ~270K of them conv; VGG-19 ~20.0M."""
    assert count("resnet20", "conv") == 270_256  # with the two 1x1 projections' 2,560 (268K without)
    assert count("resnet20") == 270_896  # + the output layer's 640: what is pruned and counted in % remaining
    net = models.build("resnet20", (3, 32, 32), 10)
    floats = sum(t.numel() for n, t in net.state_dict().items() if not n.endswith("num_batches_tracked"))
    # the paper's 274K: every float of the network, BatchNorm's scale, shift, mean and variance
    # (784 channels x 4) and the output bias included
    assert floats == 274_042
    assert count("vgg19", "conv") == 20_018_880 and count("vgg19") == 20_024_000
    assert [count(f"vgg{d}") for d in (11, 13, 16)] == [9_222_848, 9_407_168, 14_715_584]
    # the shortcut's projection is a conv layer (pruned at the conv rate) of 1x1 kernels
    shortcut = [layer for layer in architectures.layers("resnet20", (3, 32, 32), 10) if "shortcut" in layer.name]
    assert [(layer.kind, layer.weights) for layer in shortcut] == [("conv", 512), ("conv", 2048)]


def test_resnet_names_give_depth_and_width():
    arch = architectures.architecture("resnet56_32")
    assert (arch.depth, arch.width) == (56, 32) and len(arch.blocks()) == 27
    assert architectures.architecture("resnet20").width == 16
    assert count("resnet20_64", "conv") > 15 * count("resnet20", "conv")  # 4x the width, ~16x the weights


@pytest.mark.parametrize("name, words", [
    ("resnet21", ["'resnet21'", "6n+2", "resnet20 or resnet26"]),
    ("resnet2", ["'resnet2'", "6n+2", "resnet8"]),
    ("resnet20_0", ["'resnet20_0'", "at least 1"]),
    ("vgg12", ["'vgg12'", "not a known model", "vgg19", "resnet<D>"]),
])
def test_unknown_models_are_refused_with_what_would_be_right(name, words):
    with pytest.raises(architectures.UnknownModel) as err:
        architectures.architecture(name)
    assert all(w in str(err.value) for w in words), str(err.value)
    with pytest.raises(models.ModelError):
        models.build(name, (3, 32, 32), 10)


def test_lenet_is_784_300_100_10():
    layers = architectures.dataset_layers("lenet_300_100", "mnist")
    assert [(layer.inputs, layer.outputs) for layer in layers] == [(784, 300), (300, 100), (100, 10)]


def test_params_schema_names_the_tables_datasets_and_models():
    experiment = schema()["$defs"]["experiment"]["properties"]
    assert set(experiment["dataset"]["enum"]) == set(architectures.DATASETS)
    assert set(schema()["properties"]["data"]["properties"]["local_dirs"]["properties"]) == set(architectures.DATASETS)
    pattern = re.compile(experiment["model"]["properties"]["name"]["pattern"])
    assert all(pattern.fullmatch(name) for name in MODELS)
    assert not any(pattern.fullmatch(name) for name in ("resnet", "vgg12", "conv3", "lenet"))
    assert set(experiment["model"]["properties"]["init"]["enum"]) == set(models.INITS) == set(models.BATCHNORM_SCALE)


def test_architectures_do_not_import_torch():
    script = "import sys, lth.architectures, lth.params; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True)
