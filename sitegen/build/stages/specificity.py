"""Specificity of each neuron's guided-backprop picture on a featured image: 1 minus its mean cosine
similarity to the other mapped neurons' pictures there (shrunk to 56 px, zero at grey).  Guided backprop is
known to look alike across neurons; this says how much, per neuron."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from ...images import STORAGE, WHOLE_SIDE, Item
from ...methods import GUIDED
from ...model.layers import Layer
from ...store import members
from ..stage import EntryStage, State, require
from ..workspace import Workspace
from .featured import pictures_key

SIDE = 56


def applies(ws: Workspace, units: Sequence[int]) -> bool:
    return GUIDED in ws.config.compute.methods and len(units) >= 2


def specificity_key(ws: Workspace, item: Item, layer: Layer, units: Sequence[int]) -> str:
    return ws.key(members.SPECIFICITIES, layer.path, SIDE, WHOLE_SIDE, STORAGE, item.digest, item.view.spec,
                  list(units))


def specificity(ws: Workspace, item: Item, layer: Layer, units: Sequence[int]) -> np.ndarray:
    """[U] float32, from the stored pictures."""
    stored = require(ws, members.PICTURES, pictures_key(ws, item, layer, GUIDED))
    rows = []
    for neuron in units:
        picture = Image.open(io.BytesIO(stored[members.picture(neuron)])).convert("RGB")
        small = np.asarray(picture.resize((SIDE, SIDE), Image.BOX), dtype=np.float32) - 127.5
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
    needs = ("activations", "featured images")
    kind = members.SPECIFICITIES
    counted = "specificities"

    def candidates(self, ws: Workspace, state: State) -> list[Specificity]:
        return [Specificity(item, layer) for item in ws.featured for layer in ws.layers
                if applies(ws, state.mapped[layer.name])]

    def key(self, ws: Workspace, state: State, work: Specificity) -> str:
        return specificity_key(ws, work.item, work.layer, state.mapped[work.layer.name])

    def entry(self, ws: Workspace, state: State, work: Specificity) -> dict:
        return {members.SPECIFICITY: specificity(ws, work.item, work.layer, state.mapped[work.layer.name])}
