"""Two checkpoints' neurons side by side (numpy only): the correlation of their activations over the probe
set, a one-to-one matching, and how much each neuron changed.

The change score of a neuron and its match is 1 minus the mean of up to three terms, each in [0, 1] and 1
where nothing changed: the correlation of their activations over the probe set (below 0 counts as 0), the overlap of
their top-k probe views (Jaccard), and, above the lowest layer, the overlap of their children over the
dataset (Jaccard, the other model's children taken through the lower layer's matching).  0: the neuron
fires on the same views, as strongly ranked, built from the same parts; 1: nothing in common.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np


def correlations(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From chunks of the same views through both models, ``([n, C], [n, C'])`` each: the Pearson
    correlation of every neuron with every other-model neuron, [C, C'], and each model's largest activation
    per neuron.  A neuron constant over the probe set correlates 1 with a neuron that is the same constant,
    0 with any other."""
    chunks = iter(pairs)
    first = next(chunks, None)
    if first is None:
        raise ValueError("no probe views to compare the models on")
    # sums of x minus its first value: a constant neuron's spread comes out exactly 0
    shifts = [x[0].astype(np.float64) for x in first]
    sums, squares = [np.zeros(x.shape[1]) for x in first], [np.zeros(x.shape[1]) for x in first]
    cross, peaks = np.zeros((first[0].shape[1], first[1].shape[1])), [np.full(x.shape[1], -np.inf) for x in first]
    count = 0
    for a, b in itertools.chain([first], chunks):
        a, b = a.astype(np.float64), b.astype(np.float64)
        count += a.shape[0]
        for side, x in enumerate((a, b)):
            peaks[side] = np.maximum(peaks[side], x.max(axis=0))
        a, b = a - shifts[0], b - shifts[1]
        for side, x in enumerate((a, b)):
            sums[side] += x.sum(axis=0)
            squares[side] += (x * x).sum(axis=0)
        cross += a.T @ b
    offsets = [s / count for s in sums]  # the means, less the shifts
    means = [shift + offset for shift, offset in zip(shifts, offsets)]
    spreads = [np.sqrt(np.maximum(q / count - m * m, 0.0)) for q, m in zip(squares, offsets)]
    covariance = cross / count - np.outer(offsets[0], offsets[1])
    scale = np.outer(spreads[0], spreads[1])
    flat = [spread <= 1e-7 * np.abs(mean) + 1e-12 for spread, mean in zip(spreads, means)]
    r = np.where(scale > 0, covariance / np.where(scale > 0, scale, 1.0), 0.0)
    same = np.abs(means[0][:, None] - means[1][None, :]) <= 1e-7 * np.maximum(
        np.abs(means[0])[:, None], np.abs(means[1])[None, :]) + 1e-12
    r[np.outer(flat[0], flat[1])] = 0.0
    r[np.outer(flat[0], flat[1]) & same] = 1.0
    r[np.outer(flat[0], ~flat[1]) | np.outer(~flat[0], flat[1])] = 0.0
    return np.clip(r, -1.0, 1.0), peaks[0], peaks[1]


def assignment(score: np.ndarray) -> np.ndarray:
    """The one-to-one matching of rows to columns with the largest total score (a square matrix): ``match[i]``
    is row i's column.  The Hungarian method with shortest augmenting paths (O(n^3), each step vectorized),
    exact: an optimal assignment, not a greedy one."""
    n = score.shape[0]
    if score.shape != (n, n):
        raise ValueError(f"expected a square matrix, got {score.shape}")
    cost = score.max(initial=0.0) - score  # minimise
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    row_of = np.zeros(n + 1, dtype=np.int64)  # column j (1-based) -> its row (1-based), 0: free
    way = np.zeros(n + 1, dtype=np.int64)
    for i in range(1, n + 1):
        row_of[0], column = i, 0
        slack = np.full(n + 1, np.inf)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[column] = True
            row = row_of[column]
            free = ~used[1:]
            reduced = cost[row - 1] - u[row] - v[1:]
            better = free & (reduced < slack[1:])
            slack[1:][better] = reduced[better]
            way[1:][better] = column
            candidates = np.where(free, slack[1:], np.inf)
            nearest = int(np.argmin(candidates)) + 1
            delta = candidates[nearest - 1]
            u[row_of[used]] += delta
            v[used] -= delta
            slack[1:][free] -= delta
            column = nearest
            if row_of[column] == 0:
                break
        while column:
            previous = way[column]
            row_of[column] = row_of[previous]
            column = previous
    match = np.zeros(n, dtype=np.int64)
    match[row_of[1:] - 1] = np.arange(n)
    return match


def jaccard(a: Iterable[int], b: Iterable[int]) -> float:
    a, b = set(a), set(b)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def change_score(correlation: float, top_overlap: float, edge_overlap: float | None) -> float:
    """See the module's docstring."""
    terms = [max(correlation, 0.0), top_overlap] + ([edge_overlap] if edge_overlap is not None else [])
    return float(min(1.0, max(0.0, 1.0 - sum(terms) / len(terms))))


def status(alive_now: bool, alive_before: bool) -> str:
    """"died": fired on some probe view before and on none now; "born": the other way round; else "".  Only
    for layers whose outputs cannot be negative (after a ReLU): elsewhere a sign says little."""
    return "died" if alive_before and not alive_now else "born" if alive_now and not alive_before else ""


def inverse(match: Sequence[int]) -> dict[int, int]:
    """The other model's neuron -> this model's, of a one-to-one matching."""
    return {int(other): neuron for neuron, other in enumerate(match)}
