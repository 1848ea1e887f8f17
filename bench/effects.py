"""What "What it does" costs per layer of the default atlas: the first-order effects of every channel on the
candidate classes, and the exact effects (each channel zeroed) on its 3 strongest, over the probe set.

Per block layer, the seconds each part takes on this machine (engine/effects.py, one layer at a time, the
probe views in the atlas's batches): the first-order effects with each class's backward pass run for the
batch's views at once, as the atlas runs it, and for one view at a time (the ratio is what the batch gains),
and the ablations, with the copies per pass that engine/effects.py timed fastest (and the seconds per copy
it measured for each size it tried).  Then the first-order effects of all of them in one backward pass per
batch and class, as the effects stage computes them for the layers it lists.
Run: .venv/bin/python bench/effects.py [LAYER ...]   (default: blocks 2, 4, 7, 10 and 15)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from sitegen.config import load
from sitegen.engine.effects import _COPIES, ablation, first_order
from sitegen.pipeline.stages.effects import candidate_classes
from sitegen.pipeline.workspace import Workspace
from sitegen.store.cache import Cache

EXACT = 3  # classes per channel, as the default atlas's [effects] exact


def main(names: list[str]) -> None:
    config = load(Path(__file__).parent.parent / "content" / "atlas.toml")
    with tempfile.TemporaryDirectory() as cache, Workspace.open(config, Cache(cache), quiet=True) as ws:
        classes, size = candidate_classes(ws), config.compute.batch_size
        batches = [ws.normalise(pixels) for pixels in ws.loader(list(ws.probe))]
        print(f"{len(ws.probe)} probe views, {len(classes)} candidate classes, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")
        print(f"{'layer':<8} {'channels':>8} {'first-order s':>14} {'one view at a time s':>21} {'ratio':>6} "
              f"{'ablations s':>12}  copies per pass (ms per copy of each size tried)")
        totals = [0.0, 0.0, 0.0]
        model = ws.model.module
        for layer in (layer for name in names for layer in ws.layers if layer.name == name):
            module = ws.modules[layer.path]
            seconds = []
            for views in (size, 1):
                start = time.perf_counter()
                first = sum(first_order(model, x, {layer.path: module}, classes, views)[layer.path].cpu()
                            for x in batches)
                seconds.append(time.perf_counter() - start)
            units = list(range(layer.count))
            chosen = [[classes[k] for k in first[:, n].argsort(descending=True)[:EXACT].tolist()] for n in units]
            start = time.perf_counter()
            for x in batches:
                ablation(model, x, module, units, chosen, size)
            seconds.append(time.perf_counter() - start)
            totals = [total + s for total, s in zip(totals, seconds)]
            copies = _COPIES[module]
            tried = ", ".join(f"{n}: {1000 * s:.2f}" for n, s in copies.timed.items())
            print(f"{layer.name:<8} {layer.count:>8} {seconds[0]:>14.1f} {seconds[1]:>21.1f} "
                  f"{seconds[1] / seconds[0]:>6.2f} {seconds[2]:>12.1f}  {copies.next()} ({tried})")
        print(f"{'all':<8} {'':>8} {totals[0]:>14.1f} {totals[1]:>21.1f} {totals[1] / totals[0]:>6.2f} "
              f"{totals[2]:>12.1f}")
        modules = {layer.path: ws.modules[layer.path] for layer in ws.layers if layer.name in names}
        start = time.perf_counter()
        for x in batches:
            first_order(model, x, modules, classes, size)
        one = time.perf_counter() - start
        print(f"first-order of all {len(modules)} in one backward pass per batch and class (as the atlas computes "
              f"them): {one:.1f} s, {totals[0] / one:.2f}x faster than one layer at a time")


if __name__ == "__main__":
    main(sys.argv[1:] or ["block2", "block4", "block7", "block10", "block15"])
