"""Parts of a tree node (DESIGN §2, group step and part): the channels of the layer below that give the node
positive path weight, partitioned by where on the image they give it.

A channel's map ``A_j * g_j`` over the layer's positions (its path weight,
position by position), its positive part blurred (a Gaussian of ``blur``
positions, so that evidence a position apart is near, not as far as the
other side of the image) and normalised to sum 1, says where its evidence
lies.  Weighted k-means (each channel weighs its path weight)
groups the channels whose evidence lies in the same place; every channel
with positive weight is in a part, so the parts' shares add up to the
whole.  Deterministic: the first centre is the strongest channel's map,
each next one the channel farthest from the centres so far, weighted
(k-means++ without the draw), then Lloyd's iterations.  A flat layer has
no positions: its parts are its strongest channels alone and the rest
together.  Pure array code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ITERATIONS = 100


def partition(maps: np.ndarray, candidates: Sequence[int], k: int, blur: float = 1.0) -> list[tuple[int, ...]]:
    """At most ``k`` parts of the ``candidates`` (channel indices) with positive path weight, from ``maps``
    (``[C, h, w]``, or ``[C]`` for a flat layer: activation times gradient per position), where each
    channel's evidence lies blurred by ``blur`` positions (a Gaussian's deviation): each part its channels
    in increasing order, the parts by their summed weight, strongest first."""
    flat = maps.reshape(maps.shape[0], -1).astype(np.float64)
    weights = flat.sum(axis=1)
    chosen = np.array([j for j in candidates if weights[j] > 0], dtype=int)
    if chosen.size == 0:
        return []
    chosen = chosen[np.argsort(-weights[chosen], kind="stable")]
    if flat.shape[1] == 1 or chosen.size <= k:
        groups = [chosen[i:i + 1] for i in range(min(k - 1, chosen.size))] + [chosen[k - 1:]]
    else:
        positive = _blurred(np.clip(maps[chosen].astype(np.float64), 0, None), blur)
        positive = positive.reshape(positive.shape[0], -1)
        where = positive / positive.sum(axis=1, keepdims=True)
        groups = [chosen[labels] for labels in _kmeans(where, weights[chosen], k)]
    parts = [tuple(sorted(int(j) for j in group)) for group in groups if len(group)]
    return sorted(parts, key=lambda part: (-float(weights[list(part)].sum()), part))


def _blurred(maps: np.ndarray, blur: float) -> np.ndarray:
    """``[C, h, w]`` maps, each blurred by a Gaussian of deviation ``blur`` positions (zero outside)."""
    if blur <= 0:
        return maps
    reach = max(1, int(np.ceil(3 * blur)))
    offsets = np.arange(-reach, reach + 1)
    kernel = np.exp(-0.5 * (offsets / blur) ** 2)
    kernel /= kernel.sum()
    for axis in (1, 2):
        padded = np.pad(maps, [(0, 0)] + [(reach, reach) if a == axis else (0, 0) for a in (1, 2)])
        length = maps.shape[axis]
        maps = sum(weight * np.take(padded, np.arange(length) + shift + reach, axis=axis)
                   for shift, weight in zip(offsets, kernel))
    return maps


def _kmeans(points: np.ndarray, weights: np.ndarray, k: int) -> list[np.ndarray]:
    """Weighted k-means of ``points`` (rows, the strongest first): the rows of each non-empty cluster."""
    centres = [points[0]]
    for _ in range(1, k):
        distance = np.min([((points - c) ** 2).sum(axis=1) for c in centres], axis=0)
        far = int(np.argmax(weights * distance))
        if distance[far] <= 0:
            break  # every point is a centre already
        centres.append(points[far])
    centre = np.stack(centres)
    labels = np.full(points.shape[0], -1)
    for _ in range(ITERATIONS):
        distance = ((points[:, None, :] - centre[None]) ** 2).sum(axis=2)
        new = distance.argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for c in range(centre.shape[0]):
            inside = labels == c
            if inside.any():
                centre[c] = np.average(points[inside], axis=0, weights=weights[inside])
    return [np.flatnonzero(labels == c) for c in range(centre.shape[0])]
