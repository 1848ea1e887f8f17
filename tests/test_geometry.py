"""Receptive fields from the layers' geometry, checked by hand and against gradient support."""

import torch
from torch import nn

from sitegen.engine.geometry import Geometry, mass_sides, receptive_fields
from sitegen.model.registry import load_model


def _geometry(model, paths, size):
    modules = dict(model.named_modules())
    return receptive_fields(model, {p: modules[p] for p in paths}, (size, size))


def test_alexnet_receptive_fields_by_hand():
    model = load_model("alexnet", "none").module
    geo = _geometry(model, ["features.1", "features.4", "features.11", "classifier.6"], 224)
    # conv1: 11x11 kernel, stride 4, padding 2
    assert geo["features.1"] == Geometry((4, 4), (-2, -2), (8, 8))
    # maxpool 3/2 then conv 5x5 padding 2: 11 + 2*4 + 4*8 = 51
    assert geo["features.4"].size == (51, 51)
    assert geo["features.4"].jump == (8, 8)
    assert geo["features.11"].size == (163, 163)  # the published conv5 receptive field
    assert geo["classifier.6"].whole


def test_box_is_clipped_only_where_larger_than_the_image():
    geo = Geometry((4, 4), (-2, -2), (8, 8))
    assert geo.box(0, 0, 64, 64) == (-2, -2, 8, 8)  # leaves the image: grey there
    assert geo.box(3, 5, 64, 64) == (10, 18, 20, 28)
    big = Geometry((16, 16), (-66, -66), (96, 96))
    assert big.box(0, 0, 64, 64) == (0, 0, 63, 63)


def test_the_effective_side_holds_the_share_of_the_mass():
    grads = torch.zeros(4, 3, 50, 60)
    grads[0, 0, 20:31, 30:41] = 1  # an 11 x 11 square around (25, 35)
    grads[1, :, 10, 10] = 1  # a point ...
    grads[1, 0, 10, 14] = 0.2  # ... and a little mass beside it: 6 % of the whole
    grads[2, 1] = 1  # everywhere: 90 % of 50 rows x 60 columns needs a 55 px square around (25, 30)
    grads[3, 2, 0, 0] = -1  # at a corner, the square reaches past the image
    assert mass_sides(grads, [(25, 35), (10, 10), (25, 30), (0, 0)]) == [11, 1, 55, 1]
    assert mass_sides(grads[1:2], [(10, 10)], share=0.99) == [9]  # 99 %: the beside too


def test_a_position_s_centre():
    geo = Geometry((4, 4), (-2, -2), (8, 8))
    assert geo.centre(0, 0) == (3, 3) and geo.centre(2, 5) == (11, 23)


def _support(model, module, size, channel=0):
    """Pixels where the gradient of the centre position is non-zero, for a random input."""
    x = torch.randn(1, 3, size, size, requires_grad=True)
    got = {}
    handle = module.register_forward_hook(lambda m, i, o: got.__setitem__("o", o))
    model(x)
    handle.remove()
    out = got["o"]
    i, j = out.shape[2] // 2, out.shape[3] // 2
    # a linear probe: the output's value at (i, j), summed over channels
    (grad,) = torch.autograd.grad(out[0, :, i, j].sum(), x)
    nz = grad.abs().sum(1)[0].nonzero()
    return (i, j), (int(nz[:, 0].min()), int(nz[:, 1].min()), int(nz[:, 0].max()), int(nz[:, 1].max()))


def test_gradient_support_fits_the_box():
    torch.manual_seed(0)
    cases = [("alexnet", "features.0", 96), ("alexnet", "features.3", 96), ("resnet18", "layer1", 96),
             ("efficientnet_lite0", "_blocks.4", 224),
             ("timm:convnext_atto", "stages.1", 160)]  # norm and MLP on a channels-last map, between permutes
    for name, path, size in cases:
        model = load_model(name, "none").module.eval()
        # linearise: the support of a purely linear network is the whole receptive field
        for parent in model.modules():
            for child_name, child in parent.named_children():
                if isinstance(child, (nn.ReLU, nn.ReLU6)):
                    setattr(parent, child_name, nn.Identity())
        if name == "efficientnet_lite0":
            for block in model._blocks:
                block._swish = nn.Identity()
            model._swish = nn.Identity()
        geo = _geometry(model, [path], size)[path]
        (i, j), support = _support(model, dict(model.named_modules())[path], size)
        top, left, bottom, right = geo.box(i, j, size, size)
        clipped = (max(top, 0), max(left, 0), min(bottom, size - 1), min(right, size - 1))
        assert support == clipped, (name, path, support, clipped)
