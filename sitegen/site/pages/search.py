"""The search page, and its index of every layer, neuron and featured image in a script file (a script,
not JSON, so that it loads from file:// too)."""

from __future__ import annotations

import json
import re

from ..atlas import Atlas
from ..links import class_url, image_url, layer_url, neuron_url
from ..model import File, Page, portable


def build(atlas: Atlas) -> list[Page | File]:
    manifest = atlas.manifest
    results: list[dict[str, str | float]] = [{"t": f"Layer {layer.name}", "d": layer.path, "u": layer_url(layer.name)}
                                             for layer in atlas.layers]
    for layer in atlas.layers:
        for record in layer.neurons:
            label, notes = atlas.labels[(layer.name, record.neuron)]
            sources = sorted({manifest.probe.items[patch.item].name for patch in record.top})
            sources += [c.name for c in record.classes]  # "dog" finds the neurons whose top images are dogs
            sources += [effect.label for effect in record.effects if effect.first_order > 0]  # "lamp": table lamp
            words = " ".join([re.sub(r"<[^>]+>", " ", notes)] + sources).strip()
            entry: dict[str, str | float] = {"t": f"{layer.name}/{record.neuron}" + (f" {label}" if label else ""),
                                             "u": neuron_url(layer.name, record.neuron)}
            change = atlas.changes.get((layer.name, record.neuron))
            if change is not None:  # "change>0.5" finds it by its change score; "died", "born" by its status
                entry["c"] = round(change.change, 3)
                words = " ".join(filter(None, [change.status, f"change {change.change:.2f}", words]))
            results.append({**entry, "d": words})
    labels = sorted({item.label for item in manifest.probe.items if item.label})
    results += [{"t": f"Class {name}", "d": "the neurons its images make fire most", "u": class_url(name)}
                for name in labels]
    for featured in manifest.featured:
        results.append({"t": featured.name, "d": " ".join(p.label for p in featured.predictions),
                        "u": image_url(featured.slug)})
    text = json.dumps(portable(results), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return [Page("search.html", "search.html", "Search", {"compare": manifest.compare is not None}),
            File("search-index.js", f"window.SITEGEN_INDEX = {text};\n".encode())]
