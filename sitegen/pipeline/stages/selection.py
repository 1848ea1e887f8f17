"""Which probe items each neuron shows: its top k, and the item nearest each configured percentile of its
activations (read off its histogram) that is neither among its top k nor a higher percentile's, with its place
among the probe views.  Decided from the cached activations, streamed chunk by chunk; under torchrun each rank
takes its own chunks and the top k are merged exactly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ...engine.topk import RunningTopK
from ...model.layers import Layer
from ...stats import histogram
from ..stage import Stage, State
from ..workspace import Workspace
from . import statistics
from .activations import chunks, read_chunk


@dataclass(frozen=True, eq=False)
class TopPatches:
    """A layer's chosen probe views: [U, k] arrays for the top k, best first, and per percentile
    ([U] probe index, value, position, place among the probe views) of the view nearest it."""

    mapped: tuple[int, ...]
    order: np.ndarray  # probe indices
    values: np.ndarray
    positions: np.ndarray
    levels: Mapping[float, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]

    def wanted(self) -> dict[int, dict[int, int]]:
        """probe index -> {neuron whose top k holds it: its position there}."""
        wanted: dict[int, dict[int, int]] = {}
        for neuron, rows, positions in zip(self.mapped, self.order.tolist(), self.positions.tolist()):
            for index, position in zip(rows, positions):
                wanted.setdefault(index, {})[neuron] = position
        return wanted

    def wanted_levels(self) -> dict[int, dict[int, int]]:
        """probe index -> {neuron shown at a lower level there: its position}."""
        wanted: dict[int, dict[int, int]] = {}
        for rows, _, positions, _ in self.levels.values():
            for neuron, index, position in zip(self.mapped, rows.tolist(), positions.tolist()):
                if index >= 0:
                    wanted.setdefault(index, {})[neuron] = position
        return wanted


def top_k(ws: Workspace, layer: Layer, units: Sequence[int]) -> RunningTopK:
    """The exact top k of each neuron over the probe set (at most ``per_photo`` views of one photo)."""
    k, cap = ws.config.compute.top_k, ws.config.compute.per_photo
    photos: dict[str, int] = {}  # a photo by its file's bytes: two files may share a name
    groups = np.array([photos.setdefault(item.digest, len(photos)) for item in ws.probe], dtype=np.int64)
    running = RunningTopK(len(units), k, groups, cap)
    for start, items in ws.group.share(chunks(ws)):  # each rank its own chunks
        values, positions = read_chunk(ws, items, layer)
        running.update(values[:, units], positions[:, units], np.arange(start, start + values.shape[0]))
    merged = RunningTopK(len(units), k, groups, cap)
    for shard in ws.group.gather_to_all(running):  # exact: the top k of the union
        merged.merge(shard)
    return merged


def targets(counts: np.ndarray, low: np.ndarray, high: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """[P, U]: each percentile of each neuron's activations, read off its histogram."""
    out = np.zeros((len(percentiles), len(low)))
    for column in range(len(low)):
        bins = counts[column].astype(np.float64)
        width = (float(high[column]) - float(low[column])) / len(bins)
        below = np.concatenate([[0.0], np.cumsum(bins)])
        for row, percentile in enumerate(percentiles):
            wanted = percentile / 100 * bins.sum()
            b = int(np.clip(np.searchsorted(below[1:], wanted), 0, len(bins) - 1))
            inside = (wanted - below[b]) / bins[b] if bins[b] else 0.0
            out[row, column] = float(low[column]) + width * (b + inside)
    return out


def levels(ws: Workspace, state: State, layer: Layer, order: np.ndarray) -> dict[float, tuple]:
    """For each configured percentile, each neuron's probe item nearest it (the first of equals) among those
    neither in its top k (``order``, [U, k]) nor chosen for a higher percentile, so that a small probe set,
    whose high percentiles fall inside the top k, still shows as many views as there are percentiles; and each
    chosen item's place among the probe views by activation (1: the highest; ties share the higher place).
    One pass over the activations per percentile, and one to count places.  Nothing where the top k are the
    whole probe set; -1 where no view is left."""
    percentiles, units = list(ws.config.compute.percentiles), state.mapped[layer.name]
    if not percentiles or order.shape[1] >= len(ws.probe):
        return {}
    shape = statistics.read(ws, state, layer, histogram)
    wanted = targets(shape["counts"], shape["low"], shape["high"], percentiles)
    taken = order
    chosen = []
    for row in range(len(percentiles)):
        chosen.append(_nearest(ws, layer, units, wanted[row], taken))
        taken = np.concatenate([taken, chosen[-1][0][:, None]], axis=1)
    places = np.ones((len(percentiles), len(units)), dtype=np.int64)
    values = np.stack([value for _, value, _ in chosen])
    for _, items in chunks(ws):
        chunk_values = read_chunk(ws, items, layer)[0][:, units]
        places += (chunk_values[None, :, :] > values[:, None, :]).sum(axis=1)
    return {p: (rows, value, positions, places[i]) for i, (p, (rows, value, positions)) in
            enumerate(zip(percentiles, chosen))}


def _nearest(ws: Workspace, layer: Layer, units: Sequence[int], wanted: np.ndarray,
             taken: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """([U] probe index, value, position): each neuron's item whose activation is nearest ``wanted`` among
    those not in its row of ``taken`` ([U, n]); -1 where every item is."""
    best, rows = np.full(len(units), np.inf), np.full(len(units), -1, dtype=np.int64)
    values, positions = np.zeros(len(units)), np.zeros(len(units), dtype=np.int64)
    columns = np.arange(len(units))
    for start, items in chunks(ws):
        chunk_values, chunk_positions = read_chunk(ws, items, layer)
        chunk_values, chunk_positions = chunk_values[:, units], chunk_positions[:, units]
        numbers = np.arange(start, start + len(chunk_values))
        free = ~(numbers[:, None, None] == taken[None, :, :]).any(axis=2)  # [n, U]
        distance = np.where(free & ~np.isnan(chunk_values), np.abs(chunk_values - wanted[None, :]), np.inf)
        nearest = distance.argmin(axis=0)
        better = free[nearest, columns] & (distance[nearest, columns] < best)
        best = np.where(better, distance[nearest, columns], best)
        rows = np.where(better, start + nearest, rows)
        values = np.where(better, chunk_values[nearest, columns], values)
        positions = np.where(better, chunk_positions[nearest, columns], positions)
    return rows, values, positions


def select(ws: Workspace, state: State, layer: Layer) -> TopPatches:
    top = top_k(ws, layer, state.mapped[layer.name])
    assert (top.rows >= 0).all(), "fewer views than top_k: loading.collect_items checks per_photo"
    order = top.rows.T.copy()
    return TopPatches(state.mapped[layer.name], order, top.values.T.copy(), top.positions.T.copy(),
                      levels(ws, state, layer, order))


class SelectionStage(Stage):
    name = "selection"
    needs = ("activations", "statistics")

    def derive(self, ws: Workspace, state: State) -> State:
        return replace(state, tops={layer.name: select(ws, state, layer) for layer in ws.layers})

    def describe(self, ws: Workspace, state: State, work: list) -> str:
        return ""
