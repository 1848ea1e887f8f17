"""A featured image: the model's predictions, its trees of path-conditioned pictures (from the top class down
through every layer: what the class sees through each of its children), and the most active neurons of
each layer."""

from __future__ import annotations

from ...methods import BY_NAME
from ...store.manifest import FeaturedRecord, LayerRecord, TreeNode
from ..atlas import Atlas
from ..links import image_url, neuron_url, node_id
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


def tree(atlas: Atlas, featured: FeaturedRecord, root: TreeNode, size: int) -> dict:
    """A tree as nested views: each node its path picture cut to where it lies, the photo of that box, the box
    on a small copy of the photo (as percentages of the image), its share, weight and activation."""

    def node(path: list[TreeNode]) -> dict:
        here = path[-1]
        top, left, bottom, right = here.box
        return {"id": node_id(path), "depth": len(path) - 1, "layer": here.layer, "neuron": here.neuron,
                "label": atlas.labels[(here.layer, here.neuron)][0], "url": neuron_url(here.layer, here.neuron),
                "picture": atlas.assets.tree_node(featured, path, "picture"),
                "photo": atlas.assets.tree_node(featured, path, "photo"),
                "box": {"top": 100 * top / size, "left": 100 * left / size,
                        "height": 100 * (bottom - top + 1) / size, "width": 100 * (right - left + 1) / size},
                "share": here.share, "weight": here.weight, "value": here.value, "scale": here.scale,
                "relative": here.relative, "children": [node(path + [child]) for child in here.children]}

    return node([root])


def build(atlas: Atlas) -> list[Page]:
    size = atlas.manifest.model.preprocess["crop"]
    return [Page(image_url(featured.slug), "image.html", featured.name, {
        "image": {"name": featured.name, "photo": atlas.assets.photo(featured)},
        "predictions": featured.predictions, "layers": [most_active(atlas, featured, layer) for layer in atlas.layers],
        "trees": [tree(atlas, featured, root, size) for root in featured.trees],
        "method": BY_NAME[atlas.config.trees.method].title})
        for featured in atlas.manifest.featured]
