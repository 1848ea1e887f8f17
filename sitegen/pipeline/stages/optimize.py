"""Optimized images: for each mapped neuron of the chosen layers, an image made from noise to excite it,
many neurons to a batch; then their check against the probe views and each other."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ...engine.optimization import Recipe, excitation, optimize
from ...model.layers import Layer
from ...store import members
from ..stage import EntryStage, Stage, State, missing, require
from ..workspace import Workspace


def recipe(ws: Workspace) -> Recipe:
    o = ws.config.optimize
    assert o is not None  # asked for the optimized layers alone, which there are only with [optimize]
    return Recipe(steps=o.steps, size=o.size, lr=o.lr, jitter=o.jitter, scale=o.scale, rotate=o.rotate)


def optimized_layers(ws: Workspace) -> list[Layer]:
    o = ws.config.optimize
    if o is None:
        return []
    assert o.layers is not None  # config.load sets it (to layers.use when the config does not)
    return [layer for layer in ws.layers if layer.listed in o.layers]


def optimized_key(ws: Workspace, layer: Layer) -> str:
    return ws.key(members.OPTIMIZED, layer.path, recipe(ws).as_dict(), ws.config.compute.seed)


def excitation_key(ws: Workspace, layer: Layer, units: Sequence[int]) -> str:
    return ws.key(members.EXCITATIONS, optimized_key(ws, layer), ws.probe_hash, list(units))


@dataclass(frozen=True)
class Optimize:
    layer: Layer
    neurons: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.neurons)


class OptimizeStage(Stage):
    name = "optimized images"
    title = "optimized images (neurons)"
    needs = ("activations",)

    def plan(self, ws: Workspace, state: State) -> list[Optimize]:
        size, work = ws.config.compute.batch_size, []
        for layer in optimized_layers(ws):
            todo = missing(ws, members.OPTIMIZED, optimized_key(ws, layer), state.mapped[layer.name], members.optimized)
            work += [Optimize(layer, tuple(todo[start:start + size])) for start in range(0, len(todo), size)]
        return work

    def run(self, ws: Workspace, state: State, work: Sequence[Optimize], advance: Callable[[int], None]) -> None:
        p = ws.model.preprocess
        for w in work:
            images = optimize(ws.model.module, w.layer.path, ws.modules[w.layer.path], list(w.neurons), p.mean,
                              p.std, recipe(ws), ws.config.compute.seed)
            pixels = images.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            encoded = ws.encode_many({members.optimized(n): (picture, "exact")
                                      for n, picture in zip(w.neurons, pixels)})
            ws.write(members.OPTIMIZED, optimized_key(ws, w.layer), encoded, add=True)
            ws.count("optimized images", len(w.neurons))
            advance(len(w.neurons))

    def describe(self, ws: Workspace, state: State, work: list[Optimize]) -> str:
        return "\n".join(f"optimized images, {layer.name}: {sum(w.size for w in work if w.layer == layer)} of "
                         f"{len(state.mapped[layer.name])} to compute" for layer in optimized_layers(ws))


def check(ws: Workspace, layer: Layer, units: Sequence[int]) -> np.ndarray:
    """[U, 3]: how each neuron's optimized image (as stored, 8-bit) excites it, the most any other mapped
    neuron's image excites it, and the most any probe view does (at the model's input)."""
    stored = require(ws, members.OPTIMIZED, optimized_key(ws, layer))
    images = torch.stack([torch.from_numpy(np.array(Image.open(io.BytesIO(stored[members.optimized(n)])).convert(
        "RGB"))).permute(2, 0, 1) for n in units]).float().div(255)
    p, module, index = ws.model.preprocess, ws.modules[layer.path], torch.as_tensor(list(units))
    scores = excitation(ws.model.module, layer.path, module, images, p.mean, p.std)[:, index]
    own = scores.diagonal().clone()
    others = scores.clone()
    others.fill_diagonal_(-torch.inf)
    best_probe = torch.full((len(units),), -torch.inf)
    for pixels in ws.loader(list(ws.probe)):
        batch = excitation(ws.model.module, layer.path, module, pixels.float().div(255), p.mean, p.std)
        best_probe = torch.maximum(best_probe, batch[:, index].amax(dim=0))
    return torch.stack([own, others.amax(dim=0), best_probe], dim=1).numpy()


@dataclass(frozen=True)
class Check:
    layer: Layer
    size = 1


class ExcitationStage(EntryStage):
    name = "optimized images' check"
    title = "optimized images' check (layers)"
    needs = ("activations", "optimized images")
    kind = members.EXCITATIONS
    counted = "optimized image checks"

    def candidates(self, ws: Workspace, state: State) -> list[Check]:
        return [Check(layer) for layer in optimized_layers(ws)]

    def key(self, ws: Workspace, state: State, work: Check) -> str:
        return excitation_key(ws, work.layer, state.mapped[work.layer.name])

    def entry(self, ws: Workspace, state: State, work: Check) -> dict:
        return {members.EXCITATION: check(ws, work.layer, state.mapped[work.layer.name])}
