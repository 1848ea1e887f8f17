"""A stage: one product of the build (or a few made in one pass), its plan and its run.

``plan`` lists the work the cache still lacks, as small frozen dataclasses
with a ``size`` (the unit of the stage's progress bar); the runner shares the
list between torchrun ranks and hands each rank's part to ``run``, which
computes it and writes the cache through the workspace.  ``derive`` then adds
what later stages plan from (the mapped neurons, the top patches) to the
``State``.  A stage owns the keys and member names of what it writes.
``status`` is the same plans, counted and not run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import SitegenError
from ..store.cache import Expect

if TYPE_CHECKING:
    from .stages.selection import TopPatches
    from .workspace import Workspace


@dataclass(frozen=True)
class State:
    """What earlier stages decided, for the plans of later ones."""

    mapped: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # layer name -> its mapped neurons
    tops: Mapping[str, TopPatches] = field(default_factory=dict)  # layer name -> its top and percentile patches
    # layer name -> the side of its effective receptive field in pixels; None where patches are the whole image
    effective: Mapping[str, int | None] = field(default_factory=dict)


class Stage:
    name = ""  # what status calls it
    title = ""  # its progress bar ("" for none: the stage only derives)
    needs: tuple[str, ...] = ()  # stages whose products its plan reads

    def plan(self, ws: Workspace, state: State) -> list[Any]:
        return []

    def run(self, ws: Workspace, state: State, work: Sequence[Any], advance: Callable[[int], None]) -> None:
        """Compute ``work`` (this rank's part of the plan), calling ``advance`` with each piece's size."""

    def derive(self, ws: Workspace, state: State) -> State:
        return state

    def describe(self, ws: Workspace, state: State, work: list[Any]) -> str:
        """One line for ``sitegen status``: what the plan would compute."""
        return f"{self.name}: {sum(w.size for w in work)} to compute"


class EntryStage(Stage):
    """A stage each of whose pieces of work makes one whole cache entry of ``kind`` (size 1 each); what
    it made is counted as ``counted``."""

    kind = ""
    counted = ""

    def candidates(self, ws: Workspace, state: State) -> list[Any]:
        """Every piece of work, made or not."""
        return []

    def key(self, ws: Workspace, state: State, work: Any) -> str:
        raise NotImplementedError

    def entry(self, ws: Workspace, state: State, work: Any) -> dict[str, Any]:
        """Compute the members of the entry of ``work``."""
        raise NotImplementedError

    def plan(self, ws: Workspace, state: State) -> list[Any]:
        return [w for w in self.candidates(ws, state) if not ws.cache.has(self.kind, self.key(ws, state, w))]

    def run(self, ws: Workspace, state: State, work: Sequence[Any], advance: Callable[[int], None]) -> None:
        for w in work:
            ws.write(self.kind, self.key(ws, state, w), self.entry(ws, state, w))
            ws.count(self.counted)
            advance(1)

    def expect(self, ws: Workspace, state: State, work: Any) -> Expect:
        """What the entry of ``work``'s arrays must be (``Cache.get``)."""
        return {}

    def value(self, ws: Workspace, state: State, work: Any) -> dict[str, Any]:
        """The entry of ``work``, computed again if it was damaged (or found wrong) since the stage wrote it."""
        entry = ws.cache.get(self.kind, self.key(ws, state, work), expect=self.expect(ws, state, work))
        if entry is None:
            entry = self.entry(ws, state, work)
            ws.cache.put(self.kind, self.key(ws, state, work), entry)
        return entry

    def describe(self, ws: Workspace, state: State, work: list[Any]) -> str:
        if not self.candidates(ws, state):
            return ""  # nothing of this kind in this atlas
        return super().describe(ws, state, work)


IDENTITY = ("item", "items", "featured", "layer", "index", "root", "statistic")


def identity(work: Any) -> str:
    """What a piece of work is about (its ``IDENTITY`` fields), without what it still lacks: its neurons,
    methods or layers to do shrink as parts of it are written, while the lock that claims it must not change."""
    return repr([(spec.name, getattr(work, spec.name)) for spec in dataclasses.fields(work) if spec.name in IDENTITY])


def missing(ws: Workspace, kind: str, key: str, neurons: Sequence[int], member: Callable[[int], str]) -> list[int]:
    """The ``neurons`` whose member the entry lacks."""
    names = ws.cache.names(kind, key)
    return [n for n in neurons if member(n) not in names]


def require(ws: Workspace, kind: str, key: str, arrays_only: bool = False, expect: Expect | None = None
            ) -> dict[str, Any]:
    """An entry that an earlier stage wrote (its arrays alone, if asked), checked against ``expect``; a
    damaged or wrong one is removed, and the next build computes it again."""
    entry = ws.cache.get(kind, key, arrays_only, expect)
    if entry is None:
        raise SitegenError(f"cache entry {kind}/{key} was damaged or wrong and has been removed; run "
                           f"`sitegen compute` again to recompute it")
    return entry
