"""Path pictures and path weights (DESIGN §2) against an independent one-path-at-a-time reference
(tests/reference.py), which writes each path's masks into the forward instead of hooking gradients."""

import numpy as np
import pytest
import torch
from reference import RULES as REFERENCE_RULES
from reference import reference_path_contributions, reference_path_edges, reference_visualize_path

import sitegen
from sitegen.engine.passes import activations, gradients
from sitegen.engine.paths import Step, keep_masks
from sitegen.errors import SitegenError
from sitegen.model.layers import aliases_for
from sitegen.model.registry import load_model

CASES = [
    # model, root, the layers below it (aliases or paths), input size
    ("alexnet", ("conv5", 3), ["conv3", "conv1"], 80),  # conv paths, through pooling
    ("alexnet", ("fc7", None), ["conv5", "conv2"], 80),  # fc -> conv, through the classifier's flatten
    ("resnet18", ("layer3", 5), ["layer2", "layer1"], 64),  # through residual blocks and reused ReLUs
    ("efficientnet_lite0", ("block7", 2), ["block4", "block2"], 96),  # ReLU6, shared per block
]


def strongest_path(model, images, root, layers):
    """A path through the strongest child at each layer: the path weights pick it, so the picture is alive."""
    path = [root]
    for layer in layers:
        weights = sitegen.path_edges(model, images[:1], [path], layer)[0, 0]
        path.append((layer, int(weights.argmax())))
    return path


def alive_unit(model, images, layer):
    with torch.no_grad():
        got = {}
        module = dict(model.named_modules())[aliases_for(model).get(layer, layer)]
        handle = module.register_forward_hook(lambda m, i, o: got.__setitem__("o", o))
        model.eval()(images)
        handle.remove()
    return int(got["o"].min(0).values.argmax())


def module_path(model, layer):
    return aliases_for(model).get(layer, layer)


@pytest.fixture(scope="module", params=CASES, ids=[f"{c[0]}-{c[1][0]}" for c in CASES])
def case(request):
    name, (root, neuron), layers, size = request.param
    torch.manual_seed(3)
    model = load_model(name, "none").module.double().eval()
    images = torch.randn(2, 3, size, size, dtype=torch.float64)
    neuron = alive_unit(model, images, root) if neuron is None else neuron
    return model, images, strongest_path(model, images, (root, neuron), layers)


@pytest.mark.parametrize("method", sorted(REFERENCE_RULES))
def test_path_pictures_match_the_reference(case, method):
    model, images, path = case
    paths = [path[:1], path[:2], path]  # of different lengths, in one call: they share every pass
    got = sitegen.visualize_paths(model, images, paths, method, batch_size=2)
    assert got.shape == (2, 3, 3, *images.shape[2:])
    for index, one in enumerate(paths):
        want = reference_visualize_path(model, images, [(module_path(model, layer), n) for layer, n in one], method)
        scale = want.abs().amax(dim=(1, 2, 3), keepdim=True)
        assert (scale > 0).all(), "a path with no gradient tests nothing"
        assert ((got[:, index] - want).abs() / scale).max() < 1e-9, (one, method)


def test_path_weights_match_the_reference(case):
    model, images, path = case
    lower = path[-1][0]
    for one in (path[:1], path[:2]):
        below = lower if len(one) < len(path) else None
        got = sitegen.path_edges(model, images, [one], below)[:, 0]
        want = reference_path_edges(model, images, [(module_path(model, layer), n) for layer, n in one],
                                    module_path(model, below))
        assert want.abs().amax() > 0
        scale = want.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
        assert ((got.double() - want).abs() / scale).max() < 1e-6, one


def test_where_a_path_gives_most_matches_the_reference(case):
    """The per-position part of a path's weight at its last layer (``maps_at``, where a tree node lies): the
    reference's activation times gradient there under the path above it, in the path's channel."""
    model, images, path = case
    modules = dict(model.named_modules())
    steps = [Step(layer, modules[module_path(model, layer)], neuron) for layer, neuron in path]
    root, last = steps[0], steps[-1]
    _, positions = activations(model, images, {root.name: root.module})[root.name]
    want = reference_path_contributions(model, images, [(module_path(model, s.name), s.neuron) for s in steps[:-1]],
                                        module_path(model, last.name))[:, last.neuron]
    assert want.abs().amax() > 0
    for n in range(images.shape[0]):
        got = gradients(model, images[n], root.name, root.module, [root.neuron], [int(positions[n, root.neuron])],
                        ["guided"], keep=keep_masks([steps]), maps_at=last.module)["maps"][0, last.neuron]
        assert ((got.double() - want[n]).abs() / want[n].abs().amax()).max() < 1e-6


def test_a_one_element_path_is_the_neurons_picture_and_edges(case):
    model, images, path = case
    (root, neuron), (lower, _) = path[0], path[1]
    assert torch.allclose(sitegen.visualize_paths(model, images, [[(root, neuron)]])[:, 0],
                          sitegen.visualize(model, images, root, [neuron])[:, 0], rtol=0, atol=1e-12)
    assert torch.allclose(sitegen.path_edges(model, images, [[(root, neuron)]], lower)[:, 0],
                          sitegen.edges(model, images, lower, root, [neuron])[:, 0], rtol=0, atol=1e-9)


def test_a_path_through_one_channel_is_part_of_the_whole():
    """The gradient is linear in what flows through a layer: summed over every channel of a layer, the paths
    through it give back the neuron's true gradient (the plain gradient's rule is linear too)."""
    torch.manual_seed(0)
    model = load_model("alexnet", "none").module.double().eval()
    images = torch.randn(1, 3, 80, 80, dtype=torch.float64)
    paths = [[("conv5", 3), ("conv4", c)] for c in range(256)]
    parts = sitegen.visualize_paths(model, images, paths, "gradient", batch_size=64)[0].sum(0)
    whole = sitegen.visualize(model, images, "conv5", [3], "gradient")[0, 0]
    assert torch.allclose(parts, whole, rtol=0, atol=1e-10 * float(whole.abs().max()))


def group_path(model, images, path):
    """The case's path with each step below the root a group: the four strongest channels under the groups
    above it."""
    grouped = [path[0]]
    for layer, _ in path[1:]:
        weights = sitegen.path_edges(model, images[:1], [grouped], layer)[0, 0]
        grouped.append((layer, sorted(int(j) for j in torch.argsort(-weights, stable=True)[:4])))
    return grouped


@pytest.mark.parametrize("method", sorted(REFERENCE_RULES))
def test_group_path_pictures_match_the_reference(case, method):
    """A group step keeps the gradient in every channel of its group: the reference writes that mask into
    the forward, one path at a time."""
    model, images, path = case
    grouped = group_path(model, images, path)
    paths = [grouped[:2], grouped, path]  # groups and single channels share passes
    got = sitegen.visualize_paths(model, images, paths, method, batch_size=2)
    for index, one in enumerate(paths):
        want = reference_visualize_path(model, images, [(module_path(model, layer), n) for layer, n in one], method)
        scale = want.abs().amax(dim=(1, 2, 3), keepdim=True)
        assert (scale > 0).all(), "a path with no gradient tests nothing"
        assert ((got[:, index] - want).abs() / scale).max() < 1e-9, (one, method)


def test_group_path_weights_match_the_reference(case):
    """The weights under a path through a group equal the reference's, which masks the group in the forward."""
    model, images, path = case
    grouped = group_path(model, images, path)
    lower = path[-1][0]
    got = sitegen.path_edges(model, images, [grouped[:2]], lower)[:, 0]
    want = reference_path_edges(model, images, [(module_path(model, layer), n) for layer, n in grouped[:2]],
                                module_path(model, lower))
    assert want.abs().amax() > 0
    scale = want.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
    assert ((got.double() - want).abs() / scale).max() < 1e-6


def test_a_group_weight_is_the_sum_of_its_members():
    """Under a group step, the weights to the layer below are the sum of the weights under each member's
    path (float64: equal to rounding)."""
    torch.manual_seed(1)
    model = load_model("resnet18", "none").module.double().eval()
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    root = ("layer4", 5)
    weights = sitegen.path_edges(model, images[:1], [[root]], "layer3")[0, 0]
    group = [int(j) for j in torch.argsort(-weights, stable=True)[:6]]
    paths = [[root, ("layer3", group)]] + [[root, ("layer3", j)] for j in group]
    got = sitegen.path_edges(model, images, paths, "layer2").double()
    together, apart = got[:, 0], got[:, 1:].sum(1)
    assert together.abs().amax() > 0
    assert ((together - apart).abs().amax(dim=1) <= 1e-5 * together.abs().amax(dim=1)).all()


def test_bad_groups_are_named():
    model = load_model("alexnet", "none").module
    images = torch.randn(1, 3, 64, 64)
    with pytest.raises(SitegenError, match="has 256 neurons.*999"):
        sitegen.path_edges(model, images, [[("conv5", 0), ("conv4", [1, 999])]], "conv3")
    with pytest.raises(SitegenError, match="empty group"):
        sitegen.visualize_paths(model, images, [[("conv5", 0), ("conv4", [])]])
    with pytest.raises(SitegenError, match="root is one neuron"):
        sitegen.visualize_paths(model, images, [[("conv5", [0, 1])]])
    numpy_steps = [("conv5", np.int64(0)), ("conv4", torch.tensor(1))]  # integers of numpy and torch are neurons
    assert sitegen.path_edges(model, images, [numpy_steps], "conv3").shape == (1, 1, 384)


def test_paths_must_go_down():
    model = load_model("alexnet", "none").module
    images = torch.randn(1, 3, 64, 64)
    with pytest.raises(SitegenError, match="is not below"):
        sitegen.visualize_paths(model, images, [[("conv2", 0), ("conv4", 1)]])
    with pytest.raises(SitegenError, match="at least its root"):
        sitegen.visualize_paths(model, images, [[]])
    with pytest.raises(SitegenError, match="is not below"):
        sitegen.path_edges(model, images, [[("conv4", 0), ("conv2", 1)]], "conv3")
