"""The runner: every stage in turn (plan, share between torchrun ranks, run, write, progress), then the
manifest.  ``status`` is the same plans, counted and not run.

Cache entries (DESIGN §3; every key also holds the compute version; the kinds and member names are in
``store/members.py``) and the stages that write them:

- ``acts`` (activations): per featured item, and per chunk of probe items, and layer: activations and positions;
- ``photo``, ``preds`` (photos): per featured item: the pixels the model sees, the top predictions;
- ``vis`` (featured): per featured item, layer and method: every neuron's pictures;
- ``edges`` (featured and patches): per item and layer: every neuron's edge weights;
- ``stats`` (statistics): per layer and statistic, over the probe set;
- ``patch`` (patches): per probe item and layer: photo and guided patches of the neurons that show it;
- ``opt``, ``optcheck`` (optimize): per layer, optimized images and their check;
- ``spec`` (specificity): per featured item and layer; ``image`` (the loader): per image file, whether it can
  be used;
- ``topviews`` (classes): per layer, with a labelled probe set, each mapped neuron's top probe views.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..config import Config
from ..images import skip_summary
from ..store import manifest as manifest_store
from ..store.cache import LOCKS, Cache
from ..store.locks import Lock, held, slot
from ..store.manifest import Manifest
from . import compare
from .record import record
from .stage import Stage, State, identity
from .stages import patches
from .stages.activations import ActivationsStage
from .stages.classes import ClassesStage
from .stages.effective import EffectiveStage
from .stages.effects import EffectsStage
from .stages.featured import FeaturedStage
from .stages.mapped import MappedStage
from .stages.maps import MapsStage
from .stages.optimize import ExcitationStage, OptimizeStage
from .stages.patches import PatchesStage
from .stages.photos import PhotosStage
from .stages.sanity import SanityStage
from .stages.selection import SelectionStage
from .stages.specificity import SpecificityStage
from .stages.statistics import StatisticsStage
from .stages.treecheck import TreeCheckStage
from .stages.trees import TreesStage
from .workspace import Workspace

STAGES: tuple[Stage, ...] = (ActivationsStage(), MappedStage(), StatisticsStage(), ClassesStage(), SelectionStage(),
                             EffectiveStage(),
                             PhotosStage(), FeaturedStage(), MapsStage(), TreesStage(), PatchesStage(),
                             OptimizeStage(), SpecificityStage(), ExcitationStage(), SanityStage(), TreeCheckStage(),
                             EffectsStage())


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), disable=quiet, transient=False)


def shared(ws: Workspace, stage: Stage, state: State, work: list, advance: Callable[[int], None]) -> None:
    """Run a stage's plan while other builds on the same cache may run it too.  Each piece of work is claimed
    (a lock on its identity, see ``store/locks.py``) by the process that computes it, a quarter of the plan
    at a time, and planned again once claimed, so what another process finished meanwhile is not done
    twice; pieces claimed elsewhere are left to their process, and waited for when nothing else is left.
    A piece runs once in a process: one that its run leaves unfinished is not tried again."""
    folder = ws.cache.root / LOCKS / ("stage-" + re.sub(r"\W+", "-", stage.name))
    batch, told = max(1, math.ceil(len(work) / 4)), False
    ran: set[str] = set()
    while work:
        claimed: dict[str, Lock] = {}
        for piece in work:
            name = identity(piece)
            if len(claimed) < batch and name not in claimed:
                lock = Lock(slot(folder, name))
                if lock.try_take():
                    claimed[name] = lock
        try:
            if claimed:
                stage.run(ws, state, [piece for piece in stage.plan(ws, state) if identity(piece) in claimed],
                          advance)
                ran.update(claimed)
            else:
                if not told:
                    ws.log(f"waiting for another sitegen build on {ws.cache.root} to finish its {stage.name}")
                    told = True
                with held(slot(folder, identity(work[0]))):
                    pass
        finally:
            for lock in claimed.values():
                lock.release()
        work = [piece for piece in stage.plan(ws, state) if identity(piece) not in ran]


def run(ws: Workspace) -> Manifest | None:
    """Compute whatever the cache lacks; the manifest on rank 0 (None on the others)."""
    state = State()
    with _progress(ws.quiet) as progress:
        for stage in STAGES:
            work = ws.group.share(stage.plan(ws, state))
            task = progress.add_task(stage.title, total=sum(w.size for w in work)) if stage.title else None
            advance: Callable[[int], None] = (lambda n: None) if task is None else partial(progress.advance, task)
            if ws.group.active or not work:  # torchrun's ranks share the plan between them
                stage.run(ws, state, work, advance)
            else:
                shared(ws, stage, state, work, advance)
            if task is not None:
                progress.stop_task(task)  # its clock stops, also where there was nothing to do
            ws.group.flush(ws.cache)
            state = stage.derive(ws, state)
    return record(ws, state) if ws.group.leader else None


def compute(config: Config, cache_dir: str | Path, device: str | None = None, quiet: bool = False,
            log: Callable[[str], None] = print) -> tuple[Manifest | None, dict[str, int]]:
    """Compute whatever the cache lacks for ``config``; return (manifest, what was computed, by kind)."""
    cache = Cache(cache_dir)
    with Workspace.open(config, cache, device, quiet=quiet, log=log) as ws:
        manifest = run(ws)
        tallies = [dict(ws.tally)]
        if config.compare is not None:  # the other checkpoint's atlas, and the changes
            comparison, more = compare.compute(ws, manifest, run, device)
            tallies += more
            manifest = replace(manifest, compare=comparison) if manifest else None
        counts = ws.group.gather_to_all({kind: sum(t.get(kind, 0) for t in tallies) for kind in set().union(*tallies)})
        computed = {kind: sum(c.get(kind, 0) for c in counts) for kind in sorted(set().union(*counts))}
        if ws.group.leader:
            assert manifest is not None  # run gives the leader its manifest
            manifest_store.save(cache, config.path, manifest)
        for warning in cache.warnings:
            log(f"warning: {warning}")
        for note in ws.notes if ws.group.leader else ():
            log(f"note: {note}")
        if ws.skipped and ws.group.leader:
            log(skip_summary(list(ws.skipped)))
    return manifest, computed


def _changes(ws: Workspace, previous: Manifest) -> list[str]:
    """What changed since the last computation, as lines."""
    lines, config = [], ws.config
    if previous.model.fingerprint != ws.model.fingerprint:
        lines.append(f"the model changed: {previous.model.fingerprint} -> {ws.model.fingerprint}")
    old_layers = [layer.name for layer in previous.layers]
    new = [layer.name for layer in ws.layers if layer.name not in old_layers]
    if new:
        lines.append(f"new layers: {', '.join(new)}")
    old_featured = {f.name for f in previous.featured}
    added = [item.name for item in ws.featured if item.name not in old_featured]
    if added:
        lines.append(f"new featured images: {', '.join(added)}")
    if previous.probe.count != len(ws.probe):
        lines.append(f"the probe set changed: {previous.probe.count} -> {len(ws.probe)} views")
    if previous.top_k != config.compute.top_k:
        lines.append(f"top_k changed: {previous.top_k} -> {config.compute.top_k}")
    if previous.per_photo != config.compute.per_photo:
        lines.append(f"per_photo changed: {previous.per_photo} -> {config.compute.per_photo}")
    before = {layer.name: layer.patches for layer in previous.layers}
    for layer in ws.layers:
        if before.get(layer.name, patches.kind(ws, layer)) != patches.kind(ws, layer):
            lines.append(f"{layer.name}'s patches changed: {before[layer.name]} -> {patches.kind(ws, layer)}")
    shown = {m for layer in previous.layers for m in layer.methods} | set(previous.methods)
    wanted = [*config.compute.methods, *(m for methods in config.layers.methods.values() for m in methods)]
    added_methods = [m for m in dict.fromkeys(wanted) if m not in shown]
    if added_methods:
        lines.append(f"new methods: {', '.join(added_methods)}")
    return lines


def _plans(ws: Workspace) -> list[str]:
    """What each stage would compute for the workspace, as lines."""
    lines: list[str] = []
    state, pending = State(), set()
    for stage in STAGES:
        waiting = [name for name in stage.needs if name in pending]
        if waiting:
            pending.add(stage.name)
            if stage.title:
                lines.append(f"{stage.name}: to compute once the {' and '.join(waiting)} are")
            continue
        work = stage.plan(ws, state)
        line = stage.describe(ws, state, work)
        if line:
            lines.append(line)
        if work:
            pending.add(stage.name)
        else:
            state = stage.derive(ws, state)
    return lines


def status(config: Config, cache_dir: str | Path) -> list[str]:
    """What a build would compute, and why, without computing it."""
    cache = Cache(cache_dir)
    lines = []
    with Workspace.open(config, cache, "cpu", quiet=True, encode=False) as ws:
        try:
            previous = manifest_store.read(cache, config.path)
        except ValueError as error:
            previous = None
            lines.append(f"the record of the last computation cannot be used: {error}")
        if previous is None and not lines:
            lines.append("nothing computed yet for this config")
        elif previous is not None:
            lines += _changes(ws, previous)
        lines += _plans(ws)
        if config.compare is not None:
            known = {layer.name: layer.mapped for layer in previous.layers} if previous is not None else {}
            neurons = {**config.layers.neurons, **{layer.listed: tuple(known[layer.name]) for layer in ws.layers
                                                   if layer.name in known}}
            with Workspace.open(compare.other_config(config, neurons), cache, "cpu", quiet=True,
                                encode=False) as other:
                plans = _plans(other) or ["nothing to compute"]
                if config.compare.match == "activations":
                    plans.append("(the neurons matched by their activations may add some: the plans above map "
                                 "this atlas's own neurons)")
                lines += [f"compare with {config.compare.label}: {line}" for line in plans]
        lines += [f"note: {note}" for note in ws.notes] + [f"warning: {warning}" for warning in cache.warnings]
        if ws.skipped:
            lines.append(skip_summary(list(ws.skipped)).replace("skipped", "will skip", 1))
    return lines
