import subprocess
import sys

import pytest
import torch

from lth import architectures, masks, models
from lth.params import schema


@pytest.mark.parametrize("dataset", sorted(architectures.DATASETS))
@pytest.mark.parametrize("model", sorted(architectures.ARCHITECTURES))
def test_torch_models_have_the_tables_layers(model, dataset):
    """What params validation counts without torch is what training builds."""
    net = models.build(model, architectures.input_shape(dataset), architectures.num_classes(dataset))
    weights = {n.removesuffix(".weight"): p for n, p in net.named_parameters() if masks.is_prunable(n)}
    layers = architectures.dataset_layers(model, dataset)
    assert list(weights) == [layer.name for layer in layers]
    for layer in layers:
        assert masks.layer_kind(f"{layer.name}.weight") == layer.kind
        assert weights[layer.name].numel() == layer.weights
    assert net(torch.zeros(2, *architectures.input_shape(dataset))).shape == (2, layers[-1].outputs)


def test_lenet_is_784_300_100_10():
    layers = architectures.dataset_layers("lenet_300_100", "mnist")
    assert [(layer.inputs, layer.outputs) for layer in layers] == [(784, 300), (300, 100), (100, 10)]


def test_params_schema_names_the_tables_datasets_and_models():
    experiment = schema()["$defs"]["experiment"]["properties"]
    assert set(experiment["dataset"]["enum"]) == set(architectures.DATASETS)
    assert set(schema()["properties"]["data"]["properties"]["local_dirs"]["properties"]) == set(architectures.DATASETS)
    assert set(experiment["model"]["properties"]["name"]["enum"]) == set(architectures.ARCHITECTURES)


def test_architectures_do_not_import_torch():
    script = "import sys, lth.architectures, lth.params; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True)
