"""Edge weights against an independent one-neuron-at-a-time reference (tests/reference.py)."""

import pytest
import torch
from reference import reference_edges

import sitegen
from sitegen.errors import SitegenError
from sitegen.model.registry import load_model

CASES = [
    # model, lower, upper (aliases or paths), lower path, upper path, input size
    ("alexnet", "conv4", "conv5", "features.9", "features.11", 80),    # adjacent conv -> conv
    ("alexnet", "conv2", "conv5", "features.4", "features.11", 80),    # non-adjacent, through pooling
    ("alexnet", "conv5", "fc6", "features.11", "classifier.2", 80),    # conv -> fc, through pool + flatten
    ("alexnet", "fc7", "fc8", "classifier.5", "classifier.6", 80),     # fc -> logits
    ("resnet18", "layer2", "layer3", "layer2", "layer3", 64),          # through residual branches
    ("efficientnet_lite0", "block4", "block7", "_blocks.4", "_blocks.7", 96),
    ("timm:resnet10t", "stage2", "stage4", "layer1", "layer3", 64),
    ("timm:convnext_atto", "stage1", "stage3", "stages.0", "stages.2", 64),
]


@pytest.mark.parametrize("name,lower,upper,lower_path,upper_path,size", CASES)
def test_edges_match_the_reference(name, lower, upper, lower_path, upper_path, size):
    torch.manual_seed(2)
    model = load_model(name, "none").module.double()
    images = torch.randn(2, 3, size, size, dtype=torch.float64)
    neurons = [0, 5, 17]
    got = sitegen.edges(model, images, lower, upper, neurons, batch_size=2)
    want = reference_edges(model, images, lower_path, upper_path, neurons)
    assert got.shape == want.shape
    assert want.abs().amax() > 0
    scale = want.abs().amax(dim=2, keepdim=True).clamp(min=1e-12)
    assert ((got.double() - want).abs() / scale).max() < 1e-5


def test_edges_from_a_later_layer_are_refused():
    model = load_model("alexnet", "none").module
    with pytest.raises(SitegenError, match="lowest first"):
        sitegen.edges(model, torch.randn(1, 3, 64, 64), "conv5", "conv2", [0])


def test_edges_on_receptive_field_crops_equal_the_whole_image():
    from sitegen.engine.geometry import receptive_fields
    from sitegen.engine.passes import gradients

    torch.manual_seed(0)
    model = load_model("efficientnet_lite0", "none").module.double().eval()
    modules = dict(model.named_modules())
    geometry = receptive_fields(model, {"_blocks.7": modules["_blocks.7"]}, (160, 160))["_blocks.7"]
    image = torch.randn(3, 160, 160, dtype=torch.float64)
    positions = [0, 9, 45, 99]  # corners and inside of the 10 x 10 map
    neurons = [1, 2, 3, 4]
    args = (model, image, "_blocks.7", modules["_blocks.7"], neurons, positions, ["guided"], 4)
    full = gradients(*args, lower=modules["_blocks.4"])["edges"]
    crop = gradients(*args, geometry=geometry, out_width=10, lower=modules["_blocks.4"])["edges"]
    assert full.abs().amax() > 0
    assert torch.allclose(full, crop, rtol=1e-5, atol=1e-6 * float(full.abs().amax()))
