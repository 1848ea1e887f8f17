"""Do a tree's children add up to what its node rests on?  Coverage per depth, trees of parts against trees
of neurons, and how the parts are grouped, on the default atlas's featured photos, in one run.

For the top predicted class of each featured photo, two trees are grown down through the configured
layers the way the trees stage grows them (the stage's functions: a node's path weights and its maps
``A_j * g_j`` at the layer below through batched passes with each path's masks, then its children):
- of **neurons**: each node's children its strongest positive path weights, ``[trees] widths``;
- of **parts**: every channel with positive path weight, grouped by where it gives the node its evidence
  (``engine/parts.py``, at most ``[trees] parts``); a part's children are found under the path through
  its group.
A node's **coverage** is its children's shares of its positive path weight, summed.  A part's weight is
its channels' summed (path weights are linear in the kept set; ``tests/test_paths.py`` checks that
against a reference), so the parts of a node add up to 1 by construction; the table shows what a tree
of neurons leaves out at the same depths.

Then the grouping itself, over every node of the trees of parts with children: each way of grouping the
same channels, with each part's square (the smallest square of the layer's positions that holds half its
positive evidence, at least a quarter of the image's side, as the atlas draws it): the mean side of the
parts' squares (share of the image's side, weighted by the parts' shares: smaller, a more definite
place), how much of each part's positive evidence lies in its own square, and the mean overlap
(intersection over union) of sibling parts' squares (smaller, parts that look at different places).
Groupings: k-means on the blurred maps (the atlas's), k-means on the unblurred maps, non-negative
factorisation of the maps (each channel to its largest factor).  Run: .venv/bin/python bench/trees.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from sitegen.config import load
from sitegen.engine.parts import partition
from sitegen.engine.passes import activations, gradients, predictions
from sitegen.engine.paths import Step, keep_masks
from sitegen.pipeline.stages.trees import BLUR, holding, placed
from sitegen.pipeline.workspace import Workspace
from sitegen.store.cache import Cache

Grouping = Callable[[np.ndarray, list[int], int, float], list[tuple[int, ...]]]


def nmf(maps: np.ndarray, candidates: list[int], k: int, _blur: float) -> list[tuple[int, ...]]:
    """Non-negative factorisation of the positive maps (channels x positions ~ W H, k factors, multiplicative
    updates from a fixed start), each channel with positive weight to its largest factor."""
    flat = maps.reshape(maps.shape[0], -1).astype(np.float64)
    chosen = [j for j in candidates if flat[j].sum() > 0]
    if len(chosen) <= k:
        return [(j,) for j in chosen]
    v = np.clip(flat[chosen], 0, None) + 1e-12
    rng = np.random.default_rng(0)
    w, h = rng.random((len(chosen), k)) + 0.1, rng.random((k, v.shape[1])) + 0.1
    for _ in range(300):
        h *= (w.T @ v) / (w.T @ w @ h + 1e-12)
        w *= (v @ h.T) / (w @ h @ h.T + 1e-12)
    labels = (w * h.sum(axis=1)).argmax(axis=1)
    weights = flat.sum(axis=1)
    parts = [tuple(sorted(chosen[i] for i in np.flatnonzero(labels == c))) for c in range(k)]
    return sorted((p for p in parts if p), key=lambda p: -float(weights[list(p)].sum()))


GROUPINGS: dict[str, Grouping] = {
    "k-means, blurred (atlas)": partition,
    "k-means, unblurred": lambda maps, candidates, k, _blur: partition(maps, candidates, k, 0.0),
    "non-negative factorisation": nmf,
}


def main() -> None:
    config = load(Path(__file__).parent.parent / "content" / "atlas.toml")
    with tempfile.TemporaryDirectory() as cache, Workspace.open(config, Cache(cache), quiet=True) as ws:
        measure(ws)


class Grower:
    """Grows one photo's trees from its top class: each depth's paths through shared passes."""

    def __init__(self, ws: Workspace, item) -> None:
        self.ws, self.model = ws, ws.model.module
        self.x = ws.tensor([ws.pixels(item)])[0]
        self.top = ws.layers[-1]
        _, classes = predictions(self.model, self.x[None], k=1)
        self.root = (self.top, int(classes[0, 0]))
        _, positions = activations(self.model, self.x[None], {"top": ws.modules[self.top.path]})["top"]
        self.position = int(positions[0, self.root[1]])
        self.size = ws.model.preprocess.crop

    def maps(self, level: list[tuple]) -> torch.Tensor:
        """Each path's maps ``A_j * g_j`` at the layer below its last, [paths, C, h, w]."""
        below = level[0][-1][0].lower
        steps = [[Step(layer.name, self.ws.modules[layer.path], kept) for layer, kept in path] for path in level]
        return gradients(self.model, self.x, self.top.path, self.ws.modules[self.top.path],
                         [self.root[1]] * len(level), [self.position] * len(level), [],
                         self.ws.config.compute.batch_size, lower=self.ws.modules[below.path], keep=keep_masks(steps),
                         lower_maps=True)["lower maps"].double()

    def grow(self, parts: bool, visit: Callable[[int, tuple, np.ndarray], None] | None = None) -> dict[int, list]:
        """Coverage of every node with children, by depth; ``visit(depth, path, maps)`` sees each such node."""
        trees = self.ws.config.trees
        widths = trees.parts if parts else trees.widths
        level, depth, coverage = [(self.root,)], 0, {}
        while level and level[0][-1][0].lower is not None:
            below = level[0][-1][0].lower
            width = widths[min(depth, len(widths) - 1)]
            deeper = []
            for path, maps in zip(level, self.maps(level).cpu().numpy()):
                weights = maps.reshape(maps.shape[0], -1).sum(axis=1)
                total = float(np.clip(weights, 0, None).sum())
                if parts:
                    children: list = partition(maps, list(range(len(weights))), width, BLUR * max(maps.shape[1:]))
                    shares = [float(weights[list(part)].sum()) / total for part in children]
                else:
                    order = np.argsort(-weights, kind="stable")[:width]
                    children = [int(j) for j in order if weights[j] > 0]
                    shares = [float(weights[j]) / total for j in children]
                coverage.setdefault(depth, []).append(sum(shares))
                if visit:
                    visit(depth, path, maps)
                deeper += [path + ((below, child),) for child in children]
            level, depth = deeper, depth + 1
        return coverage


def grouping_quality(grower: Grower, maps: np.ndarray, below, width: int, grouping: Grouping) -> tuple:
    """For one node: its parts' (share, square's side over the image's, evidence in its own square) and the
    mean overlap of sibling squares."""
    weights = maps.reshape(maps.shape[0], -1).sum(axis=1)
    total = float(np.clip(weights, 0, None).sum())
    blur = BLUR * max(maps.shape[1:])
    rows, boxes = [], []
    for part in grouping(maps, list(range(len(weights))), width, blur):
        contributions = torch.from_numpy(maps[list(part)].sum(axis=0))
        side = holding(below.geometry, contributions, grower.size)
        box = placed(side, below.geometry, contributions, grower.size)
        boxes.append(box)
        rows.append((float(weights[list(part)].sum()) / total, (box[2] - box[0] + 1) / grower.size,
                     inside(below.geometry, contributions, box)))
    overlaps = [iou(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]]
    return rows, overlaps


def inside(geometry, contributions: torch.Tensor, box: tuple[int, int, int, int]) -> float:
    """The share of a map's positive sum at positions whose centres lie in the box."""
    positive = contributions.clamp(min=0)
    total = float(positive.sum())
    if contributions.dim() < 2 or total <= 0:
        return 1.0
    kept = 0.0
    for i in range(positive.shape[0]):
        for j in range(positive.shape[1]):
            y, x = geometry.centre(i, j)
            if box[0] <= y <= box[2] and box[1] <= x <= box[3]:
                kept += float(positive[i, j])
    return kept / total


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    height = min(a[2], b[2]) - max(a[0], b[0]) + 1
    width = min(a[3], b[3]) - max(a[1], b[1]) + 1
    both = max(0, height) * max(0, width)
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - both
    return both / area


def measure(ws: Workspace) -> None:
    trees = ws.config.trees
    print(f"{ws.model.name}, {len(ws.featured)} featured photos, each tree from its top class; parts "
          f"{list(trees.parts)} against neurons {list(trees.widths)}; batch {ws.config.compute.batch_size}, CPU")
    coverage: dict[str, dict[int, list]] = {"parts": {}, "neurons": {}}
    quality: dict[str, list] = {name: [] for name in GROUPINGS}
    overlaps: dict[str, list] = {name: [] for name in GROUPINGS}
    seconds = {"parts": 0.0, "neurons": 0.0}
    for item in ws.featured:
        grower = Grower(ws, item)

        def visit(depth: int, path: tuple, maps: np.ndarray, grower: Grower = grower) -> None:
            below = path[-1][0].lower
            width = trees.parts[min(depth, len(trees.parts) - 1)]
            for name, grouping in GROUPINGS.items():
                rows, pairs = grouping_quality(grower, maps, below, width, grouping)
                quality[name] += rows
                overlaps[name] += pairs

        for kind in ("parts", "neurons"):
            start = time.perf_counter()
            for depth, values in grower.grow(kind == "parts", visit if kind == "parts" else None).items():
                coverage[kind].setdefault(depth, []).extend(values)
            seconds[kind] += time.perf_counter() - start
    layers = [ws.layers[-1]]
    while layers[-1].lower is not None:
        layers.append(layers[-1].lower)
    print("\ncoverage of a node by its children, per depth (nodes with children; min / median):")
    print(f"{'depth':>5} {'layer':<8} {'children in':<10} {'parts: nodes':>12} {'min':>5} {'median':>6} "
          f"{'neurons: nodes':>14} {'min':>5} {'median':>6}")
    for depth in sorted(coverage["parts"]):
        row = f"{depth:>5} {layers[depth].name:<8} {layers[depth + 1].name:<10}"
        for kind, label in (("parts", 12), ("neurons", 14)):
            values = coverage[kind].get(depth, [])
            row += f" {len(values):>{label}} {min(values):>5.2f} {statistics.median(values):>6.2f}" if values \
                else f" {0:>{label}} {'':>5} {'':>6}"
        print(row)
    print(f"seconds (growing, with the grouping measures): parts {seconds['parts']:.1f}, neurons "
          f"{seconds['neurons']:.1f}")
    print("\nhow the parts are grouped (every node of the trees of parts with children; squares as the atlas draws "
          "them):")
    print(f"{'grouping':<28} {'parts':>5} {'side (weighted)':>15} {'own square holds':>16} {'sibling overlap':>15}")
    for name in GROUPINGS:
        rows = quality[name]
        share = sum(r[0] for r in rows)
        side = sum(r[0] * r[1] for r in rows) / share
        held = sum(r[0] * r[2] for r in rows) / share
        print(f"{name:<28} {len(rows):>5} {side:>15.2f} {held:>16.2f} {statistics.mean(overlaps[name]):>15.2f}")


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
