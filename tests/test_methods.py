"""Invariants every method of the table (sitegen/methods.py) must keep, tested from the table itself:
a method added there is checked here without a new test."""

import pytest
import torch
from reference import RULES as REFERENCE_RULES
from reference import reference_visualize
from torch import nn

import sitegen
from sitegen.config import parse
from sitegen.engine.rules import RULES
from sitegen.methods import METHODS, RULE_METHODS


def test_the_table_is_complete():
    names = [method.name for method in METHODS]
    assert len(set(names)) == len(names)
    for method in METHODS:
        assert method.title and method.definition.endswith(".")
    assert set(RULES) == set(RULE_METHODS)  # the engine has a rule for each ReLU-rule method
    assert set(REFERENCE_RULES) == set(RULE_METHODS)  # and so has the independent reference


@pytest.mark.parametrize("method", [method.name for method in METHODS])
def test_the_config_accepts_every_method(tmp_path, method):
    config = parse(f'[layers]\nuse = ["conv1"]\n[compute]\nmethods = ["guided", "{method}"]\n', tmp_path / "a.toml")
    assert method in config.compute.methods or (method == "optimize" and config.optimize is not None)


class Convs(nn.Module):
    """Two convolutions, an in-place ReLU and a ReLU6 between them, a max pool: every rule has work."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 5, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.relu6 = nn.ReLU6()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.b(self.pool(self.relu6(self.relu(self.a(x)) * 4)))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return Convs().double().eval()


@pytest.mark.parametrize("method", RULE_METHODS)
def test_without_relus_every_method_is_the_true_gradient(method):
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3)).double().eval()
    images = torch.randn(2, 3, 14, 14, dtype=torch.float64)
    got = sitegen.visualize(linear, images, "2", [0, 3], method)
    want = sitegen.visualize(linear, images, "2", [0, 3], "gradient")
    truth = torch.zeros_like(want)
    for n in range(2):
        for k, neuron in enumerate([0, 3]):
            x = images[n:n + 1].clone().requires_grad_(True)
            out = linear(x)[0, neuron].reshape(-1)
            (grad,) = torch.autograd.grad(out[out.argmax()], x)
            truth[n, k] = grad[0]
    assert torch.allclose(got, truth, atol=1e-12) and torch.allclose(want, truth, atol=1e-12)


@pytest.mark.parametrize("method", RULE_METHODS)
def test_every_method_matches_the_reference_through_relu_and_relu6(net, method):
    images = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    got = sitegen.visualize(net, images, "b", [0, 2, 4], method)
    want = reference_visualize(net, images, "b", [0, 2, 4], method)
    assert want.abs().amax() > 0
    assert torch.allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("method", RULE_METHODS)
def test_a_neurons_picture_does_not_depend_on_its_batch(net, method):
    images = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    together = sitegen.visualize(net, images, "b", [0, 1, 2, 3, 4], method, batch_size=5)
    for k in range(5):
        alone = sitegen.visualize(net, images, "b", [k], method, batch_size=1)
        assert torch.allclose(together[:, k], alone[:, 0], rtol=0, atol=1e-12)  # up to rounding


@pytest.mark.parametrize("method", RULE_METHODS)
def test_every_method_leaves_the_model_as_given(net, method):
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sitegen.visualize(net, torch.randn(1, 3, 12, 12, dtype=torch.float64), "b", [1], method)
    assert net.training and all(p.requires_grad and p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(not m._forward_hooks and not m._backward_hooks for m in net.modules())
