"""A featured image: the model's predictions, the most active neurons of each layer, and the tree of
strongest edges from the top class down through every layer."""

from __future__ import annotations

from ...methods import BY_NAME
from ...store.manifest import FeaturedRecord, LayerRecord
from ..atlas import Atlas
from ..links import image_url, neuron_url
from ..model import Page


def most_active(atlas: Atlas, featured: FeaturedRecord, layer: LayerRecord) -> dict:
    """The layer's most active neurons on the image: where each fires, and its picture there."""
    slug, first, assets = featured.slug, layer.methods[0], atlas.assets
    order = sorted(layer.neurons, key=lambda r: (-r.featured[slug].value, r.neuron))[:atlas.config.site.active_neurons]
    return {"layer": atlas.layer_summary(layer), "method": BY_NAME[atlas.thumbnail_method(layer)].title, "neurons": [
        {"neuron": r.neuron, "value": r.featured[slug].value, "url": neuron_url(layer.name, r.neuron),
         "label": atlas.labels[(layer.name, r.neuron)][0],
         "map": assets.activation_map(featured, layer.name, r.neuron) if len(layer.shape) == 3 else None,
         "photo_zoom": assets.picture(featured, layer.name, r.neuron, first, "img") if layer.zoom else None,
         "vis": atlas.thumbnail(featured, layer.name, r.neuron)}
        for r in order]}


def tree(atlas: Atlas, featured: FeaturedRecord) -> dict:
    """From the top class (or the top layer's most active neuron) down through every layer: each node's
    strongest children on this image."""
    top, slug = atlas.layers[-1], featured.slug
    classes = [p.category for p in featured.predictions if p.category in top.mapped]
    if atlas.is_logits(top) and classes:
        root = classes[0]
    else:
        root = max(top.mapped, key=lambda n: (atlas.record(top.name, n).featured[slug].value, -n))

    def node(layer: LayerRecord, neuron: int, weight: float | None, depth: int) -> dict:
        record = atlas.record(layer.name, neuron)
        lower = atlas.layer(layer.lower) if layer.lower else None
        kids = record.children.get(slug, ())[:atlas.config.site.tree_width] if lower else ()
        return {"layer": layer.name, "neuron": neuron, "label": atlas.labels[(layer.name, neuron)][0],
                "url": neuron_url(layer.name, neuron), "weight": weight, "depth": depth,
                "vis": atlas.thumbnail(featured, layer.name, neuron),
                "best": atlas.assets.patch(layer.name, neuron, record.top[0], "img"),
                "value": record.featured[slug].value,
                "children": [node(lower, child.neuron, child.weight, depth + 1) for child in kids]}

    return node(top, root, None, 0)


def build(atlas: Atlas) -> list[Page]:
    return [Page(image_url(featured.slug), "image.html", featured.name, {
        "image": {"name": featured.name, "photo": atlas.assets.photo(featured)},
        "predictions": featured.predictions, "layers": [most_active(atlas, featured, layer) for layer in atlas.layers],
        "tree": tree(atlas, featured), "tree_width": atlas.config.site.tree_width})
        for featured in atlas.manifest.featured]
