"""A layer: every mapped neuron as a tile (its best patch), and its optimized images where it has them."""

from __future__ import annotations

from ..atlas import Atlas
from ..links import layer_url, safe_name
from ..model import Page


def build(atlas: Atlas) -> list[Page]:
    pages = []
    for layer in atlas.layers:
        _, notes = atlas.content.note("layers", f"{safe_name(layer.name)}.md")
        below, above = atlas.neighbour(layer, -1), atlas.neighbour(layer, 1)
        pages.append(Page(layer_url(layer.name), "layer.html", f"Layer {layer.name}", {
            "layer": atlas.layer_summary(layer), "notes": notes,
            "tiles": [atlas.tile(layer.name, n) for n in layer.mapped],
            "optimize": atlas.optimize_summary(layer),
            "below": atlas.layer_summary(below) if below else None,
            "above": atlas.layer_summary(above) if above else None}))
    return pages
