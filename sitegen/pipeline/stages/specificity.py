"""Specificity of each neuron's guided-backprop picture on a featured image: 1 minus its mean cosine
similarity to the other mapped neurons' pictures there (shrunk to 56 px, zero at grey).  Guided backprop is
known to look alike across neurons; this says how much, per neuron."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ...images import Item
from ...methods import GUIDED
from ...model.layers import Layer
from ...store import members
from ..stage import EntryStage, State, require
from ..workspace import Workspace
from .featured import pictures_key

SIDE = 56


def applies(ws: Workspace, layer: Layer, units: Sequence[int]) -> bool:
    return GUIDED in ws.config.layers.methods[layer.listed] and len(units) >= 2


def specificity_key(ws: Workspace, state: State, item: Item, layer: Layer) -> str:
    """The key of the pictures it reads, and the neurons it compares."""
    return ws.key(members.SPECIFICITIES, pictures_key(ws, state, item, layer, GUIDED), SIDE,
                  list(state.mapped[layer.name]))


def specificity(ws: Workspace, state: State, item: Item, layer: Layer) -> np.ndarray:
    """[U] float32, from the stored pictures."""
    units = state.mapped[layer.name]
    stored = require(ws, members.PICTURES, pictures_key(ws, state, item, layer, GUIDED))
    rows = []
    for neuron in units:
        picture = Image.open(io.BytesIO(stored[members.picture(neuron)])).convert("RGB")
        small = np.asarray(picture.resize((SIDE, SIDE), Image.Resampling.BOX), dtype=np.float32) - 127.5
        rows.append(small.reshape(-1))
    vectors = np.stack(rows)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-6)
    similar = vectors @ vectors.T
    mean_other = (similar.sum(axis=1) - np.diag(similar)) / (len(rows) - 1)
    return (1.0 - mean_other).astype(np.float32)


@dataclass(frozen=True)
class Specificity:
    item: Item
    layer: Layer
    size = 1


class SpecificityStage(EntryStage):
    name = "specificity"
    title = "specificity (images x layers)"
    needs = ("activations", "statistics", "receptive fields", "featured images")
    kind = members.SPECIFICITIES
    counted = "specificities"

    def candidates(self, ws: Workspace, state: State) -> list[Specificity]:
        return [Specificity(item, layer) for item in ws.featured for layer in ws.layers
                if applies(ws, layer, state.mapped[layer.name])]

    def key(self, ws: Workspace, state: State, work: Specificity) -> str:
        return specificity_key(ws, state, work.item, work.layer)

    def expect(self, ws: Workspace, state: State, work: Specificity) -> dict:
        return members.expect(members.SPECIFICITIES, len(state.mapped[work.layer.name]))

    def entry(self, ws: Workspace, state: State, work: Specificity) -> dict:
        return {members.SPECIFICITY: specificity(ws, state, work.item, work.layer)}
