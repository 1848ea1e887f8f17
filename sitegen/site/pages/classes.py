"""Classes (a labelled probe set): an index of the probe set's classes, and for each class the neurons of
every layer that its images make fire most, by the share of their top images of that class: the way in for
a reader who thinks in classes."""

from __future__ import annotations

from collections import Counter

from ..atlas import Atlas
from ..links import class_url
from ..model import Page

SHOWN = 12  # neurons per layer on a class's page


def build(atlas: Atlas) -> list[Page]:
    items = atlas.manifest.probe.items
    files = {item.name: item.label for item in items if item.label}
    if not files:
        return []
    counts = Counter(files.values())
    names = sorted(counts)
    pages = []
    for name in names:
        layers = []
        for layer in atlas.layers:
            found = [(share, record.neuron) for record in layer.neurons for share in
                     [next((c for c in record.classes if c.name == name), None)] if share is not None]
            found.sort(key=lambda pair: (-pair[0].share, -pair[0].selectivity, pair[1]))
            tiles = []
            for share, neuron in found[:SHOWN]:
                tile = atlas.tile(layer.name, neuron)
                tiles.append({**tile, "share": share.share, "selectivity": share.selectivity})
            layers.append({"layer": atlas.layer_summary(layer), "tiles": tiles, "count": len(found)})
        pages.append(Page(class_url(name), "class.html", f"Class {name}", {
            "name": name, "files": counts[name], "total": len(files), "layers": layers,
            "top": atlas.manifest.probe.label_top}))
    index = [{"name": name, "url": class_url(name), "files": counts[name],
              "neurons": sum(1 for layer in atlas.layers for record in layer.neurons
                             if record.classes and record.classes[0].name == name)} for name in names]
    return [Page("classes.html", "classes.html", "Classes", {"classes": index, "total": len(files),
                                                              "top": atlas.manifest.probe.label_top}), *pages]
