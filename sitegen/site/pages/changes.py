"""Changes (an atlas with ``[compare]``): per layer, the neurons by change score, each beside its match in
the other checkpoint, and the layer's distribution of scores; ``changes.json``, the same as data."""

from __future__ import annotations

from ...stats.compare import __doc__ as SCORE
from ...stats.histogram import context as bars
from ..atlas import Atlas
from ..links import neuron_url
from ..model import File, Page, json_file

SHOWN = 48  # changed neurons of a layer shown with their tiles, most changed first; the rest are listed as links
CHANGED = 0.01  # a change score below this is shown as unchanged
BINS = 10


def pair(atlas: Atlas, layer: str, change) -> dict:
    """A neuron beside its match: both tiles and the figures of the change."""
    before = atlas.before
    assert before is not None  # a change is shown only with a comparison
    return {"neuron": change.neuron, "match": change.match, "change": change.change, "status": change.status,
            "correlation": change.correlation, "top_overlap": change.top_overlap,
            "edge_overlap": change.edge_overlap, "url": neuron_url(layer, change.neuron) + "#before",
            "after": atlas.tile(layer, change.neuron), "before": before.tile(layer, change.match)}


def score_text() -> str:
    """How the change score is made, in words (the docstring of ``stats/compare.py`` after its first lines)."""
    return " ".join(SCORE.split("\n\n", 1)[1].split())


def data(atlas: Atlas) -> dict:
    compare = atlas.manifest.compare
    assert compare is not None  # changes.json is written only with a comparison
    return {"against": compare.label, "match": compare.match, "score": score_text(),
            "layers": [{"name": layer.name, "neurons": [
                {"neuron": c.neuron, "match": c.match, "correlation": c.correlation, "top_overlap": c.top_overlap,
                 "edge_overlap": c.edge_overlap, "change": c.change, "status": c.status or None}
                for c in layer.neurons]} for layer in compare.layers]}


def build(atlas: Atlas) -> list[Page | File]:
    compare = atlas.manifest.compare
    if compare is None:
        return []
    layers = []
    for changes in compare.layers:
        layer = atlas.layer(changes.name)
        ranked = sorted(changes.neurons, key=lambda c: (-c.change, c.neuron))
        scores = [c.change for c in changes.neurons]
        counts = [0] * BINS
        for s in scores:
            counts[min(BINS - 1, int(s * BINS))] += 1
        changed = [c for c in ranked if c.change >= CHANGED]
        layers.append({
            "layer": atlas.layer_summary(layer), "logits": atlas.is_logits(layer), "changed": len(changed),
            "shown": [pair(atlas, layer.name, c) for c in changed[:SHOWN]],
            "rest": [{"neuron": c.neuron, "change": c.change, "url": neuron_url(layer.name, c.neuron) + "#before"}
                     for c in changed[SHOWN:]],
            "unchanged": [{"neuron": c.neuron, "url": neuron_url(layer.name, c.neuron) + "#before"}
                          for c in ranked[len(changed):]],
            "mean": sum(scores) / len(scores) if scores else 0.0,
            "died": [{"neuron": c.neuron, "url": neuron_url(layer.name, c.neuron) + "#before"}
                     for c in changes.neurons if c.status == "died"],
            "born": [{"neuron": c.neuron, "url": neuron_url(layer.name, c.neuron) + "#before"}
                     for c in changes.neurons if c.status == "born"],
            "histogram": bars({"counts": counts, "low": 0.0, "high": 1.0, "mean": 0.0})})
    return [Page("changes.html", "changes.html", f"Changes since {compare.label}", {
                "label": compare.label, "match": compare.match, "layers": layers, "score": score_text(),
                "changed": CHANGED,
                "before_model": compare.before.model}),
            json_file("changes.json", data(atlas), indent=1)]
