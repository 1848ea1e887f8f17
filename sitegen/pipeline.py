"""Joins compute and cache: decides what is missing, computes it with progress
bars, and records the manifest the site is rendered from.

Cache entries (DESIGN §3; every key also holds the compute version):

- ``acts``    per image view and layer: each neuron's activation and position;
- ``preds``   per featured image: the classifier's top predictions;
- ``photo``   per featured image: the pixels the model sees, as JPEG;
- ``vis``     per featured image, layer and method: every neuron's picture;
- ``patch``   per probe view and layer: image crops and guided patches of the
              neurons whose top-k holds that view.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__
from .cache import Cache, make_key, manifest_name
from .distributed import Group
from .compute import RunningTopK, activations, crops_are_exact, gradients, pictures, predictions
from .config import Config
from .errors import SitegenError
from .geometry import Geometry, receptive_fields
from .images import (ENCODINGS, GRADIENT_STEP, MAX_PIXELS, Item, View, cut, encode, expand, fit, load_rgb, make_items,
                     probe_views, problem, slug, view_pixels)
from .models import LoadedModel, describe_layers, load_model
from .optimization import Recipe, excitation, optimize


def pick_device(choice: str) -> torch.device:
    """The device to compute on.  On a GPU, TF32 is turned off: guided backprop's sign tests amplify
    its rounding to differences of about 10 % of a picture (bench/visualize.py), far above 1e-4."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise SitegenError("compute.device is 'cuda' but no CUDA device is available")
    device = torch.device("cuda" if choice == "auto" and torch.cuda.is_available() else
                          "cpu" if choice == "auto" else choice)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


try:
    _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc: its allocator does not need this
    _MALLOC_TRIM = None


def return_freed_memory() -> None:
    """Hand the memory freed by the last batch back to the system.  Once large tensors have been
    freed, glibc's malloc serves them from its heap instead of mmap, and that heap fragments: without
    this, mining's resident memory grows with the number of batches (bench/mining.py: 1.3x at 4,000
    probe images against 1,000), not with what it holds."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


PATCH_SIDE = 128  # patches larger than this are stored shrunk to it (the grid shows them at about 100 px)
WHOLE_SIDE = 160  # whole-image pictures are stored at the size the neuron page shows them
# how pictures are stored, part of their cache keys: a change of encoding stores them anew
STORAGE = repr([(kind, fmt, options) for kind, (fmt, options, _) in ENCODINGS.items()]) + f" step {GRADIENT_STEP}"


@dataclass
class Layer:
    entry: str  # as written in layers.use
    name: str  # alias or dotted path: the name in page URLs
    path: str  # dotted module path
    shape: tuple[int, ...]
    geometry: Geometry
    lower: "Layer | None" = None  # the configured layer below, whose neurons are this one's children
    units: list[int] = field(default_factory=list)  # the neurons mapped (all, unless the config picks some)
    crops: bool | None = None  # whether receptive-field crops are exact for this layer (None: not checked)

    @property
    def neurons(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[2] if len(self.shape) == 3 else 1


def load_configured_model(config: Config) -> LoadedModel:
    loaded = load_model(config.model.name, config.weights_path(), config.compute.seed)
    m = config.model
    overrides = {name: value for name, value in
                 (("resize", m.resize), ("crop", m.crop), ("mean", m.mean), ("std", m.std)) if value is not None}
    if overrides:
        loaded.preprocess = replace(loaded.preprocess, **overrides)
    if m.license:
        loaded.weights_license = m.license
    return loaded


def resolve_layers(config: Config, loaded: LoadedModel) -> list[Layer]:
    infos = {info.path: info for info in describe_layers(loaded)}
    modules = dict(loaded.module.named_modules())
    chosen: list[tuple[str, str, str]] = []
    problems = []
    for entry in config.layers:
        try:
            name, path = loaded.resolve_layer(entry)
        except SitegenError as error:
            problems.append(f"layers.use: {error}")
            continue
        info = infos[path]
        if info.calls != 1:
            problems.append(f"layers.use: {entry!r} ({path}) is called {info.calls} times in one forward; "
                            f"choose a module that runs once, such as its parent block")
        elif len(info.shape) not in (1, 3):
            problems.append(f"layers.use: {entry!r} ({path}) has output shape {info.shape}; a layer must give "
                            f"[C, H, W] or [C] per image")
        if any(path == p for _, _, p in chosen):
            problems.append(f"layers.use: {entry!r} is {path}, which is already listed")
        chosen.append((entry, name, path))
    if problems:
        raise SitegenError("\n".join(problems))
    size = loaded.preprocess.crop
    geometry = receptive_fields(loaded.module, {path: modules[path] for _, _, path in chosen}, (size, size))
    layers = [Layer(entry, name, path, infos[path].shape, geometry[path]) for entry, name, path in chosen]
    for below, above in zip(layers, layers[1:]):
        above.lower = below
    return layers


def collect_items(config: Config, cache: Cache | None = None) -> tuple[list[Item], list[Item], list]:
    """Featured and probe views, and the files left out as (name, reason).

    Every file is decoded once to see that it can be used; the answer is cached by its bytes."""
    def usable(path: Path, digest: str) -> str | None:
        key = make_key("image", digest, MAX_PIXELS)
        if cache is not None:
            entry = cache.get("image", key)
            if entry is not None:
                return entry["problem.txt"].decode() or None
        reason = problem(path)
        if cache is not None:
            cache.put("image", key, {"problem.txt": (reason or "").encode()})
        return reason

    featured, skipped = make_items(expand(config.images.featured, config.root, "images.featured"), config.root,
                                   [View()], usable)
    probe, skipped_probe = make_items(expand(config.images.probe, config.root, "images.probe"), config.root,
                                      probe_views(config.images.probe_flip, config.images.probe_zooms), usable)
    skipped += [entry for entry in skipped_probe if entry not in skipped]
    if not probe:
        raise SitegenError("images.probe: no readable probe images; top patches need at least one"
                           + "".join(f"\n  - {name}: {reason}" for name, reason in skipped))
    if config.compute.top_k > len(probe):
        raise SitegenError(f"compute.top_k is {config.compute.top_k} but the probe set has only {len(probe)} views")
    return featured, probe, skipped


@dataclass
class TopPatches:
    """Each mapped neuron's top k probe views: [U, k] arrays, best first."""

    units: list[int]
    order: np.ndarray  # probe indices
    values: np.ndarray
    positions: np.ndarray
    stats: list[dict] = field(default_factory=list)  # per neuron: mean, firing, histogram
    levels: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    # percentile -> ([U] probe index, value, position) of the view nearest that percentile

    @classmethod
    def from_running(cls, units: list[int], running: RunningTopK) -> "TopPatches":
        return cls(units, running.rows.T.copy(), running.values.T.copy(), running.positions.T.copy())

    def wanted_levels(self) -> dict[int, dict[int, int]]:
        """probe index -> {neuron shown at a lower level there: its position}."""
        wanted: dict[int, dict[int, int]] = {}
        for rows, _, positions in self.levels.values():
            for neuron, index, position in zip(self.units, rows.tolist(), positions.tolist()):
                wanted.setdefault(index, {})[neuron] = position
        return wanted

    def wanted(self) -> dict[int, dict[int, int]]:
        """probe index -> {neuron whose top k holds it: its position there}."""
        wanted: dict[int, dict[int, int]] = {}
        for neuron, rows, positions in zip(self.units, self.order.tolist(), self.positions.tolist()):
            for index, position in zip(rows, positions):
                wanted.setdefault(index, {})[neuron] = position
        return wanted


class ItemPixels(torch.utils.data.Dataset):
    """Probe or featured views decoded to model-sized pixels, in DataLoader workers where there are many."""

    def __init__(self, items: list[Item], resize: int, crop: int, interpolation: str):
        self.items, self.resize, self.crop, self.interpolation = items, resize, crop, interpolation

    def __len__(self) -> int:
        return len(self.items)

    def pixels(self, index: int) -> np.ndarray:
        item = self.items[index]
        try:
            image = load_rgb(item.path)
        except Exception as error:  # noqa: BLE001 - any unreadable image is reported the same way
            raise SitegenError(f"image {item.name!r} could not be read: {error}") from None
        return view_pixels(image, item.view, self.resize, self.crop, self.interpolation)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.pixels(index)).permute(2, 0, 1)


CHUNK = 256  # probe views per activations entry: a new image computes only its chunk


class Pipeline:
    def __init__(self, config: Config, cache: Cache, device: str | None = None, quiet: bool = False,
                 log: Callable[[str], None] = print):
        self.config = config
        self.cache = cache
        self.device = pick_device(device or config.compute.device)
        self.quiet = quiet
        self.log = log
        self.computed: dict[str, int] = {}
        self._entries: dict[tuple[str, str], dict] = {}
        self.encoder: ThreadPoolExecutor | None = None
        self.group = Group(self.device)
        self.device = self.group.device(self.device)
        self.quiet = quiet or not self.group.leader

    # -- keys ---------------------------------------------------------------
    def _key(self, kind: str, *parts) -> str:
        prep = self.model.preprocess.as_dict()
        return make_key(kind, self.model.fingerprint, prep, *parts)

    def acts_key(self, items: Item | list[Item], layer: Layer) -> str:
        item = items[0] if isinstance(items, list) else items  # one view
        return self._key("acts", layer.path, item.digest, item.view.spec)

    def chunk_key(self, items: list[Item], layer: Layer) -> str:
        return self._key("acts-chunk", layer.path, [(item.digest, item.view.spec) for item in items])

    def preds_key(self, item: Item) -> str:
        return self._key("preds", self.config.site.top_predictions, item.digest, item.view.spec)

    def photo_key(self, item: Item) -> str:
        p = self.model.preprocess
        return make_key("photo", p.resize, p.crop, p.interpolation, item.digest, item.view.spec)

    # One member per neuron: a neuron's result depends on the image, the layer (and the method, or the lower
    # layer), never on which other neurons are mapped, so later neurons are added to the same entry.
    def vis_key(self, item: Item, layer: Layer, method: str) -> str:
        return self._key("vis", layer.path, method, PATCH_SIDE, WHOLE_SIDE, STORAGE, item.digest, item.view.spec)

    def edges_key(self, item: Item, layer: Layer) -> str:
        return self._key("edges", layer.path, layer.lower.path, item.digest, item.view.spec)

    def patch_key(self, item: Item, layer: Layer) -> str:
        return self._key("patch", layer.path, PATCH_SIDE, STORAGE, item.digest, item.view.spec)

    # -- helpers ------------------------------------------------------------
    def pixels(self, item: Item) -> np.ndarray:
        p = self.model.preprocess
        return ItemPixels([item], p.resize, p.crop, p.interpolation).pixels(0)

    def tensor(self, pixels: list[np.ndarray]) -> torch.Tensor:
        """[H, W, 3] uint8 arrays -> the model's input batch on the model's device."""
        return self.normalise(torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2))

    def _progress(self) -> Progress:
        return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), disable=self.quiet, transient=False)

    def _count(self, kind: str, n: int = 1) -> None:
        self.computed[kind] = self.computed.get(kind, 0) + n

    # -- stages -------------------------------------------------------------
    def run(self) -> dict:
        config = self.config
        featured, probe, skipped = collect_items(config, self.cache)
        self.model = load_configured_model(config)
        self.model.module.to(self.device)
        self.layers = resolve_layers(config, self.model)
        self.modules = dict(self.model.module.named_modules())
        try:
            with self._progress() as progress, ThreadPoolExecutor(os.cpu_count() or 1) as self.encoder:
                self.stage_activations(featured, probe, progress)
                self.select_units(featured)
                self.stage_featured(featured, progress)
                tops = self.stage_patches(probe, progress)
                self.stage_optimize(progress)
            counts = self.group.gather_to_all(self.computed)
            self.computed = {kind: sum(c.get(kind, 0) for c in counts) for kind in sorted(set().union(*counts))}
            manifest = self.manifest(featured, probe, tops) if self.group.leader else {}
            if self.group.leader:
                self.cache.write_json(manifest_name(config.path), manifest)
        finally:
            self.group.close()
        for path in self.cache.damaged:
            self.log(f"warning: damaged cache entry {path} was recomputed")
        if skipped and self.group.leader:
            self.log(f"skipped {len(skipped)} image file(s):" + "".join(f"\n  - {n}: {r}" for n, r in skipped))
        self.skipped = skipped
        return manifest

    def status(self) -> list[str]:
        """What a build would compute, and why, without computing it."""
        config = self.config
        featured, probe, skipped = collect_items(config, self.cache)
        self.model = load_configured_model(config)
        self.layers = resolve_layers(config, self.model)
        self.modules = dict(self.model.module.named_modules())
        lines = []
        previous = self.cache.read_json(manifest_name(config.path))
        if previous is None:
            lines.append("nothing computed yet for this config")
        else:
            if previous["model"]["fingerprint"] != self.model.fingerprint:
                lines.append(f"the model changed: {previous['model']['fingerprint']} -> {self.model.fingerprint}")
            old_layers = [layer["name"] for layer in previous["layers"]]
            new = [layer.name for layer in self.layers if layer.name not in old_layers]
            if new:
                lines.append(f"new layers: {', '.join(new)}")
            old_featured = {f["name"] for f in previous["featured"]}
            added = [item.name for item in featured if item.name not in old_featured]
            if added:
                lines.append(f"new featured images: {', '.join(added)}")
            if previous["probe"]["count"] != len(probe):
                lines.append(f"the probe set changed: {previous['probe']['count']} -> {len(probe)} views")
            if previous["top_k"] != config.compute.top_k:
                lines.append(f"top_k changed: {previous['top_k']} -> {config.compute.top_k}")
            added_methods = [m for m in config.compute.methods if m not in previous["methods"]]
            if added_methods:
                lines.append(f"new methods: {', '.join(added_methods)}")
        acts = self.plan_activations(featured, probe)
        lines.append(f"activations: {sum(len(items) for items, _, _ in acts)} of {len(featured) + len(probe)} "
                     f"views to compute")
        if any(key == self.acts_key for _, key, _ in acts):
            lines.append("featured images and top patches: to compute once activations are (the neurons to map "
                         "and the top patches follow from them)")
        else:
            self.select_units(featured)
            work = self.plan_featured(featured)
            lines.append(f"featured images: {sum(len(w[2]) for w in work)} neuron pictures and edge sets to "
                         f"compute in {len(work)} (image, layer) pairs")
            if any(key == self.chunk_key for _, key, _ in acts):
                lines.append("top patches: to compute once the probe activations are")
            else:
                patches = self.plan_patches(probe, self.top_patches(probe))
                lines.append(f"top patches: {sum(len(w[2]) for w in patches)} to compute over "
                             f"{len({w[1] for w in patches})} probe views")
            for layer in self.optimized_layers():
                missing = self._missing("opt", self.opt_key(layer), layer.units, "{}.png")
                lines.append(f"optimized images, {layer.name}: {len(missing)} of {len(layer.units)} to compute")
        if skipped:
            lines.append(f"{len(skipped)} image file(s) will be skipped: "
                         + ", ".join(f"{name} ({reason})" for name, reason in skipped))
        return lines

    def loader(self, items: list[Item], groups: list[int] | None = None) -> torch.utils.data.DataLoader:
        """Batches of ``items``; with ``groups`` (consecutive runs of items, by length) no batch spans two."""
        p = self.model.preprocess
        size = self.config.compute.batch_size
        batches, start = [], 0
        for length in groups or [len(items)]:
            batches += [list(range(first, min(first + size, start + length)))
                        for first in range(start, start + length, size)]
            start += length
        workers = min(4, os.cpu_count() or 1) if len(items) >= 64 else 0
        return torch.utils.data.DataLoader(
            ItemPixels(items, p.resize, p.crop, p.interpolation), batch_sampler=batches,
            num_workers=workers, pin_memory=self.device.type == "cuda", persistent_workers=False)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] on any device -> the model's input on the model's device."""
        p = self.model.preprocess
        x = pixels.to(self.device, non_blocking=True).float().div_(255)
        mean = torch.tensor(p.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(p.std, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def mine_groups(self, groups: list[tuple[list[Item], list[Layer]]], progress: Progress | None = None,
                    task=None) -> Iterator[dict[str, tuple[np.ndarray, np.ndarray]]]:
        """For each group (items, layers) in turn, the activations of its layers on its items,
        ``{path: (values [n, C], positions [n, C])}`` as numpy.  One DataLoader serves all groups,
        so its workers keep decoding across the groups' borders."""
        batches = iter(self.loader([item for items, _ in groups for item in items],
                                   [len(items) for items, _ in groups]))
        for items, layers in groups:
            modules = {layer.path: self.modules[layer.path] for layer in layers}
            parts: dict[str, list] = {layer.path: [] for layer in layers}
            done = 0
            while done < len(items):
                pixels = next(batches)
                # kept on the device until the group ends: no wait for the GPU after each batch
                result = activations(self.model.module, self.normalise(pixels), modules, pixels.shape[0],
                                     on_device=True)
                for path, pair in result.items():
                    parts[path].append(pair)
                return_freed_memory()
                done += pixels.shape[0]
                if progress is not None:
                    progress.advance(task, pixels.shape[0])
            yield {path: tuple(torch.cat(part).cpu().numpy() for part in zip(*pairs))
                   for path, pairs in parts.items()}

    def mine(self, items: list[Item], layers: list[Layer]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The activations of ``layers`` on ``items`` (see :meth:`mine_groups`)."""
        return next(self.mine_groups([(items, layers)]))

    def plan_activations(self, featured: list[Item], probe: list[Item]) -> list:
        """Featured views one entry each; probe views in chunks of CHUNK, so the probe set can be large."""
        work = [([item], self.acts_key) for item in featured]
        work += [(probe[start:start + CHUNK], self.chunk_key) for start in range(0, len(probe), CHUNK)]
        todo = []
        for items, key in work:
            missing = [layer for layer in self.layers if not self.cache.has("acts", key(items, layer))]
            if missing:
                todo.append((items, key, missing))
        return todo

    def stage_activations(self, featured: list[Item], probe: list[Item], progress: Progress) -> None:
        todo = self.group.share(self.plan_activations(featured, probe))
        task = progress.add_task("activations", total=sum(len(items) for items, _, _ in todo))
        results = self.mine_groups([(items, missing) for items, _, missing in todo], progress, task)
        for (items, key, missing), result in zip(todo, results):
            for layer in missing:
                values, positions = result[layer.path]
                if key == self.acts_key:  # one view: [C]
                    values, positions = values[0], positions[0]
                self.group.write(self.cache, "acts", key(items, layer),
                                 {"values.npy": values, "positions.npy": positions})
            self._count("activations", len(items))
        self.group.flush(self.cache)

    def read_acts(self, item: Item, layer: Layer) -> tuple[np.ndarray, np.ndarray]:
        """A featured view's activations and positions, [C] each."""
        entry = self.cache.get("acts", self.acts_key(item, layer))
        if entry is None:  # damaged since it was written: compute again
            values, positions = self.mine([item], [layer])[layer.path]
            entry = {"values.npy": values[0], "positions.npy": positions[0]}
            self.cache.put("acts", self.acts_key(item, layer), entry)
        return entry["values.npy"], entry["positions.npy"]

    def read_chunk(self, items: list[Item], layer: Layer) -> tuple[np.ndarray, np.ndarray]:
        """Probe views' activations and positions, [n, C] each."""
        entry = self.cache.get("acts", self.chunk_key(items, layer))
        if entry is None:  # damaged since it was written: compute again
            values, positions = self.mine(items, [layer])[layer.path]
            entry = {"values.npy": values, "positions.npy": positions}
            self.cache.put("acts", self.chunk_key(items, layer), entry)
        return entry["values.npy"], entry["positions.npy"]

    def select_units(self, featured: list[Item]) -> None:
        """Each layer's neurons to map: all, a list, or the N most active on each featured image."""
        for layer in self.layers:
            choice = self.config.layer_neurons.get(layer.entry, "all")
            if choice == "all":
                layer.units = list(range(layer.neurons))
            elif isinstance(choice, int):
                if not featured:
                    raise SitegenError(f"layers.neurons.{layer.entry} = {choice} picks the most active neurons "
                                       f"of the featured images, but there are none")
                chosen: set[int] = set()
                for item in featured:
                    values, _ = self.read_acts(item, layer)
                    chosen.update(np.argsort(-values, kind="stable")[:choice].tolist())
                layer.units = sorted(chosen)
            else:
                bad = [n for n in choice if n >= layer.neurons]
                if bad:
                    raise SitegenError(f"layers.neurons.{layer.entry}: {bad} out of range; {layer.name} has "
                                       f"{layer.neurons} neurons")
                layer.units = sorted(set(choice))

    def _missing(self, kind: str, key: str, neurons: list[int], member: str) -> list[int]:
        names = self.cache.names(kind, key)
        return [n for n in neurons if member.format(n) not in names]

    def plan_featured(self, featured: list[Item]) -> list:
        """(item, layer, neurons, methods, edges?) for what the featured images still lack."""
        work = []
        for item in featured:
            for layer in self.layers:
                todo = {m: self._missing("vis", self.vis_key(item, layer, m), layer.units, "{}.webp")
                        for m in self.config.compute.methods}
                todo = {m: n for m, n in todo.items() if n}
                edges = (self._missing("edges", self.edges_key(item, layer), layer.units, "{}.npy")
                         if layer.lower is not None else [])
                neurons = sorted(set(edges).union(*todo.values()))
                if neurons:
                    work.append((item, layer, neurons, list(todo), bool(edges)))
        return work

    def stage_featured(self, featured: list[Item], progress: Progress) -> None:
        for item in featured if self.group.leader else []:
            if not self.cache.has("photo", self.photo_key(item)):
                self.cache.put("photo", self.photo_key(item), {"photo.jpg": encode(self.pixels(item), "photo")})
            if self.model.categories and not self.cache.has("preds", self.preds_key(item)):
                probs, indices = predictions(self.model.module, self.tensor([self.pixels(item)]),
                                             k=self.config.site.top_predictions)
                self.cache.put("preds", self.preds_key(item), {"probs.npy": probs[0].numpy(),
                                                                "indices.npy": indices[0].numpy()})
        work = self.group.share(self.plan_featured(featured))
        task = progress.add_task("featured images (neurons)", total=sum(len(w[2]) for w in work))
        for item, layer, neurons, todo, want_edges in work:
            pixels = self.pixels(item)
            x = self.tensor([pixels])[0]
            _, positions = self.read_acts(item, layer)
            zoom = self.zoomable(layer)
            lower = self.modules[layer.lower.path] if want_edges else None
            members: dict[str, dict[str, bytes]] = {m: {} for m in todo}
            weights = {}
            size = self.config.compute.batch_size
            step = size * 8  # several batches per call, so crops of equal size batch together
            for start in range(0, len(neurons), step):
                chunk = neurons[start:start + step]
                result = gradients(self.model.module, x, layer.path, self.modules[layer.path], chunk,
                                   positions[chunk].tolist(), todo, size, *self.crop_args(layer, x), lower=lower)
                if want_edges:
                    weights.update({f"{n}.npy": row for n, row in zip(chunk, result["edges"].cpu().numpy())})
                jobs = {}
                for method in todo:
                    for neuron, picture in zip(chunk, pictures(result[method])):
                        jobs[method, f"{neuron}.webp"] = (fit(picture, WHOLE_SIDE), "gradient")
                        if zoom:  # cut from the whole-size picture: the receptive field keeps every pixel
                            box = self.box(layer, int(positions[neuron]))
                            jobs[method, f"{neuron}-box.webp"] = (fit(cut(picture, box), PATCH_SIDE), "gradient")
                            if method == self.config.compute.methods[0]:  # the photo's crop, kept once
                                jobs[method, f"{neuron}-img.webp"] = (fit(cut(pixels, box), PATCH_SIDE), "crop")
                for (method, name), data in self.encode_many(jobs).items():
                    members[method][name] = data
                progress.advance(task, len(chunk))
            for method in todo:
                self.group.write(self.cache, "vis", self.vis_key(item, layer, method), members[method], add=True)
                self._count("visualizations", sum(name.endswith(".webp") and "-" not in name
                                                  for name in members[method]))
            if want_edges:
                self.group.write(self.cache, "edges", self.edges_key(item, layer), weights, add=True)
                self._count("edges", len(weights))
        self.group.flush(self.cache)

    def encode_many(self, jobs: dict) -> dict:
        """``{key: (pixels, format)}`` -> ``{key: bytes}``, on the thread pool while a build runs
        (Pillow's encoders release the GIL, so pictures encode on every core)."""
        keys = list(jobs)
        mapper = map if self.encoder is None else self.encoder.map
        return dict(zip(keys, mapper(lambda key: encode(*jobs[key]), keys)))

    def zoomable(self, layer: Layer) -> bool:
        """Whether a neuron's receptive field is smaller than the image, so a zoomed view adds to the whole."""
        size = self.model.preprocess.crop
        return not layer.geometry.whole and min(layer.geometry.size) < size

    def top_patches(self, probe: list[Item]) -> dict[str, "TopPatches"]:
        """Each layer's top k probe views per mapped neuron, streamed over the cached chunks."""
        tops = {}
        for layer in self.layers:
            running = RunningTopK(len(layer.units), self.config.compute.top_k)
            for start in self.group.share(list(range(0, len(probe), CHUNK))):  # each rank its own chunks
                values, positions = self.read_chunk(probe[start:start + CHUNK], layer)
                rows = np.arange(start, start + values.shape[0])
                running.update(values[:, layer.units], positions[:, layer.units], rows)
            merged = RunningTopK(len(layer.units), self.config.compute.top_k)
            for shard in self.group.gather_to_all(running):  # exact: the top k of the union
                merged.merge(shard)
            top = tops[layer.name] = TopPatches.from_running(layer.units, merged)
            top.stats = self.activation_stats(layer, probe)
            top.levels = self.levels(layer, probe, top.stats)
        return tops

    def levels(self, layer: Layer, probe: list[Item], stats: list[dict]) -> dict:
        """For each configured percentile, each neuron's probe view nearest that percentile of its
        activations (read off its histogram, so memory does not grow with the probe set); one pass."""
        percentiles = list(self.config.compute.percentiles)
        if not percentiles:
            return {}
        targets = np.zeros((len(percentiles), len(layer.units)))
        for column, stat in enumerate(stats):
            counts = np.asarray(stat["counts"], dtype=np.float64)
            width = (stat["high"] - stat["low"]) / len(counts)
            below = np.concatenate([[0.0], np.cumsum(counts)])
            for row, percentile in enumerate(percentiles):
                wanted = percentile / 100 * counts.sum()
                b = int(np.clip(np.searchsorted(below[1:], wanted), 0, len(counts) - 1))
                inside = (wanted - below[b]) / counts[b] if counts[b] else 0.0
                targets[row, column] = stat["low"] + width * (b + inside)
        shape = targets.shape
        best, rows = np.full(shape, np.inf), np.zeros(shape, dtype=np.int64)
        values, positions = np.zeros(shape), np.zeros(shape, dtype=np.int64)
        columns = np.arange(len(layer.units))
        for start in range(0, len(probe), CHUNK):
            chunk_values, chunk_positions = self.read_chunk(probe[start:start + CHUNK], layer)
            chunk_values, chunk_positions = chunk_values[:, layer.units], chunk_positions[:, layer.units]
            for row in range(len(percentiles)):
                distance = np.abs(chunk_values - targets[row][None, :])
                nearest = distance.argmin(axis=0)  # the first of equals
                better = distance[nearest, columns] < best[row]
                best[row] = np.where(better, distance[nearest, columns], best[row])
                rows[row] = np.where(better, start + nearest, rows[row])
                values[row] = np.where(better, chunk_values[nearest, columns], values[row])
                positions[row] = np.where(better, chunk_positions[nearest, columns], positions[row])
        return {p: (rows[i], values[i], positions[i]) for i, p in enumerate(percentiles)}

    def plan_patches(self, probe: list[Item], tops: dict[str, "TopPatches"]) -> list:
        """(layer, probe index, neurons, positions, patches?, edges?) for what the top patches still lack."""
        work = []
        for layer in self.layers:
            top = tops[layer.name]
            wanted, levels = top.wanted(), top.wanted_levels()
            for index in sorted(set(wanted) | set(levels)):
                where = {**levels.get(index, {}), **wanted.get(index, {})}
                neurons = sorted(where)
                patches = self._missing("patch", self.patch_key(probe[index], layer), neurons, "{}-gb.webp")
                edges = (self._missing("edges", self.edges_key(probe[index], layer), sorted(wanted.get(index, {})),
                                       "{}.npy") if layer.lower is not None else [])
                if patches or edges:
                    todo = sorted(set(patches) | set(edges))
                    work.append((layer, index, todo, [where[n] for n in todo], bool(patches), bool(edges)))
        return work

    def stage_patches(self, probe: list[Item], progress: Progress) -> dict[str, "TopPatches"]:
        tops = self.top_patches(probe)
        work = self.group.share(self.plan_patches(probe, tops))
        task = progress.add_task("top patches (neurons)", total=sum(len(w[2]) for w in work))
        size = self.config.compute.batch_size
        for layer, index, neurons, where, want_patches, want_edges in work:
            item = probe[index]
            pixels = self.pixels(item)
            x = self.tensor([pixels])[0]
            result = gradients(self.model.module, x, layer.path, self.modules[layer.path], neurons, where,
                               ["guided"] if want_patches else [], size, *self.crop_args(layer, x),
                               lower=self.modules[layer.lower.path] if want_edges else None)
            if want_patches:
                jobs = {}
                for offset, guided in enumerate(pictures(result["guided"])):
                    neuron, box = neurons[offset], self.box(layer, int(where[offset]))
                    jobs[f"{neuron}-img.webp"] = (fit(cut(pixels, box), PATCH_SIDE), "crop")
                    jobs[f"{neuron}-gb.webp"] = (fit(cut(guided, box), PATCH_SIDE), "gradient")
                members = self.encode_many(jobs)
                self.group.write(self.cache, "patch", self.patch_key(item, layer), members, add=True)
                self._count("patches", len(neurons))
            if want_edges:
                self.group.write(self.cache, "edges", self.edges_key(item, layer),
                                 {f"{n}.npy": row for n, row in zip(neurons, result["edges"].cpu().numpy())},
                                 add=True)
                self._count("edges", len(neurons))
            progress.advance(task, len(neurons))
        self.group.flush(self.cache)
        return tops

    # -- optimization ---------------------------------------------------------
    def recipe(self) -> Recipe:
        o = self.config.optimize
        return Recipe(steps=o.steps, size=o.size, lr=o.lr, jitter=o.jitter, scale=o.scale, rotate=o.rotate)

    def optimized_layers(self) -> list[Layer]:
        if self.config.optimize is None:
            return []
        return [layer for layer in self.layers if layer.entry in self.config.optimize.layers]

    def opt_key(self, layer: Layer) -> str:
        return self._key("opt", layer.path, self.recipe().as_dict(), self.config.compute.seed)

    def stage_optimize(self, progress: Progress) -> None:
        """An image optimized from noise for every mapped neuron of the chosen layers, a batch at a time."""
        size = self.config.compute.batch_size
        work = []
        for layer in self.optimized_layers():
            missing = self._missing("opt", self.opt_key(layer), layer.units, "{}.png")
            work += [(layer, missing[start:start + size]) for start in range(0, len(missing), size)]
        work = self.group.share(work)
        task = progress.add_task("optimized images (neurons)", total=sum(len(w[1]) for w in work))
        p = self.model.preprocess
        for layer, neurons in work:
            images = optimize(self.model.module, layer.path, self.modules[layer.path], neurons, p.mean, p.std,
                              self.recipe(), self.config.compute.seed)
            pixels = images.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            members = self.encode_many({f"{n}.png": (picture, "exact") for n, picture in zip(neurons, pixels)})
            self.group.write(self.cache, "opt", self.opt_key(layer), members, add=True)
            self._count("optimized images", len(neurons))
            progress.advance(task, len(neurons))
        self.group.flush(self.cache)

    def optimize_check(self, layer: Layer, probe: list[Item], probe_hash: str) -> dict:
        """How each neuron's optimized image (as stored, 8-bit) excites it: its own objective, the most any
        other mapped neuron's image excites it, and the most any probe view does (at the model's input)."""
        key = self._key("optcheck", self.opt_key(layer), probe_hash, layer.units)
        entry = self.cache.get("optcheck", key)
        if entry is None:
            stored = self.entry("opt", self.opt_key(layer))
            images = torch.stack([torch.from_numpy(np.array(Image.open(io.BytesIO(stored[f"{n}.png"])).convert(
                "RGB"))).permute(2, 0, 1) for n in layer.units]).float().div(255)
            p, module = self.model.preprocess, self.modules[layer.path]
            units = torch.as_tensor(layer.units)
            scores = excitation(self.model.module, layer.path, module, images, p.mean, p.std)[:, units]
            own = scores.diagonal().clone()
            others = scores.clone()
            others.fill_diagonal_(-torch.inf)
            best_probe = torch.full((len(layer.units),), -torch.inf)
            for pixels in self.loader(probe):
                batch = excitation(self.model.module, layer.path, module, pixels.float().div(255), p.mean, p.std)
                best_probe = torch.maximum(best_probe, batch[:, units].amax(dim=0))
            entry = {"check.npy": torch.stack([own, others.amax(dim=0), best_probe], dim=1).numpy()}
            self.cache.put("optcheck", key, entry)
        rows = entry["check.npy"]
        # with one mapped neuron there is no other image: None, not -inf (manifest.json stays valid JSON)
        per_neuron = {str(n): {"own": float(a), "other": float(b) if np.isfinite(b) else None, "probe": float(c)}
                      for n, (a, b, c) in zip(layer.units, rows.tolist())}
        count = max(1, len(rows))
        return {"entry": self.opt_key(layer), "recipe": self.recipe().as_dict(), "seed": self.config.compute.seed,
                "beats_probe": float((rows[:, 0] > rows[:, 2]).sum() / count),
                "specific": float((rows[:, 0] > rows[:, 1]).sum() / count) if len(rows) > 1 else None,
                "neurons": per_neuron}

    def crop_args(self, layer: Layer, image: torch.Tensor) -> tuple[Geometry | None, int]:
        """Receptive-field crops for this layer, once checked exact on ``image``."""
        if layer.crops is None:
            layer.crops = crops_are_exact(self.model.module, image, layer.path, self.modules[layer.path],
                                          layer.geometry)
        return (layer.geometry if layer.crops else None), layer.width

    def box(self, layer: Layer, position: int) -> tuple[int, int, int, int]:
        size = self.model.preprocess.crop
        i, j = divmod(position, layer.width)
        return layer.geometry.box(i, j, size, size)

    # -- manifest -----------------------------------------------------------
    def children(self, weights: np.ndarray, lower: Layer) -> list[list]:
        """The strongest positive children among the lower layer's mapped neurons, as [[j, w], ...]."""
        units = np.asarray(lower.units)
        picked = units[np.argsort(-weights[units], kind="stable")[:self.config.compute.children]]
        return [[int(j), float(weights[j])] for j in picked if weights[j] > 0]

    def edge_row(self, item: Item, layer: Layer, neuron: int) -> np.ndarray:
        entry = self.entry("edges", self.edges_key(item, layer))
        if f"{neuron}.npy" not in entry:
            raise SitegenError(f"cache entry edges/{self.edges_key(item, layer)} lacks neuron {neuron}; "
                               f"run `sitegen compute` again")
        return entry[f"{neuron}.npy"]

    def entry(self, kind: str, key: str) -> dict:
        """A cache entry read once per manifest; a damaged one is removed, and the next build redoes it."""
        if (kind, key) not in self._entries:
            entry = self.cache.get(kind, key)
            if entry is None:
                raise SitegenError(f"cache entry {kind}/{key} was damaged and has been removed; "
                                   f"run `sitegen compute` again to recompute it")
            self._entries[(kind, key)] = entry
        return self._entries[(kind, key)]

    def specificity(self, item: Item, layer: Layer, side: int = 56) -> dict[int, float]:
        """How much each neuron's guided picture on an image differs from the other neurons' there:
        1 minus its mean cosine similarity to them (pictures shrunk to ``side`` px; zero is grey).
        Guided backprop is known to look alike across neurons; this says how much, per neuron."""
        if "guided" not in self.config.compute.methods or len(layer.units) < 2:
            return {}
        key = self._key("spec", layer.path, side, WHOLE_SIDE, STORAGE, item.digest, item.view.spec, layer.units)
        entry = self.cache.get("spec", key)
        if entry is None:
            pictures_ = self.entry("vis", self.vis_key(item, layer, "guided"))
            rows = []
            for neuron in layer.units:
                picture = Image.open(io.BytesIO(pictures_[f"{neuron}.webp"])).convert("RGB")
                small = np.asarray(picture.resize((side, side), Image.BOX), dtype=np.float32) - 127.5
                rows.append(small.reshape(-1))
            vectors = np.stack(rows)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-6)
            similar = vectors @ vectors.T
            mean_other = (similar.sum(axis=1) - np.diag(similar)) / (len(rows) - 1)
            entry = {"specificity.npy": (1.0 - mean_other).astype(np.float32)}
            self.cache.put("spec", key, entry)  # only the leader builds the manifest
        return {n: float(v) for n, v in zip(layer.units, entry["specificity.npy"])}

    def activation_stats(self, layer: Layer, probe: list[Item], bins: int = 24) -> list[dict]:
        """Per mapped neuron, over the probe set: mean, the fraction of views where it fires (> 0), and a
        histogram; two passes over the cached chunks, so memory does not grow with the probe set."""
        units = layer.units
        low, high = np.full(len(units), np.inf), np.full(len(units), -np.inf)
        total, firing = np.zeros(len(units)), np.zeros(len(units))
        chunks = range(0, len(probe), CHUNK)
        for start in chunks:
            values = self.read_chunk(probe[start:start + CHUNK], layer)[0][:, units].astype(np.float64)
            low, high = np.minimum(low, values.min(0)), np.maximum(high, values.max(0))
            total += values.sum(0)
            firing += (values > 0).sum(0)
        width = np.where(high > low, (high - low) / bins, 1.0)
        counts = np.zeros((len(units), bins), dtype=np.int64)
        for start in chunks:
            values = self.read_chunk(probe[start:start + CHUNK], layer)[0][:, units].astype(np.float64)
            which = np.clip(((values - low) / width).astype(np.int64), 0, bins - 1)
            for column in range(len(units)):
                counts[column] += np.bincount(which[:, column], minlength=bins)
        return [{"mean": float(total[c] / len(probe)), "firing": float(firing[c] / len(probe)),
                 "low": float(low[c]), "high": float(high[c]), "counts": counts[c].tolist()}
                for c in range(len(units))]

    def dataset_children(self, layer: Layer, neuron: int, order: list[int], probe: list[Item]) -> list[list]:
        """Mean weight over the neuron's top-patch images (``order``), and on how many of them each was
        among the strongest children: [[j, mean w, count], ...]."""
        weights = np.stack([self.edge_row(probe[index], layer, neuron) for index in order])
        counts = np.zeros(weights.shape[1], dtype=int)
        for row in weights:
            counts[[j for j, _ in self.children(row, layer.lower)]] += 1
        return [[j, w, int(counts[j])] for j, w in self.children(weights.mean(axis=0), layer.lower)]

    def manifest(self, featured: list[Item], probe: list[Item], tops: dict[str, "TopPatches"]) -> dict:
        config, model = self.config, self.model
        categories = model.categories or []
        featured_slugs = _unique_slugs([item.name for item in featured])
        featured_entries = []
        for item, item_slug in zip(featured, featured_slugs):
            preds = []
            entry = self.entry("preds", self.preds_key(item)) if categories else None
            if entry is not None:
                for prob, index in zip(entry["probs.npy"].tolist(), entry["indices.npy"].tolist()):
                    preds.append({"class": int(index), "label": categories[int(index)], "prob": float(prob)})
            featured_entries.append({
                "slug": item_slug, "name": item.name, "id": item.id,
                "photo": self.photo_key(item), "predictions": preds,
                "acts": {layer.name: self.acts_key(item, layer) for layer in self.layers},
                "vis": {layer.name: {m: self.vis_key(item, layer, m) for m in config.compute.methods}
                        for layer in self.layers},
                "specificity": {layer.name: self.specificity(item, layer) for layer in self.layers},
            })
        probe_hash = hashlib.sha256("".join(f"{i.digest}{i.view.spec}" for i in probe).encode()).hexdigest()[:16]
        optimized = {layer.name: self.optimize_check(layer, probe, probe_hash) for layer in self.optimized_layers()}
        layers = []
        for layer in self.layers:
            top = tops[layer.name]
            neurons = []
            for row_index, neuron in enumerate(layer.units):
                patches = []
                for rank, index in enumerate(top.order[row_index].tolist(), start=1):
                    patches.append({"rank": rank, "item": index, "value": float(top.values[row_index, rank - 1]),
                                    "box": list(self.box(layer, int(top.positions[row_index, rank - 1]))),
                                    "entry": self.patch_key(probe[index], layer)})
                children = {}
                if layer.lower is not None:
                    children = {s: self.children(self.edge_row(item, layer, neuron), layer.lower)
                                for item, s in zip(featured, featured_slugs)}
                    children["dataset"] = self.dataset_children(layer, neuron, top.order[row_index].tolist(), probe)
                levels = [{"percentile": p, "item": int(rows[row_index]), "value": float(values[row_index]),
                           "box": list(self.box(layer, int(positions[row_index]))),
                           "entry": self.patch_key(probe[int(rows[row_index])], layer)}
                          for p, (rows, values, positions) in top.levels.items()]
                neurons.append({"id": neuron, "top": patches, "children": children, "stats": top.stats[row_index],
                                "levels": levels})
            layers.append({"name": layer.name, "path": layer.path, "shape": list(layer.shape),
                           "units": layer.units, "selection": self.describe_selection(layer),
                           "lower": layer.lower.name if layer.lower is not None else None,
                           "neurons": neurons, "geometry": layer.geometry.as_dict(), "zoom": self.zoomable(layer),
                           "rf_size": list(layer.geometry.size) if not layer.geometry.whole else None,
                           "optimize": optimized.get(layer.name)})
        return {
            "sitegen_version": __version__,
            "title": config.title,
            "config": str(config.path),
            "model": {"name": model.name, "weights": model.weights, "fingerprint": model.fingerprint,
                      "license": model.weights_license, "preprocess": model.preprocess.as_dict(),
                      "preprocess_text": model.preprocess.describe(),
                      "categories": categories},
            "methods": list(config.compute.methods),
            "top_k": config.compute.top_k,
            "layers": layers,
            "featured": featured_entries,
            "probe": {"count": len(probe), "files": len({i.digest for i in probe}), "hash": probe_hash,
                      "items": [{"name": i.name, "view": i.view.describe()} for i in probe]},
        }

    def describe_selection(self, layer: Layer) -> str:
        choice = self.config.layer_neurons.get(layer.entry, "all")
        if choice == "all":
            return ""
        if isinstance(choice, int):
            what = ("predicted classes" if len(layer.shape) == 1 and self.model.categories
                    and layer.neurons == len(self.model.categories) else "most active neurons")
            return f"the top {choice} {what} of each featured image"
        return "the neurons chosen in the config"


def _unique_slugs(names: Iterable[str]) -> list[str]:
    taken: set[str] = set()
    result = []
    for name in names:
        base = candidate = slug(name)
        number = 1
        while candidate in taken:
            number += 1
            candidate = f"{base}-{number}"
        taken.add(candidate)
        result.append(candidate)
    return result


def compute(config: Config, cache_dir: str | Path, device: str | None = None, quiet: bool = False,
            log: Callable[[str], None] = print) -> tuple[dict, dict[str, int]]:
    """Compute whatever the cache lacks for ``config``; return (manifest, what was computed)."""
    pipeline = Pipeline(config, Cache(cache_dir), device, quiet, log)
    manifest = pipeline.run()
    return manifest, pipeline.computed
