"""The neurons to map of each layer: all of them, a list, or the N most active on each featured image."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...errors import SitegenError
from ...model.layers import Layer
from ...store.manifest import classifier_output
from ..stage import Stage, State
from ..workspace import Workspace
from .activations import read_featured


def select(ws: Workspace, layer: Layer) -> tuple[int, ...]:
    choice = ws.config.layers.neurons.get(layer.listed, "all")
    if choice == "all":
        return tuple(range(layer.count))
    if isinstance(choice, int):
        if not ws.featured:
            raise SitegenError(f"layers.neurons.{layer.listed} = {choice} picks the most active neurons of the "
                               f"featured images, but there are none")
        chosen: set[int] = set()
        for item in ws.featured:
            values, _ = read_featured(ws, item, layer)
            chosen.update(np.argsort(-values, kind="stable")[:choice].tolist())
        return tuple(sorted(chosen))
    bad = [n for n in choice if n >= layer.count]
    if bad:
        raise SitegenError(f"layers.neurons.{layer.listed}: {bad} out of range; {layer.name} has {layer.count} "
                           f"neurons")
    return tuple(sorted(set(choice)))


def selection_text(ws: Workspace, layer: Layer) -> str:
    """Which neurons are mapped, in words ("" for all of them)."""
    choice = ws.config.layers.neurons.get(layer.listed, "all")
    if choice == "all":
        return ""
    if isinstance(choice, int):
        what = "predicted classes" if classifier_output(layer.shape, ws.model.categories) else "most active neurons"
        return f"the top {choice} {what} of each featured image"
    return "the neurons chosen in the config"


class MappedStage(Stage):
    name = "mapped neurons"
    needs = ("activations",)

    def derive(self, ws: Workspace, state: State) -> State:
        return replace(state, mapped={layer.name: select(ws, layer) for layer in ws.layers})

    def describe(self, ws: Workspace, state: State, work: list) -> str:
        return ""
