"""The featured images' pictures: every mapped neuron by every method, with its edges in the same passes.

One forward per batch of neurons serves a backward pass per method (the
ReLU rule is read when the backward runs); the edge weights ride on the
true-gradient pass.  Pictures are stored whole (shrunk to the size the page
shows) and, where the receptive field is smaller than the image, cut to it
before shrinking, with the photo cut to the same box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ...engine.passes import gradients
from ...engine.pictures import pictures
from ...images import PATCH_SIDE, STORAGE, WHOLE_SIDE, Item, cut, fit
from ...model.layers import Layer
from ...store import members
from ..edges import edges_key
from ..stage import Stage, State, missing
from ..workspace import Workspace
from .activations import read_featured


def pictures_key(ws: Workspace, item: Item, layer: Layer, method: str) -> str:
    return ws.key(members.PICTURES, layer.path, method, PATCH_SIDE, WHOLE_SIDE, STORAGE, item.digest, item.view.spec)


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


def _pictures(ws: Workspace, w: Featured, pixels, positions, result, chunk: list[int]) -> dict:
    """Encoding jobs for one batch's pictures: ``{(method, member): (pixels, encoding)}``."""
    jobs = {}
    zoom = ws.zoomable(w.layer)
    for method in w.methods:
        for neuron, picture in zip(chunk, pictures(result[method])):
            jobs[method, members.picture(neuron)] = (fit(picture, WHOLE_SIDE), "gradient")
            if zoom:  # cut from the whole-size picture: the receptive field keeps every pixel
                box = ws.box(w.layer, int(positions[neuron]))
                jobs[method, members.picture_zoom(neuron)] = (fit(cut(picture, box), PATCH_SIDE), "gradient")
                if method == ws.config.compute.methods[0]:  # the photo cut to the box, kept once
                    jobs[method, members.photo_zoom(neuron)] = (fit(cut(pixels, box), PATCH_SIDE), "patch")
    return jobs


class FeaturedStage(Stage):
    name = "featured images"
    title = "featured images (neurons)"
    needs = ("activations",)

    def plan(self, ws: Workspace, state: State) -> list[Featured]:
        work = []
        for item in ws.featured:
            for layer in ws.layers:
                units = state.mapped[layer.name]
                todo = {m: missing(ws, members.PICTURES, pictures_key(ws, item, layer, m), units, members.picture)
                        for m in ws.config.compute.methods}
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
            lower = ws.modules[w.layer.lower.path] if w.edges else None
            written: dict[str, dict[str, bytes]] = {m: {} for m in w.methods}
            weights = {}
            for start in range(0, len(w.neurons), size * 8):  # several batches a call: equal crops batch together
                chunk = list(w.neurons[start:start + size * 8])
                result = gradients(ws.model.module, x, w.layer.path, ws.modules[w.layer.path], chunk,
                                   positions[chunk].tolist(), w.methods, size, *ws.crop_args(w.layer, x), lower=lower)
                if w.edges:
                    weights.update({members.edges(n): row for n, row in zip(chunk, result["edges"].cpu().numpy())})
                for (method, name), data in ws.encode_many(_pictures(ws, w, pixels, positions, result, chunk)).items():
                    written[method][name] = data
                advance(len(chunk))
            for method in w.methods:
                ws.write(members.PICTURES, pictures_key(ws, w.item, w.layer, method), written[method], add=True)
                ws.count("visualizations", len(w.neurons))
            if w.edges:
                ws.write(members.EDGES, edges_key(ws, w.item, w.layer), weights, add=True)
                ws.count("edges", len(weights))

    def describe(self, ws: Workspace, state: State, work: list[Featured]) -> str:
        return (f"featured images: {sum(w.size for w in work)} neuron pictures and edge sets to compute in "
                f"{len(work)} (image, layer) pairs")
