"""Feature visualization by optimization: the images, the measured check, the API and the atlas."""

import json

import pytest
import torch
from conftest import TINY_MODEL, pictures_on, write_images
from torch import nn

import sitegen
from sitegen.check import check_site
from sitegen.config import load
from sitegen.engine.optimization import FourierImage, Recipe, excitation, objective, optimize
from sitegen.errors import SitegenError
from sitegen.pipeline.runner import compute
from sitegen.store.manifest import dump


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(24, 32, 3, padding=1), nn.ReLU()).eval()


MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def test_the_objective_is_a_channels_mean_or_a_units_value():
    out = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(objective(out), out.reshape(2, 3, 4).mean(dim=2))
    flat = torch.randn(2, 5)
    assert torch.equal(objective(flat), flat)


def test_the_fourier_image_is_in_range_and_low_frequencies_dominate():
    torch.manual_seed(0)
    image = FourierImage(torch.randn(2, 3, 32, 17, 2) * 0.01, 32, 1.0)()
    assert image.shape == (2, 3, 32, 32)
    assert image.min() >= 0 and image.max() <= 1
    # white noise in the parameters: the 1/f scaling puts most of the image's energy in low frequencies
    power = torch.fft.rfft2(image - image.mean(dim=(2, 3), keepdim=True)).abs() ** 2
    assert power[..., :4, :4].sum() > power[..., 8:, 8:].sum()


def test_each_image_excites_its_own_neuron_most():
    """The measured check on a random small CNN: for >= 90 % of a layer's neurons, the optimized image
    beats every probe image and every other neuron's optimized image."""
    model = small_cnn()
    layer = "7"  # the third convolution's ReLU
    module = dict(model.named_modules())[layer]
    neurons = list(range(32))
    recipe = Recipe(steps=128, size=48, lr=0.1, pad=2, jitter=2)  # small shifts for a small image
    images = optimize(model, layer, module, neurons, MEAN, STD, recipe, seed=0)
    assert images.shape == (32, 3, 48, 48) and images.min() >= 0 and images.max() <= 1
    stored = images.mul(255).round().div(255)  # as the atlas stores them: 8 bits
    scores = excitation(model, layer, module, stored, MEAN, STD)
    own = scores.diagonal()
    others = scores.clone().fill_diagonal_(-torch.inf).amax(dim=0)
    probe = torch.tensor(write_images_tensor())
    best_probe = excitation(model, layer, module, probe, MEAN, STD).amax(dim=0)
    assert (own > best_probe).float().mean() >= 0.9
    assert (own > others).float().mean() >= 0.9


def write_images_tensor():
    """Probe images: the tests' generated photos and plain noise, 48 px, in [0, 1]."""
    import tempfile
    from pathlib import Path

    import numpy as np
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        paths = write_images(Path(folder), 24, size=(48, 48))
        images = [np.asarray(Image.open(p).convert("RGB").resize((48, 48))) for p in paths]
    noise = np.random.default_rng(1).uniform(0, 255, (24, 48, 48, 3))
    return np.concatenate([np.stack(images), noise]).transpose(0, 3, 1, 2).astype(np.float32) / 255


def test_a_neurons_image_does_not_depend_on_its_batch():
    model = small_cnn()
    module = dict(model.named_modules())["4"]
    recipe = Recipe(steps=8, size=32)
    together = optimize(model, "4", module, [3, 5, 7], MEAN, STD, recipe, seed=1)
    alone = optimize(model, "4", module, [5], MEAN, STD, recipe, seed=1)
    again = optimize(model, "4", module, [3, 5, 7], MEAN, STD, recipe, seed=1)
    other_seed = optimize(model, "4", module, [5], MEAN, STD, recipe, seed=2)
    assert torch.equal(together, again)
    assert torch.allclose(together[1], alone[0], atol=1e-4)
    assert not torch.allclose(alone, other_seed, atol=1e-2)


def test_the_model_is_left_as_it_was_given():
    model = small_cnn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sitegen.optimize(model, "1", [0, 1], steps=4, size=24)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_api_returns_images_in_range_and_names_bad_layers():
    model = small_cnn()
    images = sitegen.optimize(model, "4", [0, 2, 4], steps=4, size=40, seed=3, mean=MEAN, std=STD)
    assert images.shape == (3, 3, 40, 40)
    assert images.min() >= 0 and images.max() <= 1
    with pytest.raises(SitegenError, match="unknown layer 'conv9'"):
        sitegen.optimize(model, "conv9", [0])


CONFIG = TINY_MODEL + """[layers]
use = ["features.1", "features.4", "fc"]
[images]
featured = ["imgs/img0.png"]
probe = ["imgs"]
[compute]
top_k = 3
batch_size = 4
methods = ["guided", "optimize"]
[optimize]
layers = ["features.4", "fc"]
steps = 48
size = 32
"""


def test_an_atlas_with_optimized_images(tmp_path):
    write_images(tmp_path / "imgs", 5)
    (tmp_path / "atlas.toml").write_text(CONFIG)
    config = load(tmp_path / "atlas.toml")
    assert config.compute.methods == ("guided",)
    manifest, computed = compute(config, tmp_path / "cache", quiet=True)
    assert computed["optimized images"] == 8 + 5
    layers = {layer.name: layer for layer in manifest.layers}
    assert layers["features.1"].optimized is None
    check, records = layers["features.4"].optimized, layers["features.4"].neurons
    assert [r.neuron for r in records if r.excitation is not None] == list(range(8))
    assert check.beats_probe == sum(r.excitation.own > r.excitation.probe for r in records) / 8
    from typer.testing import CliRunner

    from sitegen.cli import app

    result = CliRunner().invoke(app, ["render", "--config", str(tmp_path / "atlas.toml"), "--cache",
                                      str(tmp_path / "cache"), "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    assert check_site(tmp_path / "site")[1] == []
    layer_page = (tmp_path / "site" / "layers" / "features.4.html").read_text()
    assert layer_page.count('aria-label="Optimized image of features.4/') == 2 * 8  # tiles and the grid
    neuron_page = (tmp_path / "site" / "layers" / "fc" / "2.html").read_text()
    assert 'id="optimized"' in neuron_page and "its value" in neuron_page
    shown = {alt: sheet for sheet, _, alt in pictures_on(tmp_path / "site", "layers/fc/2.html")}
    assert shown["Image optimized from noise to excite fc/2"] == "assets/layers/fc/2~lossless.webp"  # its own, exact
    about = (tmp_path / "site" / "about.html").read_text()
    assert "An optimized image (Olah et al." in about and 'href="layers/fc.html#optimized"' in about
    saved = json.loads((tmp_path / "site" / "manifest.json").read_text())
    assert saved["layers"][1]["optimize"]["recipe"]["steps"] == 48

    # a second build computes nothing; more steps recompute only the optimized images
    _, computed = compute(config, tmp_path / "cache", quiet=True)
    assert computed == {}
    (tmp_path / "atlas.toml").write_text(CONFIG.replace("steps = 48", "steps = 50"))
    _, computed = compute(load(tmp_path / "atlas.toml"), tmp_path / "cache", quiet=True)
    assert computed == {"optimized images": 13, "optimized image checks": 2}


@pytest.mark.parametrize("text,message", [
    ('[compute]\nmethods = ["guided"]\n[optimize]\nsteps = 10\n', 'compute.methods does not list "optimize"'),
    ('[compute]\nmethods = ["optimize"]\n', "compute.methods: list at least one of guided"),
    ('[compute]\nmethods = ["guided", "optimize"]\n[optimize]\nlayers = ["conv9"]\n',
     "optimize.layers: 'conv9' is not in layers.use"),
    ('[compute]\nmethods = ["guided", "optimize"]\n[optimize]\nsteps = 0\nsize = 8\n',
     "optimize.size: 8 is below the minimum 16"),
])
def test_optimize_config_errors(tmp_path, text, message):
    path = tmp_path / "atlas.toml"
    path.write_text(TINY_MODEL + '[layers]\nuse = ["features.1"]\n' + text)
    with pytest.raises(SitegenError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load(path)


def test_one_mapped_neuron_has_no_other_image(tmp_path):
    write_images(tmp_path / "imgs", 4)
    text = CONFIG.replace('use = ["features.1", "features.4", "fc"]',
                          'use = ["features.1", "fc"]\nneurons = { fc = [2] }')
    (tmp_path / "atlas.toml").write_text(text.replace('layers = ["features.4", "fc"]', 'layers = ["fc"]')
                                         .replace("steps = 48", "steps = 4"))
    manifest, _ = compute(load(tmp_path / "atlas.toml"), tmp_path / "cache", quiet=True)
    layer = manifest.layers[1]
    assert layer.optimized.specific is None and layer.neurons[0].excitation.other is None
    json.dumps(dump(manifest), allow_nan=False)  # the manifests stay strict JSON
