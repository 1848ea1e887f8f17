"""A neuron: its pictures on the featured images, its statistics over the probe set, its top patches and
optimized image, and the neurons it is built from and feeds."""

from __future__ import annotations

import math
from collections import Counter

from ... import stats
from ...methods import BY_NAME, GUIDED, MAP
from ...store.manifest import LayerRecord, Manifest, NeuronRecord
from ..atlas import PATCH_KINDS, Atlas, agreement, check
from ..links import class_url, image_url, layer_url, neuron_url
from ..model import Page, ordinal
from . import layer as layer_pages


def featured_rows(atlas: Atlas, layer: LayerRecord, record: NeuronRecord) -> list[dict]:
    """One row per featured image: the photo, where the neuron fires on it, its value there, and its
    picture by each of the layer's methods (each on its own scale)."""
    rows, assets, neuron, first = [], atlas.assets, record.neuron, layer.methods[0]
    sheet = assets.own(layer.name, neuron)
    channels, best = len(layer.shape) == 3, record.top[0].value
    for featured in atlas.manifest.featured:
        seen = record.featured[featured.slug]
        row, col = divmod(seen.position, layer.width)
        pictures = []
        for m in atlas.methods(layer):
            whole, zoomed = seen.scales[m["name"]]
            pictures.append({"method": m["name"], "title": m["title"], "scale": whole, "zoom_scale": zoomed,
                             "check": m["check"]["figure"] if m["check"] else None,
                             "src": assets.picture(sheet, featured, layer.name, neuron, m["name"]),
                             "zoom": assets.picture(sheet, featured, layer.name, neuron, m["name"], "box")
                             if layer.zoom else None})
        rows.append({
            "slug": featured.slug, "name": featured.name, "url": image_url(featured.slug),
            "photo": assets.photo(featured), "value": seen.value, "specificity": seen.specificity,
            # a ratio means little where values can be negative (a logit moves with any constant added)
            "relative": seen.value / best if best > 0 and not layer.signed else None, "best": best,
            "position": f"row {row}, column {col} of {layer.shape[1]} x {layer.width}" if channels else "",
            "map": assets.activation_map(sheet, featured, layer.name, neuron) if channels else None,
            "photo_zoom": assets.picture(sheet, featured, layer.name, neuron, first, "img") if layer.zoom else None,
            "pictures": pictures})
    return rows


def patches(atlas: Atlas, layer: LayerRecord, record: NeuronRecord, chosen) -> list[dict]:
    """Top patches or patches below the top, each its photo beside its picture of the layer's kind (``kind``)."""
    out, sheet = [], atlas.assets.own(layer.name, record.neuron)
    for patch in chosen:
        item = atlas.manifest.probe.items[patch.item]
        out.append({"rank": patch.rank, "value": patch.value, "source": item.name, "view": item.view,
                    "label": item.label,
                    "scale": patch.scale,
                    "percentile": percentile_label(patch.percentile) if patch.percentile is not None else None,
                    "place": patch.place, "kind": PATCH_KINDS[layer.patches],
                    "img": atlas.assets.patch(sheet, record.neuron, patch, "img"),
                    "vis": atlas.assets.patch(sheet, record.neuron, patch, layer.patches)})
    return out


def sources(atlas: Atlas, record: NeuronRecord) -> list[dict]:
    """The photos the top patches are views of, most views first (the first seen of equals), where one photo
    gives more than one: then the views are fewer independent examples than they look."""
    items = atlas.manifest.probe.items
    counts = Counter(items[patch.item].name for patch in record.top)
    if not counts or max(counts.values()) < 2:
        return []
    return [{"name": name, "count": count} for name, count in counts.most_common()]


def view_kinds(manifest: Manifest) -> str:
    """What else than the whole photo the probe set's views are, in words ("its mirror image, its zoomed
    parts"), from the views' own descriptions."""
    views = {item.view for item in manifest.probe.items}
    return ", ".join((["its mirror image"] if any("mirrored" in view for view in views) else [])
                     + (["its zoomed parts"] if any(view.startswith("zoom") for view in views) else []))


def percentile_label(percentile: float) -> str:
    """99th, 99.5th, 2nd."""
    return ordinal(int(percentile)) if percentile == int(percentile) else f"{percentile:g}th"


def within_top(percentiles: list[float], views: int, top_k: int) -> bool:
    """Whether a percentile's place among ``views`` probe views falls among the top ``top_k``."""
    return any(math.ceil((100 - p) / 100 * views) <= top_k for p in percentiles)


PATHS_SHOWN = 5  # of the paths of an image's trees through a neuron, the largest shares


def edge_sections(atlas: Atlas, layer: LayerRecord, record: NeuronRecord) -> dict:
    """Children and parents on each featured image, and over the neuron's top patches."""
    above = atlas.neighbour(layer, 1)
    upper = above.name if above else None
    parents = atlas.parents.get((layer.name, record.neuron), {})
    in_trees = atlas.in_trees.get((layer.name, record.neuron), {})
    sections = []
    for featured in atlas.manifest.featured:
        sections.append({
            "title": featured.name, "slug": featured.slug, "photo": atlas.assets.photo(featured),
            "paths": in_trees.get(featured.slug, [])[:PATHS_SHOWN],
            "more_paths": max(0, len(in_trees.get(featured.slug, [])) - PATHS_SHOWN),
            "children": atlas.relatives(record.children.get(featured.slug, ()), layer.lower, featured)
            if layer.lower else [],
            "parents": atlas.relatives(parents.get(featured.slug, []), upper, featured) if upper else []})
    dataset = {
        "children": atlas.relatives(record.children.get("dataset", ()), layer.lower, None) if layer.lower else [],
        "parents": atlas.relatives(parents.get("dataset", []), upper, None) if upper else []}
    return {"lower": layer.lower, "upper": upper, "per_image": sections, "dataset": dataset,
            "lower_url": layer_url(layer.lower) if layer.lower else None,
            "upper_url": layer_url(upper) if upper else None,
            "upper_unmapped": above is not None and len(above.neurons) < above.count,
            "upper_mapped": len(above.neurons) if above else 0,
            # the methods of their pictures on an image, within a sentence
            "lower_method": atlas.on_image_phrase(layer.lower) if layer.lower else None,
            "upper_method": atlas.on_image_phrase(above.name) if above else None}


def before_section(atlas: Atlas, layer: LayerRecord, record: NeuronRecord) -> dict | None:
    """With a comparison: the neuron's match in the other checkpoint, as this page shows the neuron itself (its
    pictures on the featured images, top patches, children), and the figures of the change."""
    change = atlas.changes.get((layer.name, record.neuron))
    if change is None:
        return None
    before, name, compare = atlas.before, layer.name, atlas.manifest.compare
    assert before is not None and compare is not None  # there are changes only with a comparison
    theirs, other = before.record(name, change.match), before.layer(name)
    thumbnail = before.thumbnail_method(other)
    children = []
    lower = layer.lower
    for tile in before.relatives(theirs.children.get("dataset", ()), lower, None) if lower else []:
        mine = atlas.matched.get((lower, tile["neuron"])) if lower else None
        children.append({**tile, "now": mine, "url": neuron_url(lower, mine) if lower and mine is not None else None})
    return {"label": compare.label, "match": change.match, "change": change.change,
            "status": change.status, "correlation": change.correlation, "top_overlap": change.top_overlap,
            "edge_overlap": change.edge_overlap, "thumbnail": BY_NAME[thumbnail].title,
            "featured": [{"name": f.name, "value": theirs.featured[f.slug].value,
                          "photo": before.photo_there(f, name, change.match),
                          "picture": before.thumbnail(f, name, change.match)} for f in before.manifest.featured],
            "patches": patches(before, other, theirs, theirs.top), "children": children}


def effects_section(atlas: Atlas, record: NeuronRecord) -> list[dict]:
    """The classes the neuron raises most (``[effects]``), each linked to its logit's page where it is mapped."""
    logits = next((layer for layer in atlas.layers if atlas.is_logits(layer)), None)
    mapped = set(logits.mapped) if logits else set()
    return [{"label": e.label, "category": e.category, "first": e.first_order, "exact": e.ablation,
             "url": neuron_url(logits.name, e.category) if logits and e.category in mapped else None}
            for e in record.effects]


def costliest(record: NeuronRecord) -> int | None:
    """The row of the class whose exact effect is largest, where that is not the first row (the first-order
    column's first class); None where they agree or fewer than two were computed exactly."""
    exact = [(e.ablation, row) for row, e in enumerate(record.effects) if e.ablation is not None]
    if len(exact) < 2:
        return None
    row = max(exact, key=lambda pair: (pair[0], -pair[1]))[1]
    return row if row != 0 else None


def classes_section(atlas: Atlas, record: NeuronRecord) -> dict | None:
    """With a labelled probe set: the classes over-represented among the neuron's top-N images, and the
    classes of its top-k patches, counted."""
    items = atlas.manifest.probe.items
    if not any(item.label for item in items):
        return None
    in_top = Counter(items[p.item].label for p in record.top)
    return {"top": atlas.manifest.probe.label_top, "in_top": sorted(in_top.items(), key=lambda kv: (-kv[1], kv[0])),
            "rows": [{"name": c.name, "share": c.share, "selectivity": c.selectivity, "url": class_url(c.name)}
                     for c in record.classes]}


def page(atlas: Atlas, layer: LayerRecord, position: int) -> Page:
    record = layer.neurons[position]
    name, neuron, manifest = layer.name, record.neuron, atlas.manifest
    label, notes = atlas.labels[(name, neuron)]
    optimized = None
    if layer.optimized:
        e = record.excitation
        assert e is not None  # every neuron of a layer with optimized images has its excitation
        optimized = {"src": atlas.assets.optimized(atlas.assets.own(name, neuron), neuron, layer.optimized),
                     "own": e.own, "other": e.other,
                     "probe": e.probe, **(atlas.optimize_summary(layer) or {})}
    mapped = layer.mapped
    previous = mapped[position - 1] if position > 0 else None
    following = mapped[position + 1] if position + 1 < len(mapped) else None
    return Page(neuron_url(name, neuron), "neuron.html", f"{name}/{neuron}", {
        "layer": atlas.layer_summary(layer), "neuron": neuron, "label": label, "notes": notes,
        "layer_page": layer_url(name, position // layer_pages.PER_PAGE),  # the page of tiles that holds it
        "rows": featured_rows(atlas, layer, record), "methods": atlas.methods(layer),
        "stats": [{"name": stat.NAME, "context": stat.context(record.stats[stat.NAME])}
                  for stat in stats.STATISTICS if stat.NAME in record.stats
                  # how often a class is "strongly on" would move with any constant added to its logit
                  and not (stat.NAME == stats.active.NAME and atlas.is_logits(layer))],
        "patches": patches(atlas, layer, record, record.top), "levels": patches(atlas, layer, record, record.levels),
        "sources": sources(atlas, record), "view_kinds": view_kinds(manifest),
        "levels_within_top": within_top(list(atlas.config.compute.percentiles), len(manifest.probe.items),
                                        manifest.top_k) and not manifest.per_photo,  # a cap leaves out high views
        "patch_check": check(layer, GUIDED if layer.patches == MAP else layer.patches),
        "optimized": optimized, "top_k": manifest.top_k, "per_photo": manifest.per_photo,
        "children_kept": atlas.config.compute.children,
        "edges": edge_sections(atlas, layer, record),
        "before": before_section(atlas, layer, record), "classes": classes_section(atlas, record),
        "effects": effects_section(atlas, record), "effects_costliest": costliest(record),
        "agreement": agreement(layer), "predicted": record.predicted,
        "label_auto": (name, neuron) in atlas.automatic,
        "featured_in_probe": atlas.config.images.featured_in_probe,
        "prev": previous, "next": following,
        "prev_url": neuron_url(name, previous) if previous is not None else None,
        "next_url": neuron_url(name, following) if following is not None else None,
        "model": manifest.model, "probe": manifest.probe, "sitegen_version": manifest.version})


def build(atlas: Atlas) -> list[Page]:
    return [page(atlas, layer, position) for layer in atlas.layers for position in range(len(layer.neurons))]
