"""The featured images' pictures: every mapped neuron by each of its layer's methods, with its edges in the
same passes.

One forward per batch of neurons serves a backward pass per method (the ReLU
rule is read when the backward runs); the edge weights ride on the
true-gradient pass.  Each picture is shown on its own scale
(``engine/pictures.py``): the whole picture, shrunk to the size the page
shows, and, where the layer's effective receptive field is part of the image,
the picture cut to it (scaled on its own) and the photo cut to the same box.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ...engine.passes import gradients
from ...engine.pictures import cut as cut_gradients
from ...engine.pictures import display
from ...images import STORAGE, WHOLE_SIDE, Item, cut, fit
from ...methods import SMOOTHGRAD
from ...model.layers import Layer
from ...store import members
from ..edges import edges_key
from ..stage import Stage, State, missing
from ..workspace import Workspace
from .activations import read_featured
from .effective import box


def pictures_key(ws: Workspace, state: State, item: Item, layer: Layer, method: str) -> str:
    smooth = ws.smoothgrad.as_dict() if method == SMOOTHGRAD else None  # its noise, in the key of its pictures
    return ws.key(members.PICTURES, layer.path, method, WHOLE_SIDE, STORAGE, state.effective.get(layer.name),
                  item.digest, item.view.spec, *([smooth] if smooth else []))


@dataclass(frozen=True)
class Featured:
    item: Item
    layer: Layer
    neurons: tuple[int, ...]
    methods: tuple[str, ...]  # the methods whose pictures some of the neurons lack
    edges: bool  # whether some lack their edges

    @property
    def size(self) -> int:
        return len(self.neurons)


def _pictures(ws: Workspace, state: State, w: Featured, pixels: np.ndarray, positions: np.ndarray,
              result: dict, chunk: list[int]) -> tuple[dict, dict]:
    """One batch's pictures: encoding jobs ``{(method, member): (pixels, encoding)}`` and their scales
    ``{(method, member): [whole, zoom]}`` (NaN for no zoom)."""
    jobs, scales = {}, {}
    boxes = [box(ws, state, w.layer, int(positions[n])) for n in chunk]
    zoom = boxes[0] is not None
    known = [b for b in boxes if b is not None]  # all of them where zoom: a layer's neurons have a box, or none
    for method in w.methods:
        whole, whole_scales = display(result[method], WHOLE_SIDE)
        zoomed, zoom_scales = display(cut_gradients(result[method], known), WHOLE_SIDE) if zoom else (None, None)
        for k, neuron in enumerate(chunk):
            jobs[method, members.picture(neuron)] = (whole[k], "picture")
            scales[method, members.picture_scales(neuron)] = np.array(
                [whole_scales[k], zoom_scales[k] if zoom_scales is not None else np.nan], dtype=np.float32)
            if zoomed is not None:  # where zoom
                jobs[method, members.picture_zoom(neuron)] = (zoomed[k], "picture")
                if method == ws.config.layers.methods[w.layer.listed][0]:  # the photo cut to the box, kept once
                    jobs[method, members.photo_zoom(neuron)] = (fit(cut(pixels, known[k]), WHOLE_SIDE), "picture")
    return jobs, scales


class FeaturedStage(Stage):
    name = "featured images"
    title = "featured images (neurons)"
    needs = ("activations", "statistics", "receptive fields")

    def plan(self, ws: Workspace, state: State) -> list[Featured]:
        work = []
        for item in ws.featured:
            for layer in ws.layers:
                units, methods = state.mapped[layer.name], ws.config.layers.methods[layer.listed]
                todo = {m: missing(ws, members.PICTURES, pictures_key(ws, state, item, layer, m), units,
                                   members.picture) for m in methods}
                if state.effective.get(layer.name) is not None:  # the photo of each zoom: with the first method's
                    first = pictures_key(ws, state, item, layer, methods[0])
                    todo[methods[0]] = sorted({*todo[methods[0]], *missing(ws, members.PICTURES, first, units,
                                                                          members.photo_zoom)})
                todo = {m: n for m, n in todo.items() if n}
                edges = (missing(ws, members.EDGES, edges_key(ws, item, layer), units, members.edges)
                         if layer.lower is not None else [])
                neurons = sorted(set(edges).union(*todo.values()))
                if neurons:
                    work.append(Featured(item, layer, tuple(neurons), tuple(todo), bool(edges)))
        return work

    def run(self, ws: Workspace, state: State, work: Sequence[Featured], advance: Callable[[int], None]) -> None:
        size = ws.config.compute.batch_size
        for w in work:
            pixels = ws.pixels(w.item)
            x = ws.tensor([pixels])[0]
            _, positions = read_featured(ws, w.item, w.layer)
            lower = ws.modules[w.layer.lower.path] if w.edges and w.layer.lower is not None else None
            written: dict[str, dict[str, bytes]] = {m: {} for m in w.methods}
            weights = {}
            for start in range(0, len(w.neurons), size * 8):  # several batches a call: equal crops batch together
                chunk = list(w.neurons[start:start + size * 8])
                result = gradients(ws.model.module, x, w.layer.path, ws.modules[w.layer.path], chunk,
                                   positions[chunk].tolist(), w.methods, size, *ws.crop_args(w.layer, x), lower=lower,
                                   smooth=ws.smoothgrad)
                if w.edges:
                    weights.update({members.edges(n): row for n, row in zip(chunk, result["edges"].cpu().numpy())})
                jobs, scales = _pictures(ws, state, w, pixels, positions, result, chunk)
                for (method, name), data in [*ws.encode_many(jobs).items(), *scales.items()]:
                    written[method][name] = data
                advance(len(chunk))
            for method in w.methods:
                ws.write(members.PICTURES, pictures_key(ws, state, w.item, w.layer, method), written[method],
                         add=True)
                ws.count("visualizations", len(w.neurons))
            if w.edges:
                ws.write(members.EDGES, edges_key(ws, w.item, w.layer), weights, add=True)
                ws.count("edges", len(weights))

    def describe(self, ws: Workspace, state: State, work: list[Featured]) -> str:
        return (f"featured images: {sum(w.size for w in work)} neuron pictures and edge sets to compute in "
                f"{len(work)} (image, layer) pairs")
