"""What each neuron does to the classes (DESIGN §2, ``[effects]``): per layer of ``effects.layers``, over the
probe set, each mapped neuron's first-order effect on every candidate class (a class among the top
``effects.top`` predictions of some probe view): its mean edge weight to the class's logit.  For up to
``effects.ablated`` of the mapped neurons, spread evenly, the exact effect on the ``effects.exact`` classes it
raises most: the mean logit the class loses when the neuron is zeroed at every position (every mapped
neuron without ``effects.ablated``).  One entry per layer; the record shows each neuron's ``effects.shown``
strongest classes, and the layer's agreement of the two (Spearman, over the pairs computed exactly).  The
first-order effects of every listed layer come from one backward pass per probe view and class
(:func:`first_orders`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from ...engine.capture import inference_state
from ...engine.effects import ablation, first_order
from ...model.layers import Layer
from ...store import members
from ..stage import EntryStage, State
from ..workspace import Workspace

T = TypeVar("T")


def applies(ws: Workspace, layer: Layer) -> bool:
    return layer.listed in ws.config.effects.layers


def spread(units: Sequence[T], count: int) -> list[T]:
    """Up to ``count`` of ``units``, spread evenly over them."""
    if len(units) <= count:
        return list(units)
    if count <= 1:
        return list(units[:count])
    return [units[round(k * (len(units) - 1) / (count - 1))] for k in range(count)]


def candidate_classes(ws: Workspace) -> list[int]:
    """The classes among the top ``effects.top`` predictions of some probe view, in order (made once a build)."""
    def make() -> list[int]:
        found: set[int] = set()
        with inference_state(ws.model.module), torch.no_grad():
            for pixels in ws.loader(list(ws.probe)):
                logits = ws.model.module(ws.normalise(pixels))
                found.update(logits.topk(min(ws.config.effects.top, logits.shape[1]), dim=1).indices.flatten().tolist())
        return sorted(found)
    return ws.kept("candidate classes", ws.probe_hash, make)


def first_orders(ws: Workspace, layer: Layer, classes: list[int]) -> torch.Tensor:
    """``[len(classes), C]``: the layer's first-order effects summed over the probe views.  Computed for the
    layer and every effects layer above it at once, since each backward pass (one per probe view and class)
    that reaches a layer passes those above it: listed lowest first, the layers' entries cost the lowest
    one's passes, not the sum of theirs.  The others are kept for their entries."""
    kept: dict[str, torch.Tensor] = ws.kept("first-order effects", (ws.probe_hash, tuple(classes)), dict)
    if layer.path not in kept:
        above = ws.layers[ws.layers.index(layer):]
        modules = {other.path: ws.modules[other.path] for other in above if applies(ws, other)}
        sums: dict[str, torch.Tensor] = {}
        for pixels in ws.loader(list(ws.probe)):
            for path, value in first_order(ws.model.module, ws.normalise(pixels), modules, classes,
                                           ws.config.compute.batch_size).items():
                sums[path] = sums[path] + value.cpu().double() if path in sums else value.cpu().double()
        kept.update(sums)
    return kept.pop(layer.path)


@dataclass(frozen=True)
class Effects:
    layer: Layer
    size = 1


class EffectsStage(EntryStage):
    name = "effects"
    title = "effects on the classes (layers)"
    needs = ("activations",)
    kind = members.EFFECTS
    counted = "effect sets"

    def candidates(self, ws: Workspace, state: State) -> list[Effects]:
        return [Effects(layer) for layer in ws.layers if applies(ws, layer)]

    def key(self, ws: Workspace, state: State, work: Effects) -> str:
        e = ws.config.effects
        return ws.key(members.EFFECTS, work.layer.path, ws.probe_hash, e.top, e.exact, e.ablated,
                      list(state.mapped[work.layer.name]))

    def expect(self, ws: Workspace, state: State, work: Effects) -> dict:
        return members.expect(members.EFFECTS, len(state.mapped[work.layer.name]))

    def entry(self, ws: Workspace, state: State, work: Effects) -> dict:
        layer, units, e = work.layer, list(state.mapped[work.layer.name]), ws.config.effects
        module, classes = ws.modules[layer.path], candidate_classes(ws)
        first = first_orders(ws, layer, classes)[:, units] / len(ws.probe)  # [K, U]: the means
        ablated = units if e.ablated is None else spread(tuple(units), e.ablated)
        strongest = [first[:, units.index(n)].argsort(descending=True)[:e.exact].tolist() for n in ablated]
        chosen = [[classes[k] for k in row] for row in strongest]
        lost = torch.zeros(len(ablated), min(e.exact, len(classes)), dtype=torch.float64)
        if ablated and e.exact:
            for pixels in ws.loader(list(ws.probe)):
                lost += ablation(ws.model.module, ws.normalise(pixels), module, ablated, chosen,
                                 ws.config.compute.batch_size).cpu()
        return {members.EFFECT_CLASSES: np.asarray(classes, dtype=np.int64),
                members.FIRST_ORDER: first.numpy().astype(np.float32),
                members.ABLATED: np.asarray(ablated, dtype=np.int64),
                members.ABLATED_CLASSES: np.asarray(chosen, dtype=np.int64).reshape(len(ablated), -1),
                members.ABLATION: (lost / len(ws.probe)).numpy().astype(np.float32)}

    def describe(self, ws: Workspace, state: State, work: list[Effects]) -> str:
        return f"effects: {len(work)} of {len(ws.config.effects.layers)} layers to compute"


def read(ws: Workspace, state: State, layer: Layer) -> dict:
    return EffectsStage().value(ws, state, Effects(layer))
