"""The randomization check of each layer's methods: its featured pictures', guided backprop (the patches' by
default) and its patches' (DESIGN §2; Adebayo et al., 2018).

The modules that the layer computes from the configured layer below (its own block; for the lowest layer,
everything up to it) are re-initialised with their own initialisers and a fixed seed (``SEED``, not the
config's seed: a model built at random from that seed would be re-initialised to itself).  For each
featured image (an entry each) and up to ``CHECKED`` of the layer's mapped neurons, spread evenly, each
method's picture under the trained and the re-initialised model is compared, the neuron taken at the trained
model's position: the Spearman rank correlation of |picture| summed over colours, over the pixels of the
box its zoom shows, its effective receptive field (the whole image where patches are).  The layer's figure per
method is the median over every image and checked neuron: near 1, the picture does not show what the layer
learned.  Not the theoretical field: block 10's is larger than the image, and over it the ranks follow the
gradient's fall-off away from the neuron's position, which the architecture sets, so a model re-initialised
whole still correlates 0.98 with the trained one (0.19 over the effective field).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from torch import nn

from ...engine.passes import gradients
from ...engine.sanity import agreement, reinitialised
from ...images import Item
from ...methods import GUIDED, MAP, SMOOTHGRAD
from ...model.layers import Layer, own_block
from ...store import members
from ..stage import EntryStage, State
from ..workspace import Workspace
from . import patches
from .activations import read_featured
from .effective import patch_box
from .effects import spread

CHECKED = 16  # neurons per layer and featured image
SEED = 2018  # of the re-initialisation
T = TypeVar("T")


def methods_of(ws: Workspace, layer: Layer) -> list[str]:
    """The methods checked at the layer: those of its featured pictures, guided backprop (the patches' by
    default), and its patches' method."""
    shown = patches.kind(ws, layer)
    return list(dict.fromkeys([*ws.config.layers.methods[layer.listed], GUIDED, *([shown] if shown != MAP else [])]))


def applies(ws: Workspace) -> bool:
    """Whether the atlas checks its methods: ``compute.sanity``, on its featured images."""
    return ws.config.compute.sanity and bool(ws.featured)


def checked(units: Sequence[T]) -> list[T]:
    """Up to CHECKED of the mapped neurons (or of a tree's nodes), spread evenly over them."""
    return spread(units, CHECKED)


@dataclass(frozen=True)
class Check:
    item: Item
    layer: Layer
    size = 1


def figure(values: np.ndarray) -> float | None:
    """The median of the finite correlations (None where there is none: pictures that are zero)."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else None


def random_model(ws: Workspace, layer: Layer) -> nn.Module:
    """The model with the layer's own block re-initialised (kept for the layer's next image and tree)."""
    lower = layer.lower.path if layer.lower is not None else None
    return ws.kept("re-initialised", layer.path,
                   lambda: reinitialised(ws.model.module, own_block(ws.model, layer.path, lower), SEED))


class SanityStage(EntryStage):
    name = "randomization check"
    title = "randomization check (images x layers)"
    needs = ("activations", "receptive fields")
    kind = members.SANITY
    counted = "randomization checks"

    def candidates(self, ws: Workspace, state: State) -> list[Check]:
        return [Check(item, layer) for layer in ws.layers for item in ws.featured] if applies(ws) else []

    def key(self, ws: Workspace, state: State, work: Check) -> str:
        methods = methods_of(ws, work.layer)
        smooth = ws.smoothgrad.as_dict() if SMOOTHGRAD in methods else None
        lower = work.layer.lower.path if work.layer.lower is not None else None
        return ws.key(members.SANITY, work.layer.path, lower, methods, smooth, SEED,
                      checked(state.mapped[work.layer.name]), state.effective.get(work.layer.name),
                      work.item.digest, work.item.view.spec)

    def expect(self, ws: Workspace, state: State, work: Check) -> dict:
        return members.expect(members.SANITY, len(checked(state.mapped[work.layer.name])))

    def entry(self, ws: Workspace, state: State, work: Check) -> dict:
        """Each method's correlations, [checked neurons], on one featured image."""
        layer, methods = work.layer, methods_of(ws, work.layer)
        random = random_model(ws, layer)
        neurons = checked(state.mapped[layer.name])
        x = ws.tensor([ws.pixels(work.item)])[0]
        where = read_featured(ws, work.item, layer)[1][neurons].tolist()  # the trained model's positions
        boxes = [patch_box(ws, state, layer, p) for p in where]  # as the zooms show them
        pictures = [gradients(model, x, layer.path, dict(model.named_modules())[layer.path], neurons, where,
                              methods, ws.config.compute.batch_size, *ws.crop_args(layer, x), smooth=ws.smoothgrad)
                    for model in (ws.model.module, random)]
        return {members.NEURONS: np.asarray(neurons, dtype=np.int64),
                **{members.sanity(method): np.asarray(agreement(pictures[0][method], pictures[1][method], boxes),
                                                      dtype=np.float32) for method in methods}}

    def describe(self, ws: Workspace, state: State, work: list[Check]) -> str:
        return f"randomization check: {len(work)} (image, layer) pairs to check"


def figures(ws: Workspace, state: State, layer: Layer) -> dict[str, float | None]:
    """The layer's figure per method: the median over the featured images' entries."""
    entries = [SanityStage().value(ws, state, Check(item, layer)) for item in ws.featured]
    return {method: figure(np.concatenate([entry[members.sanity(method)] for entry in entries]))
            for method in methods_of(ws, layer)}
