"""The workspace: what every stage of a build reads, made once.

The config, the cache, the device and the process group, the model with its
preprocessing and configured layers, the featured and probe views, and the
key function of the cache.  ``build``, ``status``, ``compute`` under torchrun
and the bench scripts all start from :meth:`Workspace.open`.  Frozen: stages
add nothing to it; what they decide travels in ``stage.State``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..engine.geometry import Geometry
from ..engine.passes import crops_are_exact
from ..engine.smooth import SmoothGrad
from ..errors import SitegenError
from ..images import Item, encode
from ..model.layers import Layer, resolve_layers
from ..model.registry import LoadedModel, load_configured_model, load_model
from ..store.cache import Cache, make_key
from . import loading
from .distributed import Group


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


def _check(config: Config, cache: Cache, keep: bool) -> tuple:
    """The images, the model and its layers, every problem with them found before one is reported (and
    before the image checks are cached, with ``keep``)."""
    problems: list[str] = []
    notes: list[str] = []
    featured, probe, skipped, checks = loading.collect_items(config, cache, problems, notes)
    model = layers = None
    try:
        model = load_configured_model(config)
    except SitegenError as error:
        problems.append(str(error))
        if config.model.weights != "none":  # the layers can still be checked on the architecture
            with contextlib.suppress(SitegenError):
                model = load_configured_model(replace(config, model=replace(config.model, weights="none")))
    if model is not None:
        try:
            layers = resolve_layers(config, model)
        except SitegenError as error:
            problems.append(str(error))
    if config.compare is not None:  # the other checkpoint too, before anything is computed
        try:
            load_model(config.model.name, config.compare_weights_path(), config.compute.seed)
        except SitegenError as error:
            problems.append(f"compare.weights: {error}")
    if problems:
        raise SitegenError(problems[0] if len(problems) == 1 else
                           f"{len(problems)} problems with {config.path}:\n" + "\n".join(problems))
    if keep:
        loading.keep_checks(cache, checks)
    return featured, probe, skipped, notes, model, layers


@dataclass(frozen=True)
class Workspace:
    config: Config
    cache: Cache
    device: torch.device
    group: Group
    model: LoadedModel
    layers: tuple[Layer, ...]  # lowest first
    modules: Mapping[str, nn.Module]  # dotted path -> module, every module of the model
    featured: tuple[Item, ...]
    probe: tuple[Item, ...]
    skipped: tuple[tuple[str, str], ...]  # files left out: (name, reason)
    quiet: bool
    log: Callable[[str], None]
    encoder: ThreadPoolExecutor | None = None  # pictures encode on it while a build runs
    notes: tuple[str, ...] = ()  # image patterns cut short
    tally: Counter = field(default_factory=Counter)  # what was computed, by kind
    _exact: dict[str, bool] = field(default_factory=dict)  # layer path -> whether its crops are exact
    # what a stage made once and reads again for its next pieces of work, by name: one value per name
    _kept: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @staticmethod
    @contextlib.contextmanager
    def open(config: Config, cache: Cache, device: str | None = None, *, quiet: bool = False,
             log: Callable[[str], None] = print, encode: bool = True) -> Iterator[Workspace]:
        """Join the process group, check the images, load the model and resolve the layers."""
        chosen = pick_device(device or config.compute.device)
        group = Group(chosen)
        try:
            chosen = group.device(chosen)
            featured, probe, skipped, notes, model, layers = _check(config, cache, keep=encode and group.leader)
            model.module.to(chosen)
            with contextlib.ExitStack() as stack:
                encoder = stack.enter_context(ThreadPoolExecutor(os.cpu_count() or 1)) if encode else None
                yield Workspace(config, cache, chosen, group, model, layers, dict(model.module.named_modules()),
                                tuple(featured), tuple(probe), tuple(skipped), quiet or not group.leader, log,
                                encoder, tuple(notes))
        finally:
            group.close()

    # -- keys ------------------------------------------------------------------
    def key(self, kind: str, *parts: Any) -> str:
        """The key of a result of this model and preprocessing, made from ``parts``."""
        return make_key(kind, self.model.fingerprint, self.model.preprocess.as_dict(), *parts)

    @property
    def probe_hash(self) -> str:
        """A short hash of the probe set's views, in order."""
        text = "".join(f"{item.digest}{item.view.spec}" for item in self.probe)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def probe_set_hash(self) -> str:
        """The probe set's key as the manifest records it: its views and, in a labelled probe set, their
        classes.  Cache keys use :attr:`probe_hash`: nothing cached depends on the labels, so editing
        them recomputes nothing (the classes are counted when the manifest is recorded)."""
        if not any(item.label for item in self.probe):
            return self.probe_hash
        text = self.probe_hash + "".join(f"\0{item.label}" for item in self.probe)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def smoothgrad(self) -> SmoothGrad:
        s = self.config.smoothgrad
        return SmoothGrad(s.samples, s.noise, s.seed)

    # -- layers ----------------------------------------------------------------
    def crop_args(self, layer: Layer, image: torch.Tensor) -> tuple[Geometry | None, int]:
        """Receptive-field crops for this layer (its geometry and width), once checked exact on ``image``;
        (None, width) where they are not."""
        if layer.path not in self._exact:
            self._exact[layer.path] = crops_are_exact(self.model.module, image, layer.path,
                                                      self.modules[layer.path], layer.geometry)
        return (layer.geometry if self._exact[layer.path] else None), layer.width

    def kept(self, name: str, about: Any, make: Callable[[], Any]) -> Any:
        """What ``make`` makes, kept under ``name`` while ``about`` stays the same (the randomization check's
        re-initialised model for its layer's next featured image, say): one value per name at a time."""
        if name not in self._kept or self._kept[name][0] != about:
            self._kept[name] = (about, make())
        return self._kept[name][1]

    # -- pixels ------------------------------------------------------------------
    def pixels(self, item: Item) -> np.ndarray:
        return loading.pixels(item, self.model.preprocess)

    def tensor(self, pixels: list[np.ndarray]) -> torch.Tensor:
        """[H, W, 3] uint8 arrays -> the model's input batch on the model's device."""
        return self.normalise(torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return loading.normalise(pixels, self.model.preprocess, self.device)

    def loader(self, items: list[Item], groups: list[int] | None = None) -> torch.utils.data.DataLoader:
        return loading.loader(items, self.model.preprocess, self.config.compute.batch_size, self.device, groups)

    # -- results -------------------------------------------------------------------
    def write(self, kind: str, key: str, members: dict[str, Any], add: bool = False) -> None:
        """Write (or, with ``add``, add to) a cache entry; under torchrun rank 0 writes at the stage's end."""
        self.group.write(self.cache, kind, key, members, add=add)

    def count(self, kind: str, n: int = 1) -> None:
        self.tally[kind] += n

    def encode_many(self, jobs: dict) -> dict:
        """``{key: (pixels, encoding)}`` -> ``{key: bytes}``, on the thread pool while a build runs
        (Pillow's encoders release the GIL, so pictures encode on every core)."""
        keys = list(jobs)
        mapper = map if self.encoder is None else self.encoder.map
        return dict(zip(keys, mapper(lambda key: encode(*jobs[key]), keys)))
