"""``manifest.json``: where every picture came from, for other tools to read without parsing HTML: the
model, the definitions, and per neuron its page, its top patches (source image, value, rank, box, the photo
and beside it the picture under its layer's ``patches`` kind, "guided" by default, with its scale) and its
pictures on the featured images (pictures and scales).
A picture is named as the part of its sheet that holds it, ``assets/layers/conv1/3.avif#xywh=x,y,w,h`` (a W3C
media fragment; sheets.py)."""

from __future__ import annotations

from ...store.manifest import FeaturedRecord, LayerRecord, NeuronRecord, TreeNode
from ..atlas import Atlas
from ..definitions import DEFINITIONS
from ..links import image_url, neuron_url
from ..model import File, json_file


def optimized(layer: LayerRecord) -> dict | None:
    """The layer's optimized images: how they were made, their check, and each neuron's figures; "entry"
    is the key of the cache entry that holds the images."""
    if layer.optimized is None:
        return None
    o = layer.optimized
    neurons = {str(record.neuron): {"own": e.own, "other": e.other, "probe": e.probe}
               for record in layer.neurons if (e := record.excitation) is not None}
    return {"entry": o.key, "recipe": dict(o.recipe), "seed": o.seed, "beats_probe": o.beats_probe,
            "specific": o.specific, "neurons": neurons}


def featured(atlas: Atlas, layer: LayerRecord, record: NeuronRecord) -> list[dict]:
    """The neuron's pictures on the featured images: the whole picture, its zoom, and the whole picture's scale."""
    out, sheet = [], atlas.assets.own(layer.name, record.neuron)
    for image in atlas.manifest.featured:
        for method in layer.methods:
            scale, zoom_scale = record.featured[image.slug].scales[method]
            out.append({"image": image.name, "method": method, "scale": scale,
                        "picture": atlas.assets.picture(sheet, image, layer.name, record.neuron, method).fragment(),
                        "zoom": atlas.assets.picture(sheet, image, layer.name, record.neuron, method, "box").fragment()
                        if layer.zoom else None, "zoom_scale": zoom_scale})
    return out


def top_patches(atlas: Atlas, layer: LayerRecord, record: NeuronRecord) -> list[dict]:
    items, sheet = atlas.manifest.probe.items, atlas.assets.own(layer.name, record.neuron)
    return [{"rank": p.rank, "value": p.value, "box": list(p.box), "source": items[p.item].name,
             "view": items[p.item].view, "label": items[p.item].label or None, "scale": p.scale,
             "photo": atlas.assets.patch(sheet, record.neuron, p, "img").fragment(),
             layer.patches: atlas.assets.patch(sheet, record.neuron, p, layer.patches).fragment()} for p in record.top]


def tree(atlas: Atlas, featured: FeaturedRecord, path: list[TreeNode]) -> dict:
    """A tree node and its children, strongest first: its neuron, or a part's channels with their weights (the
    part's weight their sum), its share and its children's summed (coverage), its path picture as shown and
    where it lies."""
    here = path[-1]
    neurons: list[dict[str, float | None]] = [{"neuron": e.neuron, "weight": e.weight} for e in here.group] or \
        [{"neuron": here.neuron, "weight": here.weight}]
    return {"layer": here.layer, "neuron": here.neuron if not here.group else None, "neurons": neurons,
            "weight": here.weight, "share": here.share, "coverage": here.coverage,
            "picture": atlas.assets.tree_node(featured, path, "picture").fragment(), "box": list(here.box),
            "children": [tree(atlas, featured, path + [child]) for child in here.children]}


def build(atlas: Atlas) -> list[File]:
    manifest = atlas.manifest
    model, probe = manifest.model, manifest.probe
    data = {
        "sitegen_version": manifest.version,
        "model": {"name": model.name, "weights": model.weights, "fingerprint": model.fingerprint,
                  "preprocess": dict(model.preprocess)},
        "probe": {"count": probe.count, "files": probe.files, "hash": probe.hash},
        "methods": list(manifest.methods), "top_k": manifest.top_k, "definitions": DEFINITIONS,
        "featured": [{"name": f.name, "page": image_url(f.slug),
                      "predictions": [{"class": p.category, "label": p.label, "prob": p.prob} for p in f.predictions],
                      "trees": [tree(atlas, f, [root]) for root in f.trees],
                      "tree_checks": [{"figure": c[0], "nodes": c[1]} if c else None for c in f.tree_checks]}
                     for f in manifest.featured],
        "layers": [{
            "name": layer.name, "module": layer.path, "shape": list(layer.shape), "methods": list(layer.methods),
            "patches": layer.patches,
            "receptive_field": list(layer.rf_size) if layer.rf_size else None,
            "effective_receptive_field": layer.effective, "optimize": optimized(layer),
            "sanity": dict(layer.sanity), "effects_agreement": layer.effects_agreement,
            "effects_pairs": layer.effects_pairs,
            "effects_first_class_right": list(layer.effects_first_same) if layer.effects_pairs else None,
            "neurons": [{"neuron": record.neuron, "page": neuron_url(layer.name, record.neuron),
                         "top_patches": top_patches(atlas, layer, record),
                         "classes": [{"class": c.name, "share": c.share, "selectivity": c.selectivity,
                                      "count": c.count} for c in record.classes],
                         "label": atlas.labels[(layer.name, record.neuron)][0] or None,
                         "label_automatic": (layer.name, record.neuron) in atlas.automatic,
                         "effects": [{"class": e.category, "label": e.label, "first_order": e.first_order,
                                      "ablation": e.ablation} for e in record.effects],
                         "top_prediction_views": record.predicted,
                         "featured": featured(atlas, layer, record)}
                        for record in layer.neurons]} for layer in manifest.layers],
    }
    return [json_file("manifest.json", data, separators=(",", ":"), sort_keys=True)]
