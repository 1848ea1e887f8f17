"""The neuron's activation over the probe set: its mean, how often it fires (> 0), and a histogram.

Two passes over the chunks (the range first, then the counts), so memory does
not grow with the probe set.  The percentile patches are read off this
histogram too (``pipeline/stages/selection.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

NAME = "histogram"
BINS = 24
PARAMETERS = {"bins": BINS}


def compute(chunks: Callable[[], Iterator[np.ndarray]], count: int) -> dict[str, np.ndarray]:
    low, high, total, firing = None, None, None, None
    for values in chunks():
        values = values.astype(np.float64)
        if low is None or high is None or total is None or firing is None:  # the first chunk: all four are None
            low, high = np.full(values.shape[1], np.inf), np.full(values.shape[1], -np.inf)
            total, firing = np.zeros(values.shape[1]), np.zeros(values.shape[1])
        low, high = np.minimum(low, values.min(0)), np.maximum(high, values.max(0))
        total += values.sum(0)
        firing += (values > 0).sum(0)
    # a probe set has at least one view (images.py refuses a pattern that matches no image)
    assert low is not None and high is not None and total is not None and firing is not None
    width = np.where(high > low, (high - low) / BINS, 1.0)
    counts = np.zeros((len(low), BINS), dtype=np.int64)
    for values in chunks():
        scaled = (values.astype(np.float64) - low) / width
        finite = np.isfinite(scaled)  # a NaN activation (a model that computes one) falls in no bar
        which = np.clip(np.where(finite, scaled, 0).astype(np.int64), 0, BINS - 1)
        for column in range(len(low)):
            counts[column] += np.bincount(which[finite[:, column], column], minlength=BINS)
    return {"mean": total / count, "firing": firing / count, "low": low, "high": high, "counts": counts}


def record(arrays: dict[str, np.ndarray], row: int) -> dict:
    return {"mean": float(arrays["mean"][row]), "firing": float(arrays["firing"][row]),
            "low": float(arrays["low"][row]), "high": float(arrays["high"][row]),
            "counts": arrays["counts"][row].tolist()}


def context(record: dict, width: int = 240, height: int = 60) -> dict:
    """Bars for an inline SVG, and where zero is when the range spans it."""
    counts = record["counts"]
    peak = max(counts) or 1
    step = width / len(counts)
    bars = [{"x": round(i * step, 1), "w": round(step - 1, 1), "h": round(height * c / peak, 1),
             "y": round(height - height * c / peak, 1), "n": c} for i, c in enumerate(counts)]
    span = record["high"] - record["low"]
    zero = None
    if span > 0 and record["low"] < 0 < record["high"]:
        zero = round(width * (0 - record["low"]) / span, 1)
    return {"bars": bars, "width": width, "height": height, "zero": zero, **record}
