"""A layer: every mapped neuron as a tile (its best patch), and its optimized images where it has them.

A layer of more than PER_PAGE mapped neurons is split into pages of PER_PAGE
tiles, linked to each other, so that a page stays light (4,096 tiles would
be about 1.6 MB of HTML and a page thousands of screens tall on a phone).
"""

from __future__ import annotations

from ..atlas import Atlas
from ..links import layer_url, safe_name
from ..model import Page

PER_PAGE = 512


def build(atlas: Atlas) -> list[Page]:
    pages = []
    for layer in atlas.layers:
        _, notes = atlas.content.note("layers", f"{safe_name(layer.name)}.md")
        below, above = atlas.neighbour(layer, -1), atlas.neighbour(layer, 1)
        mapped = layer.mapped
        chunks = [mapped[start:start + PER_PAGE] for start in range(0, len(mapped), PER_PAGE)] or [()]
        parts = [{"url": layer_url(layer.name, k), "first": chunk[0], "last": chunk[-1]}
                 for k, chunk in enumerate(chunks)] if len(chunks) > 1 else []
        for k, chunk in enumerate(chunks):
            title = f"Layer {layer.name}" + (f", neurons {chunk[0]} to {chunk[-1]}" if parts else "")
            pages.append(Page(layer_url(layer.name, k), "layer.html", title, {
                "layer": atlas.layer_summary(layer), "notes": notes if k == 0 else "",
                "tiles": [atlas.tile(layer.name, n) for n in chunk], "parts": parts, "part": k,
                "optimize": atlas.optimize_summary(layer),
                "checks": atlas.checks(layer),
                # a classifier's classes that the model predicts first on no probe view: their best patches are
                # other things that raise the logit
                "unpredicted": sum(1 for record in layer.neurons if record.predicted == 0),
                "below": atlas.layer_summary(below) if below else None,
                "above": atlas.layer_summary(above) if above else None}))
    return pages
