"""What "What it does" costs per layer of the default atlas: the first-order effects of every channel on the
candidate classes, and the exact effects (each channel zeroed) on its 3 strongest, over the probe set.

The default atlas computes them for block 15 only (`[effects] layers`); this prints, per block layer, the
seconds each part takes on this machine (engine/effects.py, one layer at a time, the probe views in the
atlas's batches), and then the first-order effects of all of them in one backward pass per view and class,
as the effects stage computes them for the layers it lists, so that a user can see what listing more
layers adds to a build.  Run: .venv/bin/python bench/effects.py [LAYER ...]   (default: blocks 2, 4, 7, 10 and 15)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from sitegen.config import load
from sitegen.engine.effects import ablation, first_order
from sitegen.pipeline.stages.effects import candidate_classes
from sitegen.pipeline.workspace import Workspace
from sitegen.store.cache import Cache

EXACT = 3  # classes per channel, as the default atlas's [effects] exact


def main(names: list[str]) -> None:
    config = load(Path(__file__).parent.parent / "content" / "atlas.toml")
    with tempfile.TemporaryDirectory() as cache, Workspace.open(config, Cache(cache), quiet=True) as ws:
        classes = candidate_classes(ws)
        batches = [ws.normalise(pixels) for pixels in ws.loader(list(ws.probe))]
        print(f"{len(ws.probe)} probe views, {len(classes)} candidate classes, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")
        print(f"{'layer':<8} {'channels':>8} {'first-order s':>14} {'ablations s':>12}")
        totals = [0.0, 0.0]
        for layer in (layer for name in names for layer in ws.layers if layer.name == name):
            module = ws.modules[layer.path]
            start = time.perf_counter()
            first = sum(first_order(ws.model.module, x, {layer.path: module}, classes)[layer.path].cpu()
                        for x in batches)
            middle = time.perf_counter()
            units = list(range(layer.count))
            chosen = [[classes[k] for k in first[:, n].argsort(descending=True)[:EXACT].tolist()] for n in units]
            for x in batches:
                ablation(ws.model.module, x, module, units, chosen, config.compute.batch_size)
            end = time.perf_counter()
            totals[0] += middle - start
            totals[1] += end - middle
            print(f"{layer.name:<8} {layer.count:>8} {middle - start:>14.1f} {end - middle:>12.1f}")
        print(f"{'all':<8} {'':>8} {totals[0]:>14.1f} {totals[1]:>12.1f}")
        modules = {layer.path: ws.modules[layer.path] for layer in ws.layers if layer.name in names}
        start = time.perf_counter()
        for x in batches:
            first_order(ws.model.module, x, modules, classes)
        one = time.perf_counter() - start
        print(f"first-order of all {len(modules)} in one backward pass per view and class (as the atlas computes "
              f"them): {one:.1f} s, {totals[0] / one:.2f}x faster than one layer at a time")


if __name__ == "__main__":
    main(sys.argv[1:] or ["block2", "block4", "block7", "block10", "block15"])
