"""Every method against the independent one-neuron-at-a-time reference (tests/reference.py)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from reference import reference_smoothgrad, reference_visualize
from torch import nn

import sitegen
from sitegen.engine.pictures import display
from sitegen.errors import SitegenError
from sitegen.images import encode
from sitegen.methods import RULE_METHODS
from sitegen.model.registry import load_model

CASES = [
    # model, layer (alias or path), module path, input size, neurons
    ("alexnet", "conv2", "features.4", 80, [0, 7, 100]),
    ("alexnet", "conv5", "features.11", 80, [1, 200]),
    ("alexnet", "fc7", "classifier.5", 80, None),  # None: the first units alive on both images
    ("vgg11", "features.12", "features.12", 64, [0, 255]),
    ("resnet18", "layer2", "layer2", 64, [5, 90]),  # in-place ReLU module called twice per block
    ("resnet18", "layer4.1.conv1", "layer4.1.conv1", 64, [2]),
    ("efficientnet_lite0", "block4", "_blocks.4", 96, [0, 39]),  # shared ReLU6 module
    ("efficientnet_lite0", "logits", "_fc", 64, [281, 7]),
    ("timm:resnet10t", "stage3", "layer2", 64, [0, 90]),  # timm's ResNet: its feature stages as aliases
    ("timm:convnext_atto", "stage2.block1", "stages.1.blocks.1", 64, [3, 60]),  # GELU keeps its true gradient
]


@pytest.mark.parametrize("name,layer,path,size,neurons", CASES)
def test_methods_match_the_reference(name, layer, path, size, neurons):
    # float64: in float32 a batch of copies and a single image may round a value near a ReLU's
    # threshold differently, flipping one mask entry; that is float noise, not a difference of method
    torch.manual_seed(1)
    model = load_model(name, "none").module.double()
    images = torch.randn(2, 3, size, size, dtype=torch.float64)
    if neurons is None:
        neurons = alive(model, images, path)[:3]
    for method in RULE_METHODS:
        got = sitegen.visualize(model, images, layer, neurons, method, batch_size=2)
        want = reference_visualize(model, images, path, neurons, method)
        assert got.shape == (2, len(neurons), 3, size, size)
        scale = want.abs().amax(dim=(2, 3, 4), keepdim=True)
        assert (scale > 0).all(), "a neuron with no gradient tests nothing"
        error = ((got - want).abs() / scale).max().item()
        assert error < 1e-9, (name, layer, method, error)


def alive(model, images, path):
    got = {}
    handle = dict(model.named_modules())[path].register_forward_hook(lambda m, i, o: got.__setitem__("o", o))
    with torch.no_grad():
        model.eval()(images)
    handle.remove()
    return (got["o"] > 0).all(0).nonzero()[:, 0].tolist()


def test_methods_differ_where_they_should():
    torch.manual_seed(0)
    model = load_model("alexnet", "none").module
    images = torch.randn(1, 3, 80, 80)
    guided = sitegen.visualize(model, images, "conv5", [3], "guided")
    deconv = sitegen.visualize(model, images, "conv5", [3], "deconv")
    gradient = sitegen.visualize(model, images, "conv5", [3], "gradient")
    assert not torch.allclose(guided, gradient)
    assert not torch.allclose(deconv, gradient)


def test_the_model_is_left_as_given():
    torch.manual_seed(0)
    model = load_model("resnet18", "none").module.train()
    model.layer1.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    sitegen.visualize(model, torch.randn(1, 3, 64, 64), "layer3", [0, 1], "guided")
    assert model.training and all(m.training for m in model.modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_functional_and_inplace_relus_are_handled():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 5, 3, padding=1)

        def forward(self, x):
            x = torch.relu_(self.a(x))
            x = self.b(x)
            x.relu_()
            return x

    class Reference(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.a, self.b = net.a, net.b
            self.r1, self.r2 = nn.ReLU(), nn.ReLU()

        def forward(self, x):
            return self.r2(self.b(self.r1(self.a(x))))

    torch.manual_seed(0)
    net = Net().eval()
    images = torch.randn(2, 3, 12, 12)
    for method in RULE_METHODS:
        got = sitegen.visualize(net, images, "b", [0, 4], method)
        want = reference_visualize(Reference(net), images, "b", [0, 4], method)
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-4)


def test_each_picture_is_shown_on_its_own_scale():
    rng = np.random.default_rng(0)
    grads = torch.zeros(4, 3, 30, 30, dtype=torch.float64)
    grads[0] = torch.from_numpy(rng.standard_normal((3, 30, 30)))
    grads[1] = grads[0] * 1000  # the same picture, a thousand times stronger
    grads[3, :, 10:20, 10:20] = grads[0, :, 10:20, 10:20]  # zero outside a box: the zeros set no scale
    pics, scales = display(grads)
    assert pics.shape == (4, 30, 30, 3) and pics.dtype == np.uint8
    assert np.array_equal(pics[0], pics[1]) and scales[1] == pytest.approx(1000 * scales[0])
    assert (pics[2] == 128).all() and scales[2] == 0  # nothing: all grey
    box = grads[3, :, 10:20, 10:20].abs().numpy()
    assert scales[3] == pytest.approx(np.percentile(box, 99.5))  # over its support only
    assert (pics[3][:10] == 128).all()  # zero stays mid-grey
    clipped = int((grads[0].abs() > scales[0]).sum())
    assert 0 < clipped <= 0.005 * grads[0].numel() + 1  # at most 0.5 % of the values clip (one more, rounding)
    assert (np.abs(pics[0].astype(int) - 128) > 16).mean() > 0.5  # and the rest is seen


def test_stored_pictures_are_exact_and_their_lossy_sheet_keeps_grey_and_detail():
    from sitegen.site.sheets import Member, Packer, compose, shape

    yy, xx = np.mgrid[0:100, 0:100]
    smooth = (128 + 120 * np.sin(xx / 4.0)[..., None] * np.array([1.0, -0.5, 0.3])).round().astype(np.uint8)
    smooth[:30] = 128  # zero: mid-grey
    data = encode(smooth, "picture")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), smooth)  # the cache: exact
    pic = Packer(lambda *_: shape(data)).add("assets/layers/conv/0", Member("pictures", "k", "0.webp"))
    assert not pic.sheet.lossless  # larger than SMALL: shown lossy
    sheet = np.asarray(Image.open(io.BytesIO(compose(pic.sheet, lambda member: data))).convert("RGB")).astype(int)
    shown = sheet[pic.y:pic.y + pic.height, pic.x:pic.x + pic.width]
    assert (shown[:22] == 128).all()  # grey stays exactly grey, a few pixels away from any detail
    assert np.abs(shown - smooth).mean() < 3  # lossy, within a few levels of the picture


def test_bad_arguments_are_named():
    model = load_model("alexnet", "none").module
    with pytest.raises(SitegenError, match="unknown layer 'conv9'"):
        sitegen.visualize(model, torch.zeros(1, 3, 64, 64), "conv9", [0], "guided")
    with pytest.raises(SitegenError, match="unknown method"):
        sitegen.visualize(model, torch.zeros(1, 3, 64, 64), "conv1", [0], "lrp")


@pytest.mark.parametrize("name,path,size", [("efficientnet_lite0", "_blocks.4", 128), ("alexnet", "features.4", 128),
                                            ("resnet18", "layer2", 128), ("vgg11", "features.7", 64),
                                            ("timm:convnext_atto", "stages.1", 160)])
def test_receptive_field_crops_give_the_whole_image_numbers(name, path, size):
    from sitegen.engine.geometry import receptive_fields
    from sitegen.engine.passes import crops_are_exact, gradients

    torch.manual_seed(0)
    model = load_model(name, "none").module.double().eval()
    module = dict(model.named_modules())[path]
    geometry = receptive_fields(model, {path: module}, (size, size))[path]
    image = torch.randn(3, size, size, dtype=torch.float64)
    got = {}
    handle = module.register_forward_hook(lambda m, i, o: got.__setitem__("o", o))
    with torch.no_grad():
        model(image[None])
    handle.remove()
    out = got["o"][0]
    height, width = out.shape[1:]
    # corners, edges and the centre: crops cut by the image's borders and crops inside it;
    # at each, the channel most active there, so that its gradient is not zero
    positions = [0, width - 1, (height - 1) * width, height * width - 1, (height // 2) * width + width // 2,
                 width // 2]
    neurons = [int(out.reshape(out.shape[0], -1)[:, p].argmax()) for p in positions]
    full = gradients(model, image, path, module, neurons, positions, ["guided", "gradient"])
    for common in (False, True):  # each neuron's own crop; all grown to one shape (as on a GPU)
        crop = gradients(model, image, path, module, neurons, positions, ["guided", "gradient"],
                         geometry=geometry, out_width=width, common=common)
        for method in full:
            scale = full[method].abs().amax(dim=(1, 2, 3))
            assert (scale > 0).all()
            assert ((full[method] - crop[method]).abs().amax(dim=(1, 2, 3)) <= 1e-9 * scale).all()
    assert crops_are_exact(model, image, path, module, geometry)


def test_crops_are_refused_where_padding_depends_on_the_input_size():
    from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding

    from sitegen.engine.geometry import receptive_fields
    from sitegen.engine.passes import crops_are_exact

    torch.manual_seed(0)
    # TensorFlow-style 'same' padding computed per call: a crop of odd size is padded on the left too
    model = nn.Sequential(Conv2dDynamicSamePadding(3, 4, 3, stride=2), nn.ReLU(),
                          Conv2dDynamicSamePadding(4, 4, 3, stride=2), nn.ReLU()).double().eval()
    image = torch.randn(3, 64, 64, dtype=torch.float64)
    geometry = receptive_fields(model, {"3": model[3]}, (64, 64))["3"]
    assert not geometry.whole
    assert not crops_are_exact(model, image, "3", model[3], geometry)


class _HostScale(torch.autograd.Function):
    """Doubles its input; its backward goes through numpy, which a batched (vmap) backward cannot do."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return torch.from_numpy(grad.detach().numpy() * 2)


class _HostNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 14 * 14, 6)

    def forward(self, x):
        return self.fc(self.relu(_HostScale.apply(self.conv(x))).flatten(1))


def test_whole_image_neurons_run_one_after_another_where_the_backward_cannot_run_batched():
    from sitegen.engine import seeded

    torch.manual_seed(0)
    model = _HostNet().double()
    images = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    for method in ("guided", "gradient"):
        got = sitegen.visualize(model, images, "fc", range(6), method)
        want = reference_visualize(model, images, "fc", list(range(6)), method)
        assert seeded.looped(model, "fc") is True  # the batched backward failed and is not tried again
        assert want.abs().amax() > 0
        assert torch.allclose(got, want, atol=1e-10)


def test_a_layer_that_ran_batched_falls_back_where_a_deeper_pass_cannot():
    """Edges stop at the lower layer, above the operation without a batched backward, so they may run
    batched; a picture's pass of the same layer goes through it and must fall back."""
    from reference import reference_edges

    from sitegen.engine import seeded

    torch.manual_seed(0)
    model = _HostNet().double()
    images = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    seeded._LOOPED[model] = {"fc": False}  # as if the edges' first call had timed the batched pass faster
    edges = sitegen.edges(model, images, "relu", "fc", range(6))
    assert torch.allclose(edges.double(), reference_edges(model, images, "relu", "fc", list(range(6))), atol=1e-10)
    assert seeded.looped(model, "fc") is False  # the edges ran batched
    got = sitegen.visualize(model, images, "fc", range(6), "guided")
    assert torch.allclose(got, reference_visualize(model, images, "fc", list(range(6)), "guided"), atol=1e-10)
    assert seeded.looped(model, "fc") is True


@pytest.mark.parametrize("looped", [True, False])
def test_whole_image_neurons_give_the_reference_s_numbers_batched_or_one_after_another(looped):
    """engine/seeded.py times both ways once per layer and keeps the faster: each must give the numbers."""
    from reference import reference_edges

    from sitegen.engine import seeded

    torch.manual_seed(0)
    model = load_model("efficientnet_lite0", "none").module.double().eval()
    images = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    seeded._LOOPED[model] = {"_blocks.15": looped}
    neurons = [0, 5, 300]
    got = sitegen.visualize(model, images, "block15", neurons, "guided", batch_size=2)
    assert torch.allclose(got, reference_visualize(model, images, "_blocks.15", neurons, "guided"), atol=1e-10)
    # SmoothGrad: two forward passes of noisy copies (2 and 1), each with two backward chunks of seeds (2 and 1)
    got = sitegen.visualize(model, images, "block15", neurons, "smoothgrad", batch_size=2, samples=3, seed=4)
    want = reference_smoothgrad(model, images, "_blocks.15", neurons, samples=3, noise=0.15, seed=4)
    assert want.abs().amax() > 0 and torch.allclose(got, want, atol=1e-10 * float(want.abs().amax()))
    got = sitegen.edges(model, images, "block10", "block15", neurons, batch_size=2)
    want = reference_edges(model, images, "_blocks.10", "_blocks.15", neurons)
    assert want.abs().amax() > 0 and torch.allclose(got.double(), want, atol=1e-6 * float(want.abs().amax()))
    assert seeded.looped(model, "_blocks.15") is looped


@pytest.mark.parametrize("name,layer,path,size,neurons", [
    ("alexnet", "conv2", "features.4", 80, None),  # receptive-field crops of the noisy copies
    ("resnet18", "layer2", "layer2", 64, [5]),
    ("alexnet", "fc7", "classifier.5", 64, None),  # whole-image neurons: one forward of each noisy copy
])
def test_smoothgrad_matches_the_reference_with_the_same_noise(name, layer, path, size, neurons):
    torch.manual_seed(2)
    model = load_model(name, "none").module.double()
    images = torch.randn(2, 3, size, size, dtype=torch.float64)
    if neurons is None:
        neurons = alive(model, images, path)[:2]
    got = sitegen.visualize(model, images, layer, neurons, "smoothgrad", batch_size=2, samples=3, noise=0.2, seed=5)
    want = reference_smoothgrad(model, images, path, neurons, samples=3, noise=0.2, seed=5)
    scale = want.abs().amax(dim=(2, 3, 4), keepdim=True)
    assert (scale > 0).all()
    assert ((got - want).abs() / scale).max().item() < 1e-9
    plain = sitegen.visualize(model, images, layer, neurons, "gradient", batch_size=2)
    assert not torch.allclose(got, plain)  # the noise is there
    same = sitegen.visualize(model, images, layer, neurons, "smoothgrad", batch_size=2, samples=1, noise=0.0)
    assert torch.allclose(same, plain, rtol=0, atol=1e-12)  # no noise, one sample: the gradient
