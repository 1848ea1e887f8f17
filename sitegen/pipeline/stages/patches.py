"""Patches: for each neuron's top and percentile items, the photo and the guided-backprop picture (or the
layer's ``layers.patches`` method's) cut to its effective receptive field (or the whole image), the picture on
its own scale, or (``layers.patches`` "map") its activation map laid over the photo; the top items' edges ride
on the same passes.  The neurons that show one probe item go through one gradient call per few batches of them
(so memory does not grow with the neurons), and the photo and the edges are written once per item."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ...engine.capture import capture, inference_state
from ...engine.passes import gradients
from ...engine.pictures import MAP_STYLE, activation_map, display
from ...engine.pictures import cut as cut_gradients
from ...images import PATCH_SIDE, STORAGE, Item, cut, fit
from ...methods import GUIDED, MAP, SMOOTHGRAD
from ...model.layers import Layer
from ...store import members
from ..edges import edges_key
from ..stage import Stage, State, missing
from ..workspace import Workspace
from .effective import patch_box


def patches_key(ws: Workspace, state: State, item: Item, layer: Layer) -> str:
    shown = kind(ws, layer)  # SmoothGrad's noise, or how a map is drawn
    style = [ws.smoothgrad.as_dict()] if shown == SMOOTHGRAD else [MAP_STYLE] if shown == MAP else []
    return ws.key(members.PATCHES, layer.path, PATCH_SIDE, STORAGE, state.effective.get(layer.name), item.digest,
                  item.view.spec, *style)


@dataclass(frozen=True)
class Patches:
    layer: Layer
    index: int  # of the probe item
    neurons: tuple[int, ...]
    positions: tuple[int, ...]
    patches: bool  # some of the neurons lack their patch
    edges: bool  # some lack their edges (top views only)

    @property
    def size(self) -> int:
        return len(self.neurons)



def kind(ws: Workspace, layer: Layer) -> str:
    """What the layer's patches show beside their photos (methods.PATCH_KINDS)."""
    return ws.config.layers.patches.get(layer.listed, GUIDED)


def _patches(ws: Workspace, state: State, layer: Layer, pixels: np.ndarray, neurons: list[int],
             positions: list[int], grads: torch.Tensor | None, out: torch.Tensor | None,
             stored: set[str]) -> dict[str, object]:
    """Members for some neurons' patches on one photo: each gradient picture (``grads``) cut to its box and shown
    on its own scale, or (``out``: the layer's output on the photo, [C, H, W]) its activation map over the photo cut to
    the box; its scale (the map's maximum); and the photo of each box not ``stored`` yet (a box serves every
    neuron that shares it)."""
    boxes = [patch_box(ws, state, layer, int(position)) for position in positions]
    if out is not None:
        ring = (boxes[0][2] - boxes[0][0] + 1) * 2 > pixels.shape[0]  # a small box is centred on the position
        shown = [fit(cut(activation_map(pixels, out[n], int(p), ring), box), PATCH_SIDE)
                 for n, p, box in zip(neurons, positions, boxes)]
        scales = [float(out[n].max()) for n in neurons]
    else:
        assert grads is not None
        pictures, values = display(cut_gradients(grads, boxes), PATCH_SIDE)
        shown, scales = list(pictures), values.tolist()
    jobs, written, picture = {}, {}, kind(ws, layer)
    for k, neuron in enumerate(neurons):
        photo = members.patch_photo(boxes[k])
        if photo not in stored and photo not in jobs:
            jobs[photo] = (fit(cut(pixels, boxes[k]), PATCH_SIDE), "picture")
        jobs[members.patch_picture(picture)(neuron)] = (shown[k], "picture")
        written[members.patch_scale(neuron, picture)] = np.array([scales[k]], dtype=np.float32)
    return {**ws.encode_many(jobs), **written}


class PatchesStage(Stage):
    name = "top patches"
    title = "top patches (neurons)"
    needs = ("activations", "statistics", "receptive fields")

    def plan(self, ws: Workspace, state: State) -> list[Patches]:
        work = []
        for layer in ws.layers:
            top = state.tops[layer.name]
            wanted, levels = top.wanted(), top.wanted_levels()
            for index in sorted(set(wanted) | set(levels)):
                item, where = ws.probe[index], {**levels.get(index, {}), **wanted.get(index, {})}
                key, shown = patches_key(ws, state, item, layer), kind(ws, layer)
                patches = sorted({*missing(ws, members.PATCHES, key, sorted(where), members.patch_picture(shown)),
                                  *missing(ws, members.PATCHES, key, sorted(where),
                                           partial(members.patch_scale, kind=shown))})  # written with the other
                edges = (missing(ws, members.EDGES, edges_key(ws, item, layer), sorted(wanted.get(index, {})),
                                 members.edges) if layer.lower is not None else [])
                if patches or edges:
                    todo = sorted(set(patches) | set(edges))
                    work.append(Patches(layer, index, tuple(todo), tuple(where[n] for n in todo), bool(patches),
                                        bool(edges)))
        return sorted(work, key=lambda w: w.index)  # a photo's layers one after another: it is read once

    def run(self, ws: Workspace, state: State, work: Sequence[Patches], advance: Callable[[int], None]) -> None:
        size, index, pixels, x = ws.config.compute.batch_size, -1, None, None
        for w in work:
            item, layer = ws.probe[w.index], w.layer
            if w.index != index:  # the plan keeps a photo's layers together
                index, pixels = w.index, ws.pixels(item)
                x = ws.tensor([pixels])[0]
            assert pixels is not None and x is not None  # read above for the first work
            stored = ws.cache.names(members.PATCHES, patches_key(ws, state, item, layer)) if w.patches else set()
            written: dict[str, object] = {}
            weights = {}
            out, shown = None, kind(ws, layer)
            if w.patches and shown == MAP:  # the maps: one forward to the layer
                with inference_state(ws.model.module), torch.no_grad():
                    out = capture(ws.model.module, x[None], {layer.path: ws.modules[layer.path]},
                                  copy=True)[layer.path][0]
            method = [shown] if w.patches and out is None else []  # a picture method's
            for start in range(0, len(w.neurons), size * 8):  # a few batches a call: memory flat in neurons
                neurons, positions = list(w.neurons[start:start + size * 8]), list(w.positions[start:start + size * 8])
                result = gradients(ws.model.module, x, layer.path, ws.modules[layer.path], neurons, positions,
                                   method, size, *ws.crop_args(layer, x), smooth=ws.smoothgrad,
                                   lower=ws.modules[layer.lower.path] if w.edges and layer.lower is not None else None)
                if w.patches:
                    written.update(_patches(ws, state, layer, pixels, neurons, positions,
                                            result[method[0]] if method else None, out, stored | set(written)))
                if w.edges:
                    weights.update({members.edges(n): row for n, row in zip(neurons, result["edges"].cpu().numpy())})
                advance(len(neurons))
            if w.patches:
                ws.write(members.PATCHES, patches_key(ws, state, item, layer), written, add=True)
                ws.count("patches", len(w.neurons))
            if w.edges:
                ws.write(members.EDGES, edges_key(ws, item, layer), weights, add=True)
                ws.count("edges", len(w.neurons))

    def describe(self, ws: Workspace, state: State, work: list[Patches]) -> str:
        return f"top patches: {sum(w.size for w in work)} to compute over {len({w.index for w in work})} probe views"
