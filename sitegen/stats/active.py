"""How often the neuron is strongly on: the share of probe items on which it reaches half its maximum
over the probe set.  "Fires (> 0)" says nothing about a layer whose outputs can be negative
(EfficientNet's block outputs are linear projections, and a channel's activation is its maximum over
positions: above 0 on nearly every item); this does.  Half, not a quarter: on the default atlas a
quarter of the maximum is reached on over 90 % of the items by most neurons of every block but the
last.  A neuron never above 0 is never strongly on."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

NAME = "active"
SHARE = 0.5
PARAMETERS = {"share": SHARE}


def compute(chunks: Callable[[], Iterator[np.ndarray]], count: int) -> dict[str, np.ndarray]:
    """Two passes over the probe set's activations ([n, U] per chunk): the maximum, then the count."""
    high = None
    for values in chunks():
        top = values.max(0).astype(np.float64)
        high = top if high is None else np.maximum(high, top)
    assert high is not None  # a probe set has at least one view (images.py refuses a pattern that matches none)
    threshold = np.where(high > 0, SHARE * high, np.inf)
    above = np.zeros(len(high))
    for values in chunks():
        above += (values >= threshold).sum(0)
    return {"share": above / count, "threshold": threshold}


def record(arrays: dict[str, np.ndarray], row: int) -> dict:
    threshold = float(arrays["threshold"][row])
    return {"share": float(arrays["share"][row]), "threshold": threshold if np.isfinite(threshold) else None}


def context(record: dict) -> dict:
    return record
