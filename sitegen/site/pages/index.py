"""The front page: the model, its layers, the featured images with their top predictions."""

from __future__ import annotations

from ..atlas import Atlas
from ..links import image_url
from ..model import Page


def build(atlas: Atlas) -> list[Page]:
    manifest = atlas.manifest
    _, intro = atlas.content.note("index.md")
    images = [{"slug": f.slug, "name": f.name, "url": image_url(f.slug), "photo": atlas.assets.photo(f),
               "predictions": f.predictions[:3]} for f in manifest.featured]
    return [Page("index.html", "index.html", manifest.title, {
        "intro": intro, "layers": [atlas.layer_summary(layer) for layer in manifest.layers], "images": images,
        "model": manifest.model, "probe": manifest.probe,
        "total_neurons": sum(len(layer.neurons) for layer in manifest.layers)})]
