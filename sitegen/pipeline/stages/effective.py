"""The effective receptive field of each layer (Luo et al., 2016; DESIGN §2): the side of the square,
centred on a neuron's position, that holds 90 % of its guided-backprop mass, averaged over the best patches
of up to 32 of the layer's mapped neurons (spread evenly over them: a layer's figure, and a cheap one).
Much smaller than the theoretical receptive field in deep layers; patches, tiles and zooms are cut to it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...engine.geometry import mass_sides
from ...engine.passes import gradients
from ...methods import GUIDED
from ...model.layers import Layer
from ...store import members
from ..stage import EntryStage, State
from ..workspace import Workspace

SHARE = 0.9
SAMPLE = 32
# where the effective field covers more than this share of the image's side, patches are the whole image
WHOLE = 0.75


def measurable(layer: Layer) -> bool:
    """A layer with positions, each seeing part of the image."""
    return len(layer.shape) == 3 and not layer.geometry.whole


def sample(ws: Workspace, state: State, layer: Layer) -> list[tuple[int, int, int]]:
    """(neuron, probe index, position) of the best patch of each sampled neuron."""
    mapped, top = state.mapped[layer.name], state.tops[layer.name]
    rows = sorted(set(np.linspace(0, len(mapped) - 1, min(SAMPLE, len(mapped))).round().astype(int).tolist()))
    return [(mapped[row], int(top.order[row, 0]), int(top.positions[row, 0])) for row in rows]


def square(centre: tuple[int, int], side: int, size: int) -> tuple[int, int, int, int]:
    """The ``side`` x ``side`` box (top, left, bottom, right, inclusive) centred on ``centre``, moved into a
    ``size`` x ``size`` image where it would leave it."""
    top, left = (min(max(c - side // 2, 0), size - side) for c in centre)
    return (top, left, top + side - 1, left + side - 1)


def box(ws: Workspace, state: State, layer: Layer, position: int) -> tuple[int, int, int, int] | None:
    """The effective receptive field of the neuron at ``position`` (top, left, bottom, right, inclusive), or
    None where the neuron's patches are the whole image.  Centred on the position, then moved into the image
    where it would leave it: the gradient is zero outside the image, so the moved box holds more of the
    neuron's mass, and the patch shows the photo instead of grey padding."""
    side = state.effective.get(layer.name)
    if side is None:
        return None
    return square(layer.geometry.centre(*divmod(position, layer.width)), side, ws.model.preprocess.crop)


def patch_box(ws: Workspace, state: State, layer: Layer, position: int) -> tuple[int, int, int, int]:
    """The box a patch of the neuron at ``position`` shows: its effective receptive field, or the whole image."""
    size = ws.model.preprocess.crop
    return box(ws, state, layer, position) or (0, 0, size - 1, size - 1)


@dataclass(frozen=True)
class Effective:
    layer: Layer
    size = 1


class EffectiveStage(EntryStage):
    name = "receptive fields"
    title = "receptive fields (layers)"
    needs = ("activations", "statistics")
    kind = members.RECEPTIVE_FIELDS
    counted = "receptive fields"

    def candidates(self, ws: Workspace, state: State) -> list[Effective]:
        return [Effective(layer) for layer in ws.layers if measurable(layer)]

    def key(self, ws: Workspace, state: State, work: Effective) -> str:
        patches = [(n, ws.probe[i].digest, ws.probe[i].view.spec, p) for n, i, p in sample(ws, state, work.layer)]
        return ws.key(self.kind, work.layer.path, SHARE, patches)

    def expect(self, ws: Workspace, state: State, work: Effective) -> dict:
        return members.expect(self.kind)

    def entry(self, ws: Workspace, state: State, work: Effective) -> dict:
        layer = work.layer
        by_item: dict[int, list[tuple[int, int]]] = {}
        for neuron, index, position in sample(ws, state, layer):
            by_item.setdefault(index, []).append((neuron, position))
        sides = []
        for index, pairs in by_item.items():
            x = ws.tensor([ws.pixels(ws.probe[index])])[0]
            neurons, positions = [n for n, _ in pairs], [p for _, p in pairs]
            grads = gradients(ws.model.module, x, layer.path, ws.modules[layer.path], neurons, positions, [GUIDED],
                              ws.config.compute.batch_size, *ws.crop_args(layer, x))[GUIDED]
            centres = [layer.geometry.centre(*divmod(p, layer.width)) for p in positions]
            sides += mass_sides(grads, centres, SHARE)
        return {members.SIDES: np.asarray(sides, dtype=np.int64)}

    def derive(self, ws: Workspace, state: State) -> State:
        effective = {}
        for work in self.candidates(ws, state):
            sides = self.value(ws, state, work)[members.SIDES]
            side = 2 * int(round((float(sides.mean()) - 1) / 2)) + 1  # odd: a centre pixel
            effective[work.layer.name] = side if side <= WHOLE * ws.model.preprocess.crop else None
        return replace(state, effective=effective)
