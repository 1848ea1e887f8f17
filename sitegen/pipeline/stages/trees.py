"""Trees of path-conditioned pictures on each featured image (Cogswell, "Visualizing Feature Composition";
DESIGN §2, path).

A tree's root is the top predicted class (or the top layer's most active
neuron), and the most active neurons of the layers ``[trees] layers`` names.
A node is a path from the root.  In a tree of parts (``[trees] nodes``, the
default) its children are groups of the next configured layer's channels
(group steps): every channel with positive path weight under the node's
path, partitioned by where on the image it gives the node its evidence
(``engine/parts.py``), so that the children's shares add up to the node's
whole positive weight; a part's own children are found under the path
through its group.  In a tree of neurons they are the channels with the
largest positive path weights.  Each node's picture is the root's gradient through its path alone, cut
to where it lies and shown on its own scale beside the photo of the same
box.  Where a node lies is the square, at least a quarter of the image's
side, where its neuron (or its group's channels together) gives the root
most (activation times gradient under its parent's path, summed over the
square's positions: that square's part of its path weight); the square's
side is the layer's effective receptive field for a neuron, and for a part
the smallest square of the layer's positions that holds half of the part's
positive evidence (HOLD: where it lies, not what each channel could see).
The root's is its own field at its position, or the whole image.  The
nodes of one depth go through one batch of passes, each copy of the image
with its own channel masks; each node is cached under a key that holds its
path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...engine.geometry import Geometry
from ...engine.parts import partition
from ...engine.passes import gradients
from ...engine.paths import Step, keep_masks
from ...engine.pictures import cut as cut_gradients
from ...engine.pictures import display, scales
from ...images import PATCH_SIDE, STORAGE, Item, cut, fit
from ...model.layers import Layer
from ...store import members
from ...store.manifest import classifier_output
from ..stage import Stage, State
from ..workspace import Workspace
from .activations import read_featured
from .effective import patch_box, square
from .photos import predictions_key

Kept = int | tuple[int, ...]  # a step's neuron, or its group's channels (a part)
Path = tuple[tuple[Layer, Kept], ...]  # (layer, neuron or group) from the root down

# a node's square is at least this share of the image's side: a part of the photo a reader can recognise
# (the 13-pixel field of an early layer is a patch of fur, and its picture a few enlarged pixels)
NODE_SIDE = 0.25
# a part's square is the smallest of its layer's positions that holds this share of its positive evidence
HOLD = 0.5
# parts are grouped by where their evidence lies, blurred by a Gaussian of this share of the image's side
BLUR = 0.1


def roots(ws: Workspace, state: State, item: Item) -> list[tuple[Layer, int]]:
    """The roots of an image's trees: the top predicted class first, then the most active neurons of the
    layers ``[trees] layers`` names."""
    top, chosen = ws.layers[-1], []
    values = read_featured(ws, item, top)[0]
    mapped = state.mapped[top.name]
    if classifier_output(top.shape, ws.model.categories):
        classes = ws.cache.get(members.PREDICTIONS, predictions_key(ws, item)) or {}
        chosen += [(top, c) for c in classes.get(members.CLASSES, np.array([])).tolist() if c in mapped][:1]
    if not chosen:
        chosen.append((top, max(mapped, key=lambda n: (values[n], -n))))
    for layer in ws.layers:
        if layer.listed in ws.config.trees.layers:
            values = read_featured(ws, item, layer)[0]
            order = sorted(state.mapped[layer.name], key=lambda n: (-values[n], n))
            chosen += [(layer, n) for n in order[:ws.config.trees.roots] if (layer, n) not in chosen]
    return chosen


def channels(kept: Kept) -> list[int]:
    """A step's channels: its neuron, or its group's."""
    return [kept] if isinstance(kept, int) else list(kept)


def width(ws: Workspace, path: Path) -> int:
    """How many children a node at the end of ``path`` has at most: parts or neurons, by its depth."""
    trees = ws.config.trees
    widths = trees.parts if trees.nodes == "parts" else trees.widths
    return widths[min(len(path), len(widths)) - 1]


def node_key(ws: Workspace, state: State, item: Item, path: Path) -> str:
    layer, below = path[-1][0], path[-1][0].lower
    trees = ws.config.trees
    return ws.key(members.TREES, trees.method, PATCH_SIDE, STORAGE, state.effective.get(layer.name),
                  NODE_SIDE, HOLD, BLUR, [(step.path, neuron) for step, neuron in path], below.path if below else None,
                  (trees.nodes, width(ws, path) if below else None, state.mapped[below.name] if below else None),
                  item.digest, item.view.spec)


def children(ws: Workspace, state: State, path: Path, entry: dict) -> list[Kept]:
    """A node's children, strongest first, from its entry: its parts (groups of channels), or the neurons of
    the next layer down with the largest positive path weights."""
    weights = entry[members.NODE_WEIGHTS]
    if members.NODE_PARTS in entry:
        labels = entry[members.NODE_PARTS]
        return [tuple(int(j) for j in np.flatnonzero(labels == part)) for part in range(int(labels.max()) + 1)]
    lower = path[-1][0].lower
    assert lower is not None  # levels asks only where there is a layer below
    mapped = np.asarray(state.mapped[lower.name])
    order = mapped[np.argsort(-weights[mapped], kind="stable")[:width(ws, path)]]
    return [int(j) for j in order if weights[j] > 0]


def levels(ws: Workspace, state: State, root: tuple[Layer, int],
           entries_of: Callable[[list[Path]], list[dict | None]]) -> Iterator[list[Path]]:
    """The tree's paths, one depth at a time.  After each depth, ``entries_of`` gives its paths' entries
    (None where they are not known: the walk stops there)."""
    level: list[Path] = [(root,)]
    while level:
        yield level
        entries = entries_of(level)
        below, deeper = level[0][-1][0].lower, []
        if below is None:
            return
        for path, entry in zip(level, entries):
            if entry is None:
                return
            deeper += [path + ((below, kept),) for kept in children(ws, state, path, entry)]
        level = deeper


@dataclass(frozen=True)
class Tree:
    item: Item
    root: tuple[Layer, int]
    size = 1


def placed(side: int | None, geometry: Geometry, contributions: torch.Tensor, size: int) -> tuple[int, int, int, int]:
    """The ``side`` x ``side`` square (at least NODE_SIDE of the image's; None: the whole image) where a layer's
    map of one neuron's ``contributions`` (activation times gradient, [h, w] or a single value) sums highest."""
    side = size if side is None or contributions.dim() < 2 else min(size, max(side, round(NODE_SIDE * size)))
    if side == size:
        return (0, 0, size - 1, size - 1)
    height, width = contributions.shape
    k = [max(1, min(n, round(side / jump))) for n, jump in zip((height, width), geometry.jump)]
    sums = F.avg_pool2d(contributions.clamp(min=0)[None, None].double(), k, stride=1)[0, 0]
    i, j = divmod(int(sums.flatten().argmax()), sums.shape[1])
    (y0, x0), (y1, x1) = geometry.centre(i, j), geometry.centre(i + k[0] - 1, j + k[1] - 1)
    return square(((y0 + y1) // 2, (x0 + x1) // 2), side, size)


def holding(geometry: Geometry, contributions: torch.Tensor, size: int) -> int:
    """The side in pixels of the smallest square of a layer's positions where a map of ``contributions``
    ([h, w]) holds HOLD of its positive sum (the image's side for a flat layer or an empty map)."""
    positive = contributions.clamp(min=0).double()
    total = float(positive.sum())
    if positive.dim() < 2 or total <= 0:
        return size
    height, width = positive.shape
    for k in range(1, max(height, width) + 1):
        window = (min(k, height), min(k, width))
        sums = F.avg_pool2d(positive[None, None], window, stride=1) * (window[0] * window[1])
        if float(sums.max()) >= HOLD * total:
            return min(size, round(k * max(geometry.jump)))
    return size


def compute_level(ws: Workspace, state: State, item: Item, paths: list[Path]) -> dict[Path, dict]:
    """The entries of one depth's paths (one root), through shared passes."""
    (root_layer, root_neuron), method = paths[0][0], ws.config.trees.method
    assert isinstance(root_neuron, int)  # a root is one neuron (roots)
    pixels = ws.pixels(item)
    x = ws.tensor([pixels])[0]
    position = int(read_featured(ws, item, root_layer)[1][root_neuron])
    steps = [[Step(layer.name, ws.modules[layer.path], neuron) for layer, neuron in path] for path in paths]
    layer, below = paths[0][-1][0], paths[0][-1][0].lower
    parts = ws.config.trees.nodes == "parts"
    result = gradients(ws.model.module, x, root_layer.path, ws.modules[root_layer.path], [root_neuron] * len(paths),
                       [position] * len(paths), [method], ws.config.compute.batch_size,
                       lower=ws.modules[below.path] if below else None, keep=keep_masks(steps),
                       maps_at=ws.modules[layer.path] if len(paths[0]) > 1 else None, lower_maps=parts)
    grads, entries = result[method], {}
    whole = scales(grads).float().cpu().numpy()
    for index, path in enumerate(paths):
        if len(path) == 1:
            box = patch_box(ws, state, layer, position)
        else:
            kept, size = path[-1][1], ws.model.preprocess.crop
            contributions = result["maps"][index, channels(kept)].sum(0)
            side = state.effective.get(layer.name) if isinstance(kept, int) else \
                None if layer.geometry.whole else holding(layer.geometry, contributions, size)
            box = placed(side, layer.geometry, contributions, size)
        shown, scale = display(cut_gradients(grads[index:index + 1], [box]), PATCH_SIDE)
        jobs = {members.NODE_PICTURE: (shown[0], "picture"), members.NODE_PHOTO: (fit(cut(pixels, box), PATCH_SIDE),
                                                                                 "picture")}
        entry = {**ws.encode_many(jobs), members.NODE_FACTS: np.array([*box, scale[0], whole[index]])}
        if below is not None and parts:
            maps = result["lower maps"][index].cpu().numpy()
            entry[members.NODE_WEIGHTS] = maps.reshape(maps.shape[0], -1).sum(axis=1)
            entry[members.NODE_PARTS] = np.full(maps.shape[0], -1, dtype=np.int64)
            blur = BLUR * max(maps.shape[1:]) if maps.ndim == 3 else 0.0  # in positions: the map spans the image
            for rank, part in enumerate(partition(maps, state.mapped[below.name], width(ws, path), blur)):
                entry[members.NODE_PARTS][list(part)] = rank
        elif below is not None:
            entry[members.NODE_WEIGHTS] = result["edges"][index].cpu().numpy()
        entries[path] = entry
    return entries


def stored(ws: Workspace, state: State, item: Item, path: Path) -> dict | None:
    """A node's arrays as its entry holds them, checked; None if it is not computed (or found wrong)."""
    lower = path[-1][0].lower
    return ws.cache.get(members.TREES, node_key(ws, state, item, path), arrays_only=True,
                        expect=members.expect(members.TREES, lower=lower.count if lower is not None else None))


class TreesStage(Stage):
    name = "trees"
    title = "trees (featured images x roots)"
    needs = ("activations", "receptive fields", "featured photos")

    def plan(self, ws: Workspace, state: State) -> list[Tree]:
        work = []
        for item in ws.featured:
            for root in roots(ws, state, item):
                def known(level: list[Path], item: Item = item) -> list[dict | None]:  # called in this iteration
                    return [stored(ws, state, item, path) for path in level]
                complete = True
                for level in levels(ws, state, root, known):
                    complete &= all(ws.cache.has(members.TREES, node_key(ws, state, item, path)) for path in level)
                if not complete:
                    work.append(Tree(item, root))
        return work

    def run(self, ws: Workspace, state: State, work: Sequence[Tree], advance: Callable[[int], None]) -> None:
        for w in work:
            def entries_of(level: list[Path], w: Tree = w) -> list[dict | None]:  # called in this iteration
                found = {path: stored(ws, state, w.item, path) for path in level}
                entries = {path: entry for path, entry in found.items() if entry is not None}
                missing = [path for path in found if path not in entries]
                if missing:
                    made = compute_level(ws, state, w.item, missing)
                    for path, entry in made.items():
                        ws.write(members.TREES, node_key(ws, state, w.item, path), entry)
                    entries.update(made)
                    ws.count("tree nodes", len(made))
                return [entries[path] for path in level]
            for _ in levels(ws, state, w.root, entries_of):
                pass
            advance(1)
