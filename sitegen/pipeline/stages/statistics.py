"""Per-neuron statistics over the probe set (``sitegen/stats``): each computed in passes over the cached
activations, so memory does not grow with the probe set, and cached per layer."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ... import stats
from ...model.layers import Layer
from ...store import members
from ..stage import EntryStage, State
from ..workspace import Workspace
from .activations import probe_values


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
    counted = "statistics"

    def candidates(self, ws: Workspace, state: State) -> list[Statistic]:
        return [Statistic(layer, statistic) for layer in ws.layers for statistic in stats.STATISTICS]

    def key(self, ws: Workspace, state: State, work: Statistic) -> str:
        statistic, mapped = work.statistic, list(state.mapped[work.layer.name])
        return ws.key(members.STATISTICS, statistic.NAME, statistic.PARAMETERS, work.layer.path, ws.probe_hash, mapped)

    def entry(self, ws: Workspace, state: State, work: Statistic) -> dict[str, np.ndarray]:
        arrays = work.statistic.compute(probe_values(ws, work.layer, state.mapped[work.layer.name]), len(ws.probe))
        return {members.array(name): value for name, value in arrays.items()}

    def expect(self, ws: Workspace, state: State, work: Statistic) -> dict:
        return members.expect(members.STATISTICS, len(state.mapped[work.layer.name]))

    def describe(self, ws: Workspace, state: State, work: list[Statistic]) -> str:
        return f"statistics: {len(work)} of {len(ws.layers) * len(stats.STATISTICS)} (layer, statistic) to compute"


def read(ws: Workspace, state: State, layer: Layer, statistic: ModuleType) -> dict[str, np.ndarray]:
    """A statistic's arrays over the layer's mapped neurons, by name (computed again if its entry was damaged)."""
    return members.arrays(StatisticsStage().value(ws, state, Statistic(layer, statistic)))
