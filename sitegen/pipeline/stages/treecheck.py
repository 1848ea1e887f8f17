"""The randomization check of the trees' path pictures (DESIGN §2; Adebayo et al., 2018), as the layers'
(``sanity.py``) with the tree's root layer as the layer: its own block re-initialised with the same seed.  For
up to ``sanity.CHECKED`` of a tree's nodes, spread evenly over them in the order the walk meets them (the
root first), the Spearman rank correlation of |picture| summed over colours, under the trained and the
re-initialised model, over the box the node's picture shows; each path keeps its channel masks in both.  The
tree's figure is the median: near 1, its pictures barely depend on what the root's layer learned.  An entry
per featured image and root.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...engine.passes import gradients
from ...engine.paths import Step, keep_masks
from ...engine.sanity import agreement
from ...images import Item
from ...model.layers import Layer
from ...store import members
from ..stage import EntryStage, State
from ..workspace import Workspace
from . import sanity, trees
from .activations import read_featured


@dataclass(frozen=True)
class TreeCheck:
    item: Item
    root: tuple[Layer, int]
    size = 1


def checked_paths(ws: Workspace, state: State, item: Item, root: tuple[Layer, int]) -> list[trees.Path]:
    """The tree's checked nodes: up to CHECKED of its paths, spread evenly in the order of the walk."""
    paths: list[trees.Path] = []

    def known(level: list[trees.Path]) -> list[dict | None]:
        return [trees.stored(ws, state, item, path) for path in level]

    for level in trees.levels(ws, state, root, known):
        paths += level
    return sanity.checked(paths)


class TreeCheckStage(EntryStage):
    name = "trees' check"
    title = "trees' randomization check (images x roots)"
    needs = ("trees",)
    kind = members.TREE_CHECK
    counted = "tree checks"

    def candidates(self, ws: Workspace, state: State) -> list[TreeCheck]:
        if not sanity.applies(ws):
            return []
        return [TreeCheck(item, root) for item in ws.featured for root in trees.roots(ws, state, item)]

    def key(self, ws: Workspace, state: State, work: TreeCheck) -> str:
        paths = checked_paths(ws, state, work.item, work.root)
        return ws.key(members.TREE_CHECK, sanity.SEED, [trees.node_key(ws, state, work.item, path) for path in paths])

    def expect(self, ws: Workspace, state: State, work: TreeCheck) -> dict:
        return members.expect(members.TREE_CHECK, len(checked_paths(ws, state, work.item, work.root)))

    def entry(self, ws: Workspace, state: State, work: TreeCheck) -> dict:
        """The checked nodes' correlations, [nodes]."""
        (layer, neuron), method = work.root, ws.config.trees.method
        paths = checked_paths(ws, state, work.item, work.root)
        boxes = []
        for path in paths:
            entry = trees.stored(ws, state, work.item, path)
            assert entry is not None  # checked_paths walks only the nodes the trees stage stored
            top, left, bottom, right = (int(v) for v in entry[members.NODE_FACTS][:4])
            boxes.append((top, left, bottom, right))
        x = ws.tensor([ws.pixels(work.item)])[0]
        position = int(read_featured(ws, work.item, layer)[1][neuron])  # the trained model's
        pictures = []
        for model in (ws.model.module, sanity.random_model(ws, layer)):
            modules = dict(model.named_modules())
            steps = [[Step(step.name, modules[step.path], kept) for step, kept in path] for path in paths]
            pictures.append(gradients(model, x, layer.path, modules[layer.path], [neuron] * len(paths),
                                      [position] * len(paths), [method], ws.config.compute.batch_size,
                                      keep=keep_masks(steps))[method])
        return {members.TREE_CHECK_VALUES: np.asarray(agreement(pictures[0], pictures[1], boxes), dtype=np.float32)}

    def describe(self, ws: Workspace, state: State, work: list[TreeCheck]) -> str:
        return f"trees' check: {len(work)} trees to check"


def figure(ws: Workspace, state: State, item: Item, root: tuple[Layer, int]) -> tuple[float | None, int] | None:
    """The tree's figure and how many nodes it is over (None where the atlas does not check)."""
    if not sanity.applies(ws):
        return None
    values = TreeCheckStage().value(ws, state, TreeCheck(item, root))[members.TREE_CHECK_VALUES]
    return sanity.figure(values), int(np.isfinite(values).sum())
