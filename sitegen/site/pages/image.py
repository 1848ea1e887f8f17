"""A featured image: the model's predictions, its trees of path-conditioned pictures (from the top class down
through every layer: what the class sees through each of its children), and the most active neurons of
each layer."""

from __future__ import annotations

from collections import Counter

from ...methods import BY_NAME
from ...store.manifest import FeaturedRecord, LayerRecord, TreeNode
from ..atlas import Atlas, check
from ..links import image_url, neuron_url, node_id
from ..model import Page


def most_active(atlas: Atlas, featured: FeaturedRecord, layer: LayerRecord) -> dict:
    """The layer's most active neurons on the image, those above zero there (but any class: a logit's zero
    means nothing): where each fires, and its picture there."""
    slug, first, assets = featured.slug, layer.methods[0], atlas.assets
    sheet = assets.on(featured, layer.name)
    # above zero, where zero means something: not at the classes, whose logits move with any constant added
    logits = atlas.is_logits(layer)
    firing = [record for record in layer.neurons if logits or record.featured[slug].value > 0]
    order = sorted(firing, key=lambda r: (-r.featured[slug].value, r.neuron))[:atlas.config.site.active_neurons]
    method = BY_NAME[atlas.thumbnail_method(layer)]
    return {"layer": atlas.layer_summary(layer), "method": method.title, "phrase": method.phrase,
            "check": check(layer, method.name), "neurons": [
        {"neuron": r.neuron, "value": r.featured[slug].value, "url": neuron_url(layer.name, r.neuron),
         "label": atlas.labels[(layer.name, r.neuron)][0],
         "map": assets.activation_map(sheet, featured, layer.name, r.neuron) if len(layer.shape) == 3 else None,
         "photo_zoom": assets.picture(sheet, featured, layer.name, r.neuron, first, "img") if layer.zoom else None,
         "vis": atlas.thumbnail(featured, layer.name, r.neuron)}
        for r in order]}


MEMBERS_SHOWN = 3  # a part's strongest channels named on its node


PLACES = {("top", "centre"): "top", ("middle", "left"): "left", ("middle", "centre"): "centre",
          ("middle", "right"): "right", ("bottom", "centre"): "bottom"}


def where(box: tuple[int, int, int, int], size: int) -> str:
    """A box on the image in words, by where its centre lies: "the top left" (the outer two fifths of either
    side), "the centre" (the middle fifth), or "most of the image"."""
    top, left, bottom, right = box
    if (bottom - top + 1) * (right - left + 1) >= 0.6 * size * size:
        return "most of the image"
    row = ("top", "middle", "bottom")[_band((top + bottom + 1) / (2 * size))]
    column = ("left", "centre", "right")[_band((left + right + 1) / (2 * size))]
    return "the " + PLACES.get((row, column), f"{row} {column}")


def _band(at: float) -> int:
    return 0 if at < 0.4 else 2 if at > 0.6 else 1


def tree(atlas: Atlas, featured: FeaturedRecord, root: TreeNode, size: int) -> dict:
    """A tree as nested views: each node its path picture cut to where it lies, the photo of that box, the box
    on a small copy of the photo (as percentages of the image), its share, weight and activation; a part its
    channels' count and its strongest channels; a node with children the share they carry together."""

    def node(path: list[TreeNode]) -> dict:
        here = path[-1]
        top, left, bottom, right = here.box
        return {"id": node_id(path), "depth": len(path) - 1, "layer": here.layer, "neuron": here.neuron,
                "label": atlas.labels[(here.layer, here.neuron)][0], "url": neuron_url(here.layer, here.neuron),
                "part": bool(here.group), "count": len(here.group),
                "members": [{"neuron": edge.neuron, "weight": edge.weight, "url": neuron_url(here.layer, edge.neuron),
                             "label": atlas.labels[(here.layer, edge.neuron)][0]}
                            for edge in here.group[:MEMBERS_SHOWN]],
                "picture": atlas.assets.tree_node(featured, path, "picture"),
                "photo": atlas.assets.tree_node(featured, path, "photo"),
                "box": {"top": 100 * top / size, "left": 100 * left / size,
                        "height": 100 * (bottom - top + 1) / size, "width": 100 * (right - left + 1) / size},
                "where": where(here.box, size),
                "share": here.share, "weight": here.weight, "value": here.value, "scale": here.scale,
                "relative": here.relative, "coverage": here.coverage,
                "children": told_apart([node(path + [child]) for child in here.children])}

    return node([root])


def told_apart(siblings: list[dict]) -> list[dict]:
    """Siblings whose places read the same ("the bottom right" twice) each say where their box is centred."""
    named = Counter(sibling["where"] for sibling in siblings)
    for sibling in siblings:
        if named[sibling["where"]] > 1:
            box = sibling["box"]
            sibling["where"] += (f", centred {box['left'] + box['width'] / 2:.0f}% across and "
                                 f"{box['top'] + box['height'] / 2:.0f}% down")
    return siblings


def tree_check(atlas: Atlas, featured: FeaturedRecord) -> dict | None:
    """The randomization check of the image's first tree: of its own path pictures where the atlas checked
    them (``own``), else of the trees' method on the root layer's whole pictures."""
    if not featured.trees:
        return None
    root = featured.trees[0].layer
    own = featured.tree_checks[0] if featured.tree_checks else None
    if own is not None:
        figure, nodes = own
        level = None if figure is None else "fails" if figure >= 0.9 else "partly" if figure >= 0.5 else "passes"
        return {"figure": figure, "level": level, "layer": root, "own": True, "nodes": nodes}
    found = check(next(layer for layer in atlas.layers if layer.name == root), atlas.config.trees.method)
    return {**found, "layer": root, "own": False} if found else None


def build(atlas: Atlas) -> list[Page]:
    size = atlas.manifest.model.preprocess["crop"]
    return [Page(image_url(featured.slug), "image.html", featured.name, {
        "tree_check": tree_check(atlas, featured),
        "image": {"name": featured.name, "photo": atlas.assets.photo(featured)},
        "predictions": featured.predictions, "layers": [most_active(atlas, featured, layer) for layer in atlas.layers],
        "trees": [tree(atlas, featured, root, size) for root in featured.trees],
        "method": BY_NAME[atlas.config.trees.method].phrase, "parts": atlas.config.trees.nodes == "parts"})
        for featured in atlas.manifest.featured]
