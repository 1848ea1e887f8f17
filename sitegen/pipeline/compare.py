"""The atlas against another checkpoint of its model (``[compare]``).

The other checkpoint's atlas is computed like the main one, on the same layers, images and probe set, and
cached the same way (its entries are keyed by its weights, so turning ``[compare]`` off and on again costs
nothing).  It maps the neurons that this atlas's mapped neurons are matched with: by index, or one to one
by the correlation of their activations over the probe set (``stats/compare.py``).  A classifier's logits
are always matched by index: class c is class c in both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..config import Config
from ..stats import compare as stats
from ..store.manifest import Comparison, LayerChanges, LayerRecord, Manifest, NeuronChange, classifier_output
from .stages.activations import chunks, read_chunk
from .stages.mapped import select
from .workspace import Workspace


def other_config(config: Config, neurons: dict[str, Any]) -> Config:
    """The other checkpoint's atlas: its weights, ``neurons`` to map per layer; no optimized images, no
    randomization check and no effects (the comparison shows none of them) and no comparison of its own."""
    assert config.compare is not None  # asked for where the config compares alone
    return replace(config, model=replace(config.model, weights=config.compare.weights),
                   layers=replace(config.layers, neurons=neurons), optimize=None, compare=None,
                   compute=replace(config.compute, sanity=False), effects=replace(config.effects, layers=()))


def _matching(ws: Workspace, other: Workspace, how: str) -> dict[str, tuple]:
    """Per layer: (match [C], correlations [C, C], largest activation per neuron in each model)."""
    found = {}
    for layer, other_layer in zip(ws.layers, other.layers):
        pairs = ((read_chunk(ws, items, layer)[0], read_chunk(other, items, other_layer)[0])
                 for _, items in chunks(ws))
        r, now, before = stats.correlations(pairs)
        by_index = how == "index" or classifier_output(tuple(layer.shape), tuple(ws.model.categories or ()))
        match = np.arange(layer.count) if by_index else stats.assignment(r)
        found[layer.name] = (match, r, now, before)
    return found


def _selections(ws: Workspace, mapped: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    return {layer.listed: "all" if len(mapped[layer.name]) == layer.count else tuple(mapped[layer.name])
            for layer in ws.layers}


def compute(ws: Workspace, manifest: Manifest | None, run: Callable[[Workspace], Manifest | None],
            device: str | None) -> tuple[Comparison | None, list[dict[str, int]]]:
    """Compute the other checkpoint's atlas (``run`` computes one) and compare: the comparison (None on the
    ranks but the first) and what each atlas computed, as the workspace tallied it."""
    config, settings = ws.config, ws.config.compare
    assert settings is not None  # asked for where the config compares alone
    mapped = {layer.name: select(ws, layer) for layer in ws.layers}  # as every rank of torchrun sees them
    tallies, before, wanted = [], None, _selections(ws, mapped)
    for _ in range(2):  # a second time only where activation matching wants neurons the first did not map
        with Workspace.open(other_config(config, wanted), ws.cache, device, quiet=ws.quiet, log=ws.log) as other:
            before = run(other)
            tallies.append(dict(other.tally))
            found = _matching(ws, other, settings.match)
            theirs = {layer.name: set(select(other, layer)) for layer in other.layers}
        needed = {name: tuple(sorted({int(found[name][0][n]) for n in mapped[name]})) for name in mapped}
        if all(set(needed[name]) <= theirs[name] for name in needed):
            break
        wanted = _selections(ws, needed)
    if manifest is None or before is None:
        return None, tallies
    layers = tuple(_changes(layer, before.layer(layer.name), found[layer.name],
                            manifest.layer(layer.lower) if layer.lower else None,
                            found.get(layer.lower) if layer.lower else None)
                   for layer in manifest.layers)
    return Comparison(settings.label, settings.match, before, layers), tallies


def _changes(layer: LayerRecord, other: LayerRecord, found: tuple, lower: LayerRecord | None,
             lower_found: tuple | None) -> LayerChanges:
    match, r, now, before = found
    back = stats.inverse(lower_found[0]) if lower_found is not None else {}
    records = {record.neuron: record for record in other.neurons}
    out = []
    for record in layer.neurons:
        c = int(match[record.neuron])
        theirs = records[c]
        top = stats.jaccard((p.item for p in record.top), (p.item for p in theirs.top))
        edges = None
        if lower is not None:
            edges = stats.jaccard((e.neuron for e in record.children.get("dataset", ())),
                                  (back.get(e.neuron, -1 - e.neuron) for e in theirs.children.get("dataset", ())))
        correlation = float(r[record.neuron, c])
        status = "" if layer.signed or other.signed else stats.status(bool(now[record.neuron] > 0),
                                                                      bool(before[c] > 0))
        out.append(NeuronChange(record.neuron, c, correlation, top, edges,
                                stats.change_score(correlation, top, edges), status))
    return LayerChanges(layer.name, tuple(out))
