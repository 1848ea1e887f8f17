"""The cascading randomization check of the default model (Adebayo et al., 2018), every method, in one run.

For the top predicted class of each of the default atlas's featured photos, each method's picture of the
class logit is made under the trained model and under the model re-initialised cumulatively from the top
down: the logits' own block (the head), then also block 15's (blocks 11-15), block 10's, block 7's and
block 4's, each module by its own initialiser with sitegen's fixed seed.  The table gives, per method and
stage, the median over the photos of the Spearman rank correlation of |picture| (summed over colours) with
the trained model's picture, over the whole image (a class sees all of it).  Near 1: the picture does not
depend on the weights that were re-initialised.  The same per layer (each layer's own block alone, on up
to 16 of its neurons) is what the atlas shows on its pages.  Run: .venv/bin/python bench/sanity.py
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

import sitegen
from sitegen.engine.sanity import reinitialised, spearman
from sitegen.images import View, load_rgb, view_pixels
from sitegen.model.layers import own_block
from sitegen.model.registry import load_model
from sitegen.pipeline.stages.sanity import SEED

PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png"]
METHODS = ["guided", "deconv", "gradient", "smoothgrad"]
# each stage re-initialises this layer's own block too (from the configured layer below it), on top of the last
STAGES = [("logits", "_fc", "_blocks.15"), ("block15", "_blocks.15", "_blocks.10"),
          ("block10", "_blocks.10", "_blocks.7"), ("block7", "_blocks.7", "_blocks.4"),
          ("block4", "_blocks.4", "_blocks.2")]


def main() -> None:
    loaded = load_model("efficientnet_lite0", "default")
    p = loaded.preprocess
    content = Path(__file__).resolve().parent.parent / "content" / "images"
    pixels = np.stack([view_pixels(load_rgb(content / name), View(), p.resize, p.crop, p.interpolation)
                       for name in PHOTOS])
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(p.mean).view(1, 3, 1, 1)) / torch.tensor(p.std).view(1, 3, 1, 1)
    with torch.no_grad():
        classes = loaded.module(x).argmax(dim=1).tolist()
    print("top classes:", ", ".join(f"{name} {loaded.categories[c]}" for name, c in zip(PHOTOS, classes)))

    def pictures(model) -> dict[str, list[torch.Tensor]]:
        return {m: [sitegen.visualize(model, x[i:i + 1], "_fc", [c], m)[0, 0] for i, c in enumerate(classes)]
                for m in METHODS}

    started = time.perf_counter()
    trained = pictures(loaded.module)
    rows, paths = [], []
    for name, path, lower in STAGES:
        paths += own_block(loaded, path, lower)
        other = pictures(reinitialised(loaded.module, paths, SEED))
        rows.append((name, {m: statistics.median(spearman(a.abs().sum(0), b.abs().sum(0))
                                                 for a, b in zip(trained[m], other[m])) for m in METHODS}))
    print("\nre-initialised from ... up  " + "  ".join(f"{m:>10}" for m in METHODS))
    for name, figures in rows:
        print(f"{name:<26}  " + "  ".join(f"{figures[m]:>10.2f}" for m in METHODS))
    print(f"\n{len(STAGES) + 1} models x {len(PHOTOS)} photos x {len(METHODS)} methods in "
          f"{time.perf_counter() - started:.0f} s (SmoothGrad: 16 noisy copies, noise 0.15)")


if __name__ == "__main__":
    main()
