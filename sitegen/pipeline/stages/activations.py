"""Activations: every neuron's maximum and its position on every featured and probe view.

A forward pass truncated at the deepest layer wanted; featured views one
entry each ([C] arrays), probe views in chunks of ``CHUNK`` ([n, C]), so a
new image computes only its chunk and memory does not grow with the probe
set.  Every later stage reads these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...engine.passes import activations
from ...images import Item
from ...model.layers import Layer
from ...store import members
from ..loading import return_freed_memory
from ..stage import Stage, State
from ..workspace import Workspace

CHUNK = 256  # probe views per entry


def featured_key(ws: Workspace, item: Item, layer: Layer) -> str:
    return ws.key(members.ACTIVATIONS, layer.path, item.digest, item.view.spec)


def chunk_key(ws: Workspace, items: Sequence[Item], layer: Layer) -> str:
    # the same kind of entry as a featured view's, under keys of their own
    return ws.key(members.ACTIVATIONS + "-chunk", layer.path, [(item.digest, item.view.spec) for item in items])


def chunks(ws: Workspace) -> list[tuple[int, tuple[Item, ...]]]:
    """The probe set in chunks: (index of the first view, the views)."""
    return [(start, ws.probe[start:start + CHUNK]) for start in range(0, len(ws.probe), CHUNK)]


@dataclass(frozen=True)
class Activations:
    items: tuple[Item, ...]
    featured: bool  # one featured view, or a chunk of probe views
    layers: tuple[Layer, ...]  # the layers its entries lack

    @property
    def size(self) -> int:
        return len(self.items)

    def key(self, ws: Workspace, layer: Layer) -> str:
        return featured_key(ws, self.items[0], layer) if self.featured else chunk_key(ws, self.items, layer)


def mine(ws: Workspace, groups: list[tuple[Sequence[Item], Sequence[Layer]]],
         advance: Callable[[int], None] = lambda n: None) -> Iterator[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """For each group (items, layers) in turn, the activations of its layers on its items,
    ``{path: (values [n, C], positions [n, C])}`` as numpy.  One DataLoader serves all groups,
    so its workers keep decoding across the groups' borders."""
    batches = iter(ws.loader([item for items, _ in groups for item in items], [len(items) for items, _ in groups]))
    for items, layers in groups:
        modules = {layer.path: ws.modules[layer.path] for layer in layers}
        parts: dict[str, list] = {layer.path: [] for layer in layers}
        done = 0
        while done < len(items):
            pixels = next(batches)
            # kept on the device until the group ends: no wait for the GPU after each batch
            result = activations(ws.model.module, ws.normalise(pixels), modules, pixels.shape[0], on_device=True)
            for path, pair in result.items():
                parts[path].append(pair)
            return_freed_memory()
            done += pixels.shape[0]
            advance(pixels.shape[0])
        yield {path: (torch.cat([v for v, _ in pairs]).cpu().numpy(), torch.cat([p for _, p in pairs]).cpu().numpy())
               for path, pairs in parts.items()}


def _read(ws: Workspace, key: str, items: Sequence[Item], layer: Layer, featured: bool,
          ) -> tuple[np.ndarray, np.ndarray]:
    entry = ws.cache.get(members.ACTIVATIONS, key, expect=members.expect(members.ACTIVATIONS, layer.count,
                                                                   rows=not featured))
    if entry is None:  # damaged (or found wrong) since it was written: compute again
        values, positions = next(mine(ws, [(items, [layer])]))[layer.path]
        if featured:
            values, positions = values[0], positions[0]
        entry = {members.VALUES: values, members.POSITIONS: positions}
        ws.cache.put(members.ACTIVATIONS, key, entry)
    return entry[members.VALUES], entry[members.POSITIONS]


def read_featured(ws: Workspace, item: Item, layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """A featured view's activations and positions, [C] each."""
    return _read(ws, featured_key(ws, item, layer), [item], layer, True)


def read_chunk(ws: Workspace, items: Sequence[Item], layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """Probe views' activations and positions, [n, C] each."""
    return _read(ws, chunk_key(ws, items, layer), items, layer, False)


def probe_values(ws: Workspace, layer: Layer, units: Sequence[int]) -> Callable[[], Iterator[np.ndarray]]:
    """A pass over the probe set: the activations of ``units``, [n, U] per chunk."""
    def chunk_values() -> Iterator[np.ndarray]:
        for _, items in chunks(ws):
            yield read_chunk(ws, items, layer)[0][:, units]
    return chunk_values


class ActivationsStage(Stage):
    name = "activations"
    title = "activations"

    def plan(self, ws: Workspace, state: State) -> list[Activations]:
        work = [Activations((item,), True, ws.layers) for item in ws.featured]
        work += [Activations(items, False, ws.layers) for _, items in chunks(ws)]
        todo = []
        for w in work:
            missing = tuple(layer for layer in ws.layers if not ws.cache.has(members.ACTIVATIONS, w.key(ws, layer)))
            if missing:
                todo.append(Activations(w.items, w.featured, missing))
        return todo

    def run(self, ws: Workspace, state: State, work: Sequence[Activations], advance: Callable[[int], None]) -> None:
        results = mine(ws, [(w.items, w.layers) for w in work], advance)
        for w, result in zip(work, results):
            for layer in w.layers:
                values, positions = result[layer.path]
                if w.featured:  # one view: [C]
                    values, positions = values[0], positions[0]
                ws.write(members.ACTIVATIONS, w.key(ws, layer), {members.VALUES: values, members.POSITIONS: positions})
            ws.count("activations", len(w.items))

    def describe(self, ws: Workspace, state: State, work: list[Activations]) -> str:
        return (f"activations: {sum(w.size for w in work)} of {len(ws.featured) + len(ws.probe)} views "
                f"to compute")
