"""Cases found in review: in-place functions after a captured layer, branches in geometry,
torchvision's own preprocessing, and what the site writer may delete."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sitegen.engine.geometry import receptive_fields
from sitegen.engine.passes import activations
from sitegen.images import View, unique_slugs, view_pixels
from sitegen.model.registry import load_model
from sitegen.render import RECORD, Writer


def test_activations_are_copied_before_later_in_place_functions():
    torch.manual_seed(0)
    model = load_model("alexnet", "none").module
    modules = dict(model.named_modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        modules["features.0"].bias[0] = -100.0  # channel 0 is negative everywhere before its ReLU
    alone = activations(model, x, {"features.0": modules["features.0"]})["features.0"]
    # features.1 is an in-place ReLU that rewrites features.0's output once the forward goes on
    together = activations(model, x, {"features.0": modules["features.0"],
                                      "features.11": modules["features.11"]})["features.0"]
    assert (alone[0][:, 0] < 0).all()
    assert torch.equal(alone[0], together[0]) and torch.equal(alone[1], together[1])


class Branches(nn.Module):
    def __init__(self):
        super().__init__()
        self.wide = nn.Conv2d(2, 2, 5, padding=2)
        self.up = nn.ConvTranspose2d(2, 2, 5, padding=2)
        self.out = nn.Identity()

    def forward(self, x):
        a, b = x[:, :2], x[:, 1:]
        left, right = torch.chunk(torch.cat([a, b], 1), 2, dim=1)
        return self.out(torch.cat([self.wide(left), self.up(right)], 1))


def test_geometry_follows_every_output_and_treats_transposed_convolutions_as_mixing():
    model = Branches()
    geo = receptive_fields(model, {"wide": model.wide, "out": model.out}, (32, 32))
    assert geo["wide"].size == (5, 5)  # the second chunk's branch keeps its geometry
    assert geo["out"].whole  # the transposed convolution is not treated as element-wise


def test_preprocessing_matches_torchvisions_transform():
    from torchvision.models import AlexNet_Weights

    loaded = load_model("alexnet", "none")
    p = loaded.preprocess
    rng = np.random.default_rng(0)
    for size in [(451, 300), (300, 451), (500, 333), (257, 256)]:
        image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        ours = torch.from_numpy(view_pixels(image, View(), p.resize, p.crop, p.interpolation))
        ours = (ours.permute(2, 0, 1).float() / 255 - torch.tensor(p.mean).view(3, 1, 1)) / torch.tensor(
            p.std).view(3, 1, 1)
        theirs = AlexNet_Weights.IMAGENET1K_V1.transforms()(image)
        assert (ours - theirs).abs().max() < 1e-5, size


def test_the_writer_deletes_only_inside_its_folder(tmp_path):
    out = tmp_path / "site"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / "old.html").write_text("old")
    (out / RECORD).write_text(f"old.html\n../victim.txt\n{victim}\n")
    writer = Writer(out)
    writer.write("index.html", b"new")
    assert writer.finish() == 1
    assert victim.read_text() == "keep" and not (out / "old.html").exists()


def test_featured_slugs_stay_unique():
    assert unique_slugs(["a.png", "b/a.jpg", "a-2.png", "A.PNG"]) == ["a", "a-2", "a-2-2", "a-3"]


def test_a_layer_listed_twice_under_two_names_is_refused(tmp_path):
    from sitegen.config import parse
    from sitegen.errors import SitegenError
    from sitegen.model.layers import resolve_layers
    from sitegen.model.registry import load_configured_model

    config = parse('[model]\nname = "alexnet"\nweights = "none"\n[layers]\nuse = ["conv1", "features.1"]\n',
                   tmp_path / "a.toml")
    with pytest.raises(SitegenError, match="already listed"):
        resolve_layers(config, load_configured_model(config))
