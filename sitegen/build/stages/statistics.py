"""Per-neuron statistics over the probe set (``sitegen/stats``): each computed in passes over the cached
activations, so memory does not grow with the probe set, and cached per layer."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Sequence

import numpy as np

from ... import stats
from ...model.layers import Layer
from ...store import members
from ..stage import EntryStage, State
from ..workspace import Workspace
from .activations import probe_values


def statistic_key(ws: Workspace, layer: Layer, units: Sequence[int], statistic: ModuleType) -> str:
    return ws.key("stats", statistic.NAME, statistic.PARAMETERS, layer.path, ws.probe_hash, list(units))


def compute(ws: Workspace, layer: Layer, units: Sequence[int], statistic: ModuleType) -> dict[str, np.ndarray]:
    arrays = statistic.compute(probe_values(ws, layer, units), len(ws.probe))
    return {members.array(name): value for name, value in arrays.items()}


def read(ws: Workspace, layer: Layer, units: Sequence[int], statistic: ModuleType) -> dict[str, np.ndarray]:
    """A statistic's arrays, by name (computed again if its entry was damaged)."""
    key = statistic_key(ws, layer, units, statistic)
    entry = ws.cache.get(members.STATISTICS, key)
    if entry is None:
        entry = compute(ws, layer, units, statistic)
        ws.cache.put(members.STATISTICS, key, entry)
    return members.arrays(entry)


@dataclass(frozen=True)
class Statistic:
    layer: Layer
    statistic: ModuleType
    size = 1


class StatisticsStage(EntryStage):
    name = "statistics"
    title = "statistics (layers)"
    needs = ("activations",)
    kind = members.STATISTICS
    unit = "statistics"

    def candidates(self, ws: Workspace, state: State) -> list[Statistic]:
        return [Statistic(layer, statistic) for layer in ws.layers for statistic in stats.STATISTICS]

    def key(self, ws: Workspace, state: State, work: Statistic) -> str:
        return statistic_key(ws, work.layer, state.units[work.layer.name], work.statistic)

    def entry(self, ws: Workspace, state: State, work: Statistic) -> dict:
        return compute(ws, work.layer, state.units[work.layer.name], work.statistic)

    def describe(self, ws: Workspace, state: State, work: list[Statistic]) -> str:
        return f"statistics: {len(work)} of {len(ws.layers) * len(stats.STATISTICS)} (layer, statistic) to compute"
