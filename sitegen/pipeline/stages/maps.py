"""Activation maps: where on each featured image a channel fires.  Its map, upsampled to the model's input,
laid over the faded photo with its maximum marked (``engine/pictures.activation_map``); and each channel's
least value over the map, which says whether the layer's outputs can be negative."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...engine.capture import capture, inference_state
from ...engine.pictures import MAP_STYLE, activation_map
from ...images import STORAGE, WHOLE_SIDE, Item, fit
from ...model.layers import Layer
from ...store import members
from ..stage import Stage, State, missing
from ..workspace import Workspace


def maps_key(ws: Workspace, item: Item, layer: Layer) -> str:
    return ws.key(members.MAPS, layer.path, WHOLE_SIDE, STORAGE, MAP_STYLE, item.digest, item.view.spec)


@dataclass(frozen=True)
class Maps:
    item: Item
    layer: Layer
    neurons: tuple[int, ...]  # the mapped neurons whose map the entry lacks

    @property
    def size(self) -> int:
        return len(self.neurons)


class MapsStage(Stage):
    name = "activation maps"
    title = "activation maps (neurons)"
    needs = ("activations",)

    def plan(self, ws: Workspace, state: State) -> list[Maps]:
        work = []
        for item in ws.featured:
            for layer in ws.layers:
                if len(layer.shape) == 3:
                    todo = missing(ws, members.MAPS, maps_key(ws, item, layer), state.mapped[layer.name],
                                   members.activation_map)
                    if todo:
                        work.append(Maps(item, layer, tuple(todo)))
        return work

    def run(self, ws: Workspace, state: State, work: Sequence[Maps], advance: Callable[[int], None]) -> None:
        for w in work:
            pixels = ws.pixels(w.item)
            with inference_state(ws.model.module), torch.no_grad():
                out = capture(ws.model.module, ws.tensor([pixels]), {w.layer.path: ws.modules[w.layer.path]},
                              copy=True)[w.layer.path][0]
            flat = out.reshape(out.shape[0], -1)
            positions = flat.argmax(dim=1).tolist()
            jobs = {members.activation_map(n): (fit(activation_map(pixels, out[n], positions[n]), WHOLE_SIDE),
                                                "picture") for n in w.neurons}
            minima = {members.MINIMA: flat.amin(dim=1).float().cpu().numpy().astype(np.float32)}
            ws.write(members.MAPS, maps_key(ws, w.item, w.layer), {**ws.encode_many(jobs), **minima}, add=True)
            ws.count("activation maps", len(w.neurons))
            advance(len(w.neurons))
