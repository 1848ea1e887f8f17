"""The manifest, assembled from what the stages wrote: the records the site is rendered from."""

from __future__ import annotations

import numpy as np
import torch

from .. import __version__, stats
from ..engine.sanity import spearman
from ..errors import SitegenError
from ..images import Item, unique_slugs
from ..model.layers import Layer
from ..store import members
from ..store.manifest import (
    Edge,
    Effect,
    Excitation,
    FeaturedRecord,
    LayerRecord,
    Manifest,
    ModelRecord,
    NeuronRecord,
    OptimizedRecord,
    PatchRecord,
    Prediction,
    ProbeItem,
    ProbeRecord,
    Seen,
    TreeNode,
    classifier_output,
)
from . import edges
from .stage import State, require
from .stages import activations, classes, effects, optimize, patches, sanity, specificity, statistics, treecheck, trees
from .stages.effective import patch_box
from .stages.featured import pictures_key
from .stages.mapped import selection_text
from .stages.maps import maps_key
from .stages.photos import photo_key, predictions_key
from .workspace import Workspace

# activation modules whose backward no method changes: the methods differ only at a model's ReLUs
OTHER_ACTIVATIONS = {"GELU", "SiLU", "Hardswish", "Mish", "ELU", "CELU", "SELU", "LeakyReLU", "PReLU", "Tanh",
                     "Sigmoid", "Hardsigmoid", "Softplus", "GELUTanh", "QuickGELU"}


class Reader:
    """Cache entries read once each while the manifest is assembled."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.entries: dict[tuple[str, str], dict] = {}

    def __call__(self, kind: str, key: str, layer: Layer | None = None) -> dict:
        """An entry's arrays (every member this module reads is an array), checked against what ``layer``'s
        entries of that kind hold."""
        if (kind, key) not in self.entries:
            channels = layer.count if layer is not None else None
            lower = layer.lower.count if layer is not None and layer.lower is not None else None
            expect = members.expect(kind, channels, lower)
            self.entries[(kind, key)] = require(self.ws, kind, key, arrays_only=True, expect=expect)
        return self.entries[(kind, key)]

    def edge_row(self, item: Item, layer: Layer, neuron: int) -> np.ndarray:
        entry = self(members.EDGES, edges.edges_key(self.ws, item, layer), layer)
        if members.edges(neuron) not in entry:
            raise SitegenError(f"cache entry edges/{edges.edges_key(self.ws, item, layer)} lacks neuron {neuron}; "
                               f"run `sitegen compute` again")
        return entry[members.edges(neuron)]


def tree_record(ws: Workspace, state: State, item: Item, root: tuple[Layer, int], read: Reader) -> TreeNode:
    """A tree as nested records, from its nodes' entries."""
    values = {layer.name: activations.read_featured(ws, item, layer)[0] for layer in ws.layers}

    def node(path: trees.Path, weights_above: np.ndarray | None, positive: float, root_scale: float | None) -> TreeNode:
        key = trees.node_key(ws, state, item, path)
        entry = read(members.TREES, key, path[-1][0])
        facts = entry[members.NODE_FACTS]
        whole = float(facts[5])
        root_scale = whole if root_scale is None else root_scale
        layer, kept = path[-1]
        group = tuple(sorted((Edge(j, float(weights_above[j])) for j in trees.channels(kept)),
                             key=lambda edge: (-edge.weight, edge.neuron))) if weights_above is not None else ()
        weight = sum(edge.weight for edge in group) if group else None
        kids, coverage = [], None
        weights = entry.get(members.NODE_WEIGHTS)
        if weights is not None:
            lower = layer.lower
            assert lower is not None  # a node has weights for its children only above the lowest layer
            total = float(np.clip(weights[list(state.mapped[lower.name])], 0, None).sum())
            kids = [node(path + ((lower, child),), weights, total, root_scale)
                    for child in trees.children(ws, state, path, entry)]
            coverage = sum(kid.share or 0.0 for kid in kids) if total > 0 else None  # None: nothing to cover
        top, left, bottom, right = (int(v) for v in facts[:4])
        neuron, value = (kept, float(values[layer.name][kept])) if isinstance(kept, int) else (group[0].neuron, None)
        return TreeNode(layer.name, neuron, key, (top, left, bottom, right), float(facts[4]),
                        whole / root_scale if root_scale > 0 else 0.0, value, weight,
                        weight / positive if weight is not None and positive > 0 else None, tuple(kids),
                        () if isinstance(kept, int) else group, coverage)

    return node((root,), None, 0.0, None)


def featured_record(ws: Workspace, state: State, item: Item, slug: str, read: Reader) -> FeaturedRecord:
    categories = ws.model.categories
    predictions: tuple[Prediction, ...] = ()
    if categories:
        entry = read(members.PREDICTIONS, predictions_key(ws, item))
        predictions = tuple(Prediction(int(index), categories[int(index)], float(prob)) for prob, index in
                            zip(entry[members.PROBS].tolist(), entry[members.CLASSES].tolist()))
    methods, roots = ws.config.layers.methods, trees.roots(ws, state, item)
    return FeaturedRecord(slug, item.name, photo_key(ws, item), predictions,
                          {layer.name: {m: pictures_key(ws, state, item, layer, m) for m in methods[layer.listed]}
                           for layer in ws.layers},
                          {layer.name: maps_key(ws, item, layer) for layer in ws.layers if len(layer.shape) == 3},
                          tuple(tree_record(ws, state, item, root, read) for root in roots),
                          tuple(treecheck.figure(ws, state, item, root) for root in roots))


def optimized_record(ws: Workspace, state: State,
                     layer: Layer) -> tuple[OptimizedRecord | None, list[Excitation | None]]:
    """The layer's optimized images and their check, and each neuron's excitation."""
    if layer not in optimize.optimized_layers(ws):
        return None, [None] * len(state.mapped[layer.name])
    rows = optimize.ExcitationStage().value(ws, state, optimize.Check(layer))[members.EXCITATION]
    count = max(1, len(rows))
    record = OptimizedRecord(optimize.optimized_key(ws, layer), optimize.recipe(ws).as_dict(), ws.config.compute.seed,
                             float((rows[:, 0] > rows[:, 2]).sum() / count),
                             float((rows[:, 0] > rows[:, 1]).sum() / count) if len(rows) > 1 else None)
    # with one mapped neuron there is no other image: None, not -inf (manifest.json stays valid JSON)
    return record, [Excitation(float(a), float(b) if np.isfinite(b) else None, float(c)) for a, b, c in rows.tolist()]


def seen(ws: Workspace, state: State, layer: Layer, slugs: list[str], read: Reader) -> list[dict[str, Seen]]:
    """Per mapped neuron: its value, position, pictures' scales and specificity on each featured image."""
    units, methods = state.mapped[layer.name], ws.config.layers.methods[layer.listed]
    per_neuron: list[dict[str, Seen]] = [{} for _ in units]
    for item, slug in zip(ws.featured, slugs):
        values, positions = activations.read_featured(ws, item, layer)
        spec = None
        if specificity.applies(ws, layer, units):
            work = specificity.Specificity(item, layer)
            spec = specificity.SpecificityStage().value(ws, state, work)[members.SPECIFICITY]
        pictures = {m: read(members.PICTURES, pictures_key(ws, state, item, layer, m), layer) for m in methods}
        for row, neuron in enumerate(units):
            scales = {}
            for method in methods:
                whole, zoom = pictures[method][members.picture_scales(neuron)].tolist()
                scales[method] = (whole, zoom if np.isfinite(zoom) else None)
            per_neuron[row][slug] = Seen(float(values[neuron]), int(positions[neuron]), scales,
                                         float(spec[row]) if spec is not None else None)
    return per_neuron


def signed(ws: Workspace, state: State, layer: Layer, arrays: dict, read: Reader) -> bool:
    """Whether the layer's outputs can be negative: anywhere in its maps on the featured images, or (a flat
    layer, or no featured image) in its activations over the probe set."""
    if any(arrays["histogram"]["low"] < 0):
        return True
    minima = (read(members.MAPS, maps_key(ws, item, layer), layer)[members.MINIMA] for item in ws.featured)
    return len(layer.shape) == 3 and any(bool((low < 0).any()) for low in minima)


def children(ws: Workspace, state: State, layer: Layer, neuron: int, order: list[int], slugs: list[str],
             read: Reader) -> dict:
    """The strongest children on each featured image, and over the neuron's top-patch images."""
    if layer.lower is None:
        return {}
    lower, k = state.mapped[layer.lower.name], ws.config.compute.children
    found = {slug: edges.strongest(read.edge_row(item, layer, neuron), lower, k)
             for item, slug in zip(ws.featured, slugs)}
    rows = np.stack([read.edge_row(ws.probe[index], layer, neuron) for index in order])
    found["dataset"] = edges.over_dataset(rows, lower, k)
    return found


def patch(ws: Workspace, state: State, layer: Layer, neuron: int, index: int, value: float, position: int,
          read: Reader, **which) -> PatchRecord:
    """One probe item shown for a neuron: a top patch (``rank``) or a percentile patch (``percentile``)."""
    key = patches.patches_key(ws, state, ws.probe[index], layer)
    scale = float(read(members.PATCHES, key, layer)[members.patch_scale(neuron, patches.kind(ws, layer))][0])
    return PatchRecord(index, value, patch_box(ws, state, layer, position), key, scale, **which)


def effects_records(ws: Workspace, state: State, layer: Layer) -> tuple[list[tuple[Effect, ...]], float | None, int,
                                                                        tuple[int, int]]:
    """Each mapped neuron's strongest effects on the classes, the layer's agreement of first-order and exact
    effects with the number of pairs it is over, and within neurons: of the neurons with two or more classes
    computed exactly, how many lose most from the class the first-order effects put first
    (``pipeline/stages/effects.py``)."""
    units = state.mapped[layer.name]
    if not effects.applies(ws, layer):
        return [() for _ in units], None, 0, (0, 0)
    entry = effects.read(ws, state, layer)
    classes, first = entry[members.EFFECT_CLASSES].tolist(), entry[members.FIRST_ORDER]
    rows = list(zip(entry[members.ABLATED], entry[members.ABLATED_CLASSES], entry[members.ABLATION]))
    exact = {(int(n), int(c)): float(v) for n, row, values in rows for c, v in zip(row, values)}
    ranked = [values for _, row, values in rows if len(row) >= 2]  # each row's classes in first-order order
    same = sum(1 for values in ranked if int(np.argmax(values)) == 0)
    names = ws.model.categories
    found = []
    for row, neuron in enumerate(units):
        order = np.argsort(-first[:, row], kind="stable")[:ws.config.effects.shown]
        found.append(tuple(Effect(classes[k], names[classes[k]] if names else f"class {classes[k]}",
                                  float(first[k, row]), exact.get((neuron, classes[k]))) for k in order))
    pairs = [(float(first[classes.index(c), units.index(n)]), value) for (n, c), value in exact.items()]
    agreement = spearman(torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])) \
        if len(pairs) >= 3 else None
    return found, agreement if agreement is None or np.isfinite(agreement) else None, len(pairs), (same, len(ranked))


def predicted(ws: Workspace, layer: Layer) -> np.ndarray | None:
    """[C]: for a classifier's output, on how many probe views each class is the model's top prediction (the
    first of equals); None for other layers."""
    if not classifier_output(layer.shape, ws.model.categories):
        return None
    counts = np.zeros(layer.count, dtype=np.int64)
    for _, items in activations.chunks(ws):
        counts += np.bincount(activations.read_chunk(ws, items, layer)[0].argmax(axis=1), minlength=layer.count)
    return counts


def layer_record(ws: Workspace, state: State, layer: Layer, slugs: list[str], read: Reader) -> LayerRecord:
    units, top = state.mapped[layer.name], state.tops[layer.name]
    arrays = {statistic.NAME: statistics.read(ws, state, layer, statistic) for statistic in stats.STATISTICS}
    optimized, excitations = optimized_record(ws, state, layer)
    on_featured = seen(ws, state, layer, slugs, read)
    views, everywhere = classes.top_views(ws, state, layer), classes.files_per_class(ws.probe)
    drives, agreement, pairs, first_same = effects_records(ws, state, layer)
    tops = predicted(ws, layer)
    neurons = []
    for row, neuron in enumerate(units):
        order = top.order[row].tolist()
        best = tuple(patch(ws, state, layer, neuron, index, float(top.values[row, rank - 1]),
                           int(top.positions[row, rank - 1]), read, rank=rank)
                     for rank, index in enumerate(order, start=1))
        levels = tuple(patch(ws, state, layer, neuron, int(rows[row]), float(values[row]), int(positions[row]), read,
                             percentile=p, place=int(places[row]))
                       for p, (rows, values, positions, places) in top.levels.items() if rows[row] >= 0)
        neurons.append(NeuronRecord(
            neuron, best, levels, on_featured[row], children(ws, state, layer, neuron, order, slugs, read),
            {statistic.NAME: statistic.record(arrays[statistic.NAME], row) for statistic in stats.STATISTICS},
            excitations[row],
            classes.shares(views[row].tolist(), ws.probe, classes.files_counted(ws), everywhere)
            if views is not None else (), drives[row], int(tops[neuron]) if tops is not None else None))
    geometry = layer.geometry
    nonfinite = sum(1 for row, record in enumerate(neurons) if not np.isfinite(top.values[row]).all()
                    or not all(np.isfinite(seen.value) for seen in record.featured.values()))
    if nonfinite:
        ws.log(f"warning: layer {layer.name}: {nonfinite} of {len(units)} mapped neurons have activations that are "
               f"not finite numbers (NaN or infinite) on the featured or top probe images; the weights are finite, "
               f"so the model computes them (a division by zero, a log of a negative?); the layer's page says so")
    return LayerRecord(layer.name, layer.path, layer.shape, selection_text(ws, layer),
                       layer.lower.name if layer.lower is not None else None, ws.config.layers.methods[layer.listed],
                       geometry.as_dict(), None if geometry.whole else geometry.size,
                       state.effective.get(layer.name), signed(ws, state, layer, arrays, read), tuple(neurons),
                       optimized, nonfinite, sanity.figures(ws, state, layer) if sanity.applies(ws) else {},
                       agreement, pairs, first_same, patches.kind(ws, layer))


def record(ws: Workspace, state: State) -> Manifest:
    read = Reader(ws)
    slugs = unique_slugs([item.name for item in ws.featured])
    model, probe = ws.model, ws.probe
    return Manifest(
        version=__version__, title=ws.config.title, config=str(ws.config.path),
        model=ModelRecord(model.name, model.weights, model.fingerprint, model.weights_license,
                          model.preprocess.as_dict(), model.preprocess.describe(), tuple(model.categories or ()),
                          tuple(sorted({type(m).__name__ for m in model.module.modules()
                                        if type(m).__name__ in OTHER_ACTIVATIONS}))),
        methods=ws.config.compute.methods, top_k=ws.config.compute.top_k, children=ws.config.compute.children,
        per_photo=ws.config.compute.per_photo,
        layers=tuple(layer_record(ws, state, layer, slugs, read) for layer in ws.layers),
        featured=tuple(featured_record(ws, state, item, slug, read) for item, slug in zip(ws.featured, slugs)),
        probe=ProbeRecord(len(probe), len({item.digest for item in probe}), ws.probe_set_hash,
                          tuple(ProbeItem(item.name, item.view.describe(), item.label) for item in probe),
                          classes.files_counted(ws) if ws.config.images.labels else 0))
