"""Neurons named by their images (a labelled probe set, ``images.labels``): each mapped neuron's top probe
views, enough of them to hold its top-N files, cached per layer; the record counts their classes.

A class is over-represented among a neuron's top images when its share of them is above its share of the
probe set's files: the ratio is its selectivity.  The site names a neuron by its leading class where that
is clearly over-represented (``site/atlas.py``), unless a note gives the neuron a label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...engine.topk import RunningTopK
from ...model.layers import Layer
from ...store import members
from ...store.manifest import ClassShare
from ..stage import EntryStage, State
from ..workspace import Workspace
from .activations import chunks, read_chunk

SHOWN = 3  # classes kept per neuron, strongest first


@dataclass(frozen=True)
class TopViews:
    layer: Layer
    size = 1


def files_counted(ws: Workspace) -> int:
    """N, the top files of each neuron whose classes are counted: ``images.label_top``, or a quarter of the
    probe set's files and at least ``top_k``.  A class can only show itself over-represented among a share
    of the probe set: among all of it, every class has its base share."""
    chosen = ws.config.images.label_top
    if chosen is not None:
        return chosen
    files = len({item.digest for item in ws.probe})
    return min(files, max(ws.config.compute.top_k, files // 4))


def views_needed(ws: Workspace) -> int:
    """Top views per neuron that hold its top-N files, whatever views of one file come first."""
    per_file = max(Counter(item.digest for item in ws.probe).values())
    return min(len(ws.probe), files_counted(ws) * per_file)


class ClassesStage(EntryStage):
    name = "classes"
    title = "classes (layers)"
    needs = ("activations",)
    kind = members.TOP_VIEWS
    counted = "class counts"

    def candidates(self, ws: Workspace, state: State) -> list[TopViews]:
        return [TopViews(layer) for layer in ws.layers] if ws.config.images.labels else []

    def key(self, ws: Workspace, state: State, work: TopViews) -> str:
        return ws.key(members.TOP_VIEWS, work.layer.path, ws.probe_hash, views_needed(ws),
                      list(state.mapped[work.layer.name]))

    def entry(self, ws: Workspace, state: State, work: TopViews) -> dict[str, np.ndarray]:
        units = list(state.mapped[work.layer.name])
        running = RunningTopK(len(units), views_needed(ws))
        for start, items in chunks(ws):
            values, positions = read_chunk(ws, items, work.layer)
            running.update(values[:, units], positions[:, units], np.arange(start, start + values.shape[0]))
        return {members.VIEWS: running.rows.T.astype(np.int64)}

    def expect(self, ws: Workspace, state: State, work: TopViews) -> dict:
        return members.expect(members.TOP_VIEWS, len(state.mapped[work.layer.name]))

    def describe(self, ws: Workspace, state: State, work: list[TopViews]) -> str:
        return f"classes: the top views of {len(work)} of {len(ws.layers)} layers to count"


def top_views(ws: Workspace, state: State, layer: Layer) -> np.ndarray | None:
    """[mapped neurons, M]: each neuron's top probe views, best first; None without labels."""
    if not ws.config.images.labels:
        return None
    return ClassesStage().value(ws, state, TopViews(layer))[members.VIEWS]


def files_per_class(items: Sequence) -> Counter:
    """The probe set's files of each class (``items``: the probe views, each with its file's digest and
    label; a file's views count once)."""
    return Counter({item.digest: item.label for item in items}.values())


def shares(views: Sequence[int], items: Sequence, top: int, everywhere: Counter) -> tuple[ClassShare, ...]:
    """The classes over-represented among the first ``top`` distinct files of ``views`` (a neuron's top probe
    views, best first), strongest first: their share of those files and that share over their share of
    the probe set's files (``everywhere``, :func:`files_per_class` of ``items``)."""
    files: dict[str, str] = {}
    for view in views:
        if view < 0 or len(files) >= top:
            break
        files.setdefault(items[view].digest, items[view].label)
    total, counted = sum(everywhere.values()), Counter(files.values())
    found = [ClassShare(name, count / len(files), (count / len(files)) / (everywhere[name] / total), count)
             for name, count in counted.items()]
    found = [c for c in found if c.selectivity > 1.0]
    return tuple(sorted(found, key=lambda c: (-c.share, -c.selectivity, c.name))[:SHOWN])
