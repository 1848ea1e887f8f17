"""What a neuron does to the classes (DESIGN §2): sitegen.effects against a one-image, one-neuron, one-class
reference (tests/reference.py) on randomly initialised models."""

import pytest
import torch
from reference import reference_effects
from test_visualize import alive

import sitegen
from sitegen.model.registry import load_model

CASES = [
    ("alexnet", "conv5", "features.11", 80, [0, 17, 200]),
    ("alexnet", "fc7", "classifier.5", 80, None),  # None: units alive on both images
    ("resnet18", "layer3", "layer3", 64, [2, 100]),  # in-place ReLUs after the layer and residual branches
    ("efficientnet_lite0", "block10", "_blocks.10", 64, [0, 50]),
]


@pytest.mark.parametrize("name,layer,path,size,neurons", CASES)
def test_effects_match_the_reference(name, layer, path, size, neurons):
    torch.manual_seed(3)
    model = load_model(name, "none").module.double()
    images = torch.randn(2, 3, size, size, dtype=torch.float64)
    if neurons is None:
        neurons = alive(model, images, path)[:2]
    classes = [1, 7, 999]
    first, exact = sitegen.effects(model, images, layer, neurons, classes, batch_size=2)
    want_first, want_exact = reference_effects(model, images, path, neurons, classes)
    assert first.shape == exact.shape == (len(neurons), len(classes))
    scale = want_first.abs().max()
    assert scale > 0
    assert (first - want_first).abs().max() <= 1e-9 * scale
    assert (exact.double() - want_exact).abs().max() <= 1e-5 * want_exact.abs().max()


def test_a_linear_head_s_first_order_effect_is_its_ablation():
    """Logits linear in a layer's output: zeroing a unit loses exactly its activation times its weight."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6), torch.nn.ReLU(), torch.nn.Linear(6, 4))
    images = torch.randn(3, 3, 2, 2)
    first, exact = sitegen.effects(model, images, "2", [0, 3, 5], [0, 2])
    assert torch.allclose(first, exact, atol=1e-6)
    assert not torch.allclose(first, torch.zeros_like(first))
