from pathlib import Path

import pytest

from sitegen.config import load, parse
from sitegen.errors import SitegenError

GOOD = """
title = "T"
[model]
name = "alexnet"
weights = "none"
[layers]
use = ["conv1", "conv5"]
[images]
featured = ["a.png"]
probe = ["imgs"]
[compute]
top_k = 4
"""


def test_good_config_is_typed_and_defaulted(tmp_path):
    config = parse(GOOD, tmp_path / "atlas.toml")
    assert config.title == "T"
    assert config.layers.use == ("conv1", "conv5")
    assert config.compute.top_k == 4
    assert config.compute.methods == ("guided", "deconv", "gradient")
    assert config.compute.device == "auto"
    assert config.images.probe_zooms == (1.0,)
    assert config.root == tmp_path.resolve()


def test_weights_path_is_relative_to_the_config(tmp_path):
    config = parse(GOOD.replace('weights = "none"', 'weights = "w/model.pth"'), tmp_path / "atlas.toml")
    assert config.weights_path() == str((tmp_path / "w" / "model.pth").resolve())


def test_every_error_is_reported_at_once_with_its_key(tmp_path):
    text = """
titel = "typo"
[model]
name = 3
[layers]
use = []
[images]
probe_zooms = [1.5]
[compute]
top_k = 0
methods = ["guided", "lrp"]
devcie = "cpu"
batch_size = "big"
[site]
quality = 120
"""
    with pytest.raises(SitegenError) as info:
        parse(text, tmp_path / "atlas.toml")
    message = str(info.value)
    for expected in ["titel: unknown key; did you mean 'title'?",
                     "model.name: expected a string",
                     "layers.use: list at least one layer",
                     "images.probe_zooms: 1.5 is not in (0, 1]",
                     "compute.top_k: 0 is below the minimum 1",
                     "compute.methods: 'lrp' is not one of",
                     "compute.devcie: unknown key; did you mean 'device'?",
                     "compute.batch_size: expected an integer",
                     "site.quality: 120 is above the maximum 100"]:
        assert expected in message
    assert "9 problem(s)" in message


def test_missing_layers_and_bad_toml(tmp_path):
    with pytest.raises(SitegenError, match="layers.use: required"):
        parse("[model]\nname='alexnet'\n", tmp_path / "a.toml")
    with pytest.raises(SitegenError, match="not valid TOML"):
        parse("[model\n", tmp_path / "a.toml")
    with pytest.raises(SitegenError, match="does not exist"):
        load(tmp_path / "missing.toml")


def test_credits_are_checked(tmp_path):
    text = GOOD + '\n[[credits]]\nfiles = ["a.png"]\nlicence = "CC0"\n'
    with pytest.raises(SitegenError) as info:
        parse(text, tmp_path / "a.toml")
    assert "credits[0].license: required" in str(info.value)
    assert "credits[0].licence: unknown key; did you mean 'license'?" in str(info.value)


def test_default_config_is_valid():
    config = load(Path(__file__).parent.parent / "content" / "atlas.toml")
    assert config.model.name == "efficientnet_lite0"
    assert config.images.featured[0] == "images/chelsea.png"


def with_layers(lines: str) -> str:
    """The good config with more lines in its [layers] table."""
    return GOOD.replace('use = ["conv1", "conv5"]', 'use = ["conv1", "conv5"]\n' + lines)


def problems(text: str, tmp_path: Path) -> str:
    with pytest.raises(SitegenError) as info:
        parse(text, tmp_path / "atlas.toml")
    return str(info.value)


def test_methods_per_layer_and_the_featured_images_in_the_probe_set(tmp_path):
    config = parse(with_layers('methods = { conv5 = ["gradient"] }'), tmp_path / "atlas.toml")
    assert config.layers.methods == {"conv1": ("guided", "deconv", "gradient"), "conv5": ("gradient",)}
    assert config.images.featured_in_probe is False  # featured images are not probe images by default
    message = problems(with_layers('methods = { conv9 = ["guided"], conv1 = ["lrp"], conv5 = [] }'), tmp_path)
    assert "layers.methods.conv9: 'conv9' is not in layers.use" in message
    assert "layers.methods.conv1: expected a list of guided, deconv, gradient, smoothgrad, got ['lrp']" in message
    assert "layers.methods.conv5: expected a list" in message


def test_patches_per_layer_are_a_method_s_pictures_or_maps(tmp_path):
    config = parse(with_layers('patches = { conv5 = "map", conv1 = "smoothgrad" }'), tmp_path / "atlas.toml")
    assert config.layers.patches == {"conv5": "map", "conv1": "smoothgrad"}
    message = problems(with_layers('patches = { conv9 = "map", conv1 = "lrp" }'), tmp_path)
    assert "layers.patches.conv9: 'conv9' is not in layers.use" in message
    assert "layers.patches.conv1: expected one of guided, deconv, gradient, smoothgrad, map, got 'lrp'" in message
