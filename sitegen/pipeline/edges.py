"""Edge weights (DESIGN §2): each neuron's weight to every neuron of the configured layer below it, per view.

Made in the backward passes of two stages (the featured images' pictures and
the top patches), kept one member per upper neuron in one entry per view and
layer, and read into children lists by the record.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..images import Item
from ..model.layers import Layer
from ..store import members
from ..store.manifest import Edge
from .workspace import Workspace


def edges_key(ws: Workspace, item: Item, layer: Layer) -> str:
    assert layer.lower is not None  # edges go to the layer below: asked for where there is one alone
    return ws.key(members.EDGES, layer.path, layer.lower.path, item.digest, item.view.spec)


def strongest(weights: np.ndarray, lower_units: Sequence[int], k: int) -> tuple[Edge, ...]:
    """The ``k`` strongest positive children among the lower layer's mapped neurons, strongest first."""
    units = np.asarray(lower_units)
    picked = units[np.argsort(-weights[units], kind="stable")[:k]]
    return tuple(Edge(int(j), float(weights[j])) for j in picked if weights[j] > 0)


def over_dataset(rows: np.ndarray, lower_units: Sequence[int], k: int) -> tuple[Edge, ...]:
    """The dataset edges: the strongest by mean weight over ``rows`` (one per top-patch image), each with
    the number of rows on which it was among the strongest."""
    counts = np.zeros(rows.shape[1], dtype=int)
    for row in rows:
        counts[[edge.neuron for edge in strongest(row, lower_units, k)]] += 1
    return tuple(Edge(edge.neuron, edge.weight, int(counts[edge.neuron]))
                 for edge in strongest(rows.mean(axis=0), lower_units, k))
