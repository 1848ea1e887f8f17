"""What a tree of path pictures costs, batched against one path at a time, measured in one run.

Grows a tree of neurons (``[trees] nodes = "neurons"``) on the default
atlas's first featured image the way the trees stage does: from the top
predicted class down through the configured layers, each node's children
its strongest positive path weights, the configured widths.  Each depth is computed twice on the same machine: all
its paths through shared passes (each copy of the image in a batch with its
own channel masks), and one path per pass.  Each pass gives the path
picture (the trees' method), the path weights to the layer below and where
the path's neuron gives most.  The two must agree: the largest difference,
relative to the largest value, is printed beside the seconds and ratios per
depth (in float32 about 1e-6 for pictures, up to a few 1e-2 for the weights
and maps of deep paths, where rounding flips a ReLU6's threshold; in float64
all below 1e-10).  Run: .venv/bin/python bench/paths.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from sitegen.config import load
from sitegen.engine.passes import activations, gradients, predictions
from sitegen.engine.paths import Step, keep_masks
from sitegen.pipeline.workspace import Workspace
from sitegen.store.cache import Cache


def timed(call) -> tuple[float, dict]:
    start = time.perf_counter()
    result = call()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main() -> None:
    config = load(Path(__file__).parent.parent / "content" / "atlas.toml")
    with tempfile.TemporaryDirectory() as cache, Workspace.open(config, Cache(cache), quiet=True) as ws:
        measure(ws)


def measure(ws: Workspace) -> None:
    model, method, widths = ws.model.module, ws.config.trees.method, ws.config.trees.widths
    item = ws.featured[0]
    x = ws.tensor([ws.pixels(item)])[0]
    top = ws.layers[-1]
    _, classes = predictions(model, x[None], k=1)
    root = (top, int(classes[0, 0]))
    position = int(activations(model, x[None], {top.path: ws.modules[top.path]})[top.path][1][0, root[1]])
    print(f"{ws.model.name}, {item.name}, root {top.name}/{root[1]}, method {method}, widths {list(widths)}, "
          f"batch {ws.config.compute.batch_size}, {'GPU' if x.is_cuda else 'CPU'}")
    print(f"{'depth':>5} {'layer':<8} {'paths':>5} {'batched s':>10} {'one by one s':>13} {'ratio':>6} {'max diff':>9}")
    level, depth, totals = [(root,)], 0, [0.0, 0.0, 0]
    while level:
        layer, below = level[0][-1][0], level[0][-1][0].lower
        steps = [[Step(at.name, ws.modules[at.path], n) for at, n in path] for path in level]

        # run (and the lambdas below) within this iteration: the loop's variables are bound as they are now
        def run(rows: list[int], layer=layer, below=below, steps=steps, depth=depth) -> dict:
            return gradients(model, x, top.path, ws.modules[top.path], [root[1]] * len(rows), [position] * len(rows),
                             [method], ws.config.compute.batch_size, lower=ws.modules[below.path] if below else None,
                             keep=keep_masks([steps[k] for k in rows]),
                             maps_at=ws.modules[layer.path] if depth else None)

        batched_s, batched = timed(lambda level=level: run(list(range(len(level)))))
        single_s, singles = timed(lambda level=level: [run([k]) for k in range(len(level))])
        diff = max(float((batched[kind][k] - one[kind][0]).abs().max() / batched[kind][k].abs().max().clamp(min=1e-30))
                   for kind in batched for k, one in enumerate(singles))
        print(f"{depth:>5} {layer.name:<8} {len(level):>5} {batched_s:>10.2f} {single_s:>13.2f} "
              f"{single_s / batched_s:>6.2f} {diff:>9.1e}")
        totals = [totals[0] + batched_s, totals[1] + single_s, totals[2] + len(level)]
        if below is None:
            break
        width = widths[min(depth, len(widths) - 1)]
        deeper = []
        for path, weights in zip(level, batched["edges"]):
            order = torch.argsort(-weights, stable=True)[:width]
            deeper += [path + ((below, int(j)),) for j in order if weights[j] > 0]
        level, depth = deeper, depth + 1
    print(f"{'all':>5} {'':<8} {totals[2]:>5} {totals[0]:>10.2f} {totals[1]:>13.2f} {totals[1] / totals[0]:>6.2f}")


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
