"""Which probe items each neuron shows: its top k, and the item nearest each configured percentile of its
activations (read off its histogram) that is not among its top k.  Decided from the cached activations,
streamed chunk by chunk; under torchrun each rank takes its own chunks and the top k are merged exactly."""

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
    ([U] probe index, value, position) of the view nearest it."""

    mapped: tuple[int, ...]
    order: np.ndarray  # probe indices
    values: np.ndarray
    positions: np.ndarray
    levels: Mapping[float, tuple[np.ndarray, np.ndarray, np.ndarray]]

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
        for rows, _, positions in self.levels.values():
            for neuron, index, position in zip(self.mapped, rows.tolist(), positions.tolist()):
                if index >= 0:
                    wanted.setdefault(index, {})[neuron] = position
        return wanted


def top_k(ws: Workspace, layer: Layer, units: Sequence[int]) -> RunningTopK:
    """The exact top k of each neuron over the probe set."""
    k = ws.config.compute.top_k
    running = RunningTopK(len(units), k)
    for start, items in ws.group.share(chunks(ws)):  # each rank its own chunks
        values, positions = read_chunk(ws, items, layer)
        running.update(values[:, units], positions[:, units], np.arange(start, start + values.shape[0]))
    merged = RunningTopK(len(units), k)
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
    not in its top k (``order``, [U, k]); one pass.  Nothing where the top k are the whole probe set; -1 where
    a percentile's item is a higher percentile's too (shown once)."""
    percentiles, units = list(ws.config.compute.percentiles), state.mapped[layer.name]
    if not percentiles or order.shape[1] >= len(ws.probe):
        return {}
    shape = statistics.read(ws, state, layer, histogram)
    wanted = targets(shape["counts"], shape["low"], shape["high"], percentiles)
    best, rows = np.full(wanted.shape, np.inf), np.zeros(wanted.shape, dtype=np.int64)
    values, positions = np.zeros(wanted.shape), np.zeros(wanted.shape, dtype=np.int64)
    columns = np.arange(len(units))
    for start, items in chunks(ws):
        chunk_values, chunk_positions = read_chunk(ws, items, layer)
        chunk_values, chunk_positions = chunk_values[:, units], chunk_positions[:, units]
        numbers = np.arange(start, start + len(chunk_values))
        in_top = (numbers[:, None, None] == order[None, :, :]).any(axis=2)  # [n, U]
        for row in range(len(percentiles)):
            distance = np.where(in_top, np.inf, np.abs(chunk_values - wanted[row][None, :]))
            nearest = distance.argmin(axis=0)
            better = distance[nearest, columns] < best[row]
            best[row] = np.where(better, distance[nearest, columns], best[row])
            rows[row] = np.where(better, start + nearest, rows[row])
            values[row] = np.where(better, chunk_values[nearest, columns], values[row])
            positions[row] = np.where(better, chunk_positions[nearest, columns], positions[row])
    for i in range(1, len(percentiles)):
        rows[i] = np.where((rows[i][None, :] == rows[:i]).any(axis=0), -1, rows[i])
    return {p: (rows[i], values[i], positions[i]) for i, p in enumerate(percentiles)}


def select(ws: Workspace, state: State, layer: Layer) -> TopPatches:
    top = top_k(ws, layer, state.mapped[layer.name])
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
