"""What edge weights add to the cost of the default atlas, measured in one run.

For each default layer that has a layer below it, times the two kinds of
gradient calls the pipeline makes, with and without the lower layer's edge
weights: the featured-image call (three methods; the edges ride on the
gradient pass) and the top-patch call (guided only; the edges need one more
backward pass).  Prints the ratios.  Run: .venv/bin/python bench/edges.py
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from sitegen.config import load
from sitegen.engine.passes import crops_are_exact, gradients
from sitegen.pipeline.workspace import Workspace
from sitegen.store.cache import Cache

NEURONS = 16


def best_of(repeats: int, call) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    config = load(Path(__file__).parent.parent / "content" / "atlas.toml")
    with tempfile.TemporaryDirectory() as cache, Workspace.open(config, Cache(cache), quiet=True) as ws:
        measure(ws)


def measure(ws: Workspace) -> None:
    config, model, layers, modules = ws.config, ws.model.module, ws.layers, ws.modules
    x = ws.tensor([ws.pixels(ws.featured[0])])[0]
    print(f"{'layer':<8} {'featured, 3 methods':>22} {'top patch, guided':>20}   (seconds for {NEURONS} neurons)")
    print(f"{'':<8} {'plain':>7} {'+edges':>7} {'ratio':>6} {'plain':>6} {'+edges':>7} {'ratio':>6}")
    for layer in layers[1:]:
        neurons = list(range(min(NEURONS, layer.count)))
        exact = crops_are_exact(model, x, layer.path, modules[layer.path], layer.geometry)
        geometry = layer.geometry if exact else None
        positions = [0] * len(neurons)
        args = (model, x, layer.path, modules[layer.path], neurons, positions)
        options = dict(batch_size=config.compute.batch_size, geometry=geometry, out_width=layer.width)
        lower = modules[layer.lower.path]
        methods = list(config.compute.methods)
        featured_plain = best_of(2, partial(gradients, *args, methods, **options))
        featured_edges = best_of(2, partial(gradients, *args, methods, lower=lower, **options))
        patch_plain = best_of(2, partial(gradients, *args, ["guided"], **options))
        patch_edges = best_of(2, partial(gradients, *args, ["guided"], lower=lower, **options))
        print(f"{layer.name:<8} {featured_plain:7.2f} {featured_edges:7.2f} {featured_edges / featured_plain:6.2f} "
              f"{patch_plain:6.2f} {patch_edges:7.2f} {patch_edges / patch_plain:6.2f}")


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
