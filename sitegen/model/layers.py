"""Layers: addressed by alias or dotted module path, described by their output shape and geometry."""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..engine.capture import inference_state, model_device
from ..engine.geometry import Geometry, receptive_fields
from ..errors import SitegenError
from ..methods import MAP
from . import timm_models

if TYPE_CHECKING:
    from ..config import Config
    from .registry import LoadedModel

ALEXNET_ALIASES = {
    "conv1": "features.1", "conv2": "features.4", "conv3": "features.7", "conv4": "features.9",
    "conv5": "features.11", "fc6": "classifier.2", "fc7": "classifier.5", "fc8": "classifier.6",
}


def aliases_for(module: nn.Module) -> dict[str, str]:
    """Friendly layer names of the known architectures."""
    kind = type(module).__name__
    if kind == "AlexNet":
        return dict(ALEXNET_ALIASES)
    if any(c.__name__ == "EfficientNet" for c in type(module).__mro__) and hasattr(module, "_blocks"):
        blocks: nn.ModuleList = module._blocks  # type: ignore[assignment]  # an attribute of nn.Module's
        aliases = {f"block{i}": f"_blocks.{i}" for i in range(len(blocks))}
        aliases["logits"] = "_fc"
        return aliases
    if hasattr(module, "feature_info") and hasattr(module, "pretrained_cfg"):  # a timm model
        return timm_models.aliases(module)
    return {}


def resolve_layer(loaded: LoadedModel, layer: str) -> tuple[str, str]:
    """Return (display name, dotted module path) for an alias or a dotted path."""
    modules = dict(loaded.module.named_modules())
    if layer in loaded.aliases:
        return layer, loaded.aliases[layer]
    if layer in modules and layer != "":
        alias = next((a for a, p in loaded.aliases.items() if p == layer), None)
        return (alias or layer), layer
    names = list(loaded.aliases) + [n for n in modules if n]
    close = difflib.get_close_matches(layer, names, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    top = [n for n in modules if n and "." not in n]
    listed = ", ".join(list(loaded.aliases) + top)
    raise SitegenError(
        f"unknown layer {layer!r} for model {loaded.name!r}.{hint} Valid names include {listed}, and every "
        f"dotted path below them: `sitegen layers {loaded.name}` lists all {len(names)} with their shapes.")


@dataclass(frozen=True)
class LayerInfo:
    path: str
    alias: str | None
    kind: str
    shape: tuple[int, ...]  # output shape without the batch dimension
    calls: int
    order: int | None = None  # when its first output comes in one forward pass (0 first); None: never called


def describe_layers(loaded: LoadedModel) -> list[LayerInfo]:
    """Every module of the model with its output shape for one input image."""
    model = loaded.module
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    order: dict[str, int] = {}
    handles = []

    def make_hook(path: str):
        def hook(_module, _inputs, output):
            calls[path] = calls.get(path, 0) + 1
            order.setdefault(path, len(order))
            if isinstance(output, torch.Tensor) and path not in shapes:
                shapes[path] = tuple(output.shape[1:])
        return hook

    try:
        for path, module in model.named_modules():
            if path:
                handles.append(module.register_forward_hook(make_hook(path)))
        size = loaded.preprocess.crop
        with inference_state(model), torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    by_path = {p: a for a, p in loaded.aliases.items()}
    return [LayerInfo(path, by_path.get(path), type(module).__name__, shapes.get(path, ()), calls.get(path, 0),
                      order.get(path)) for path, module in model.named_modules() if path]


@dataclass(frozen=True)
class Layer:
    """A configured layer of the model."""

    listed: str  # as written in layers.use
    name: str  # alias or dotted path: the name in page URLs
    path: str  # dotted module path
    shape: tuple[int, ...]  # output per image: [C, H, W] or [C]
    geometry: Geometry
    lower: Layer | None = None  # the configured layer below, whose neurons are this one's children

    @property
    def count(self) -> int:
        """Neurons of the layer (channels or units), mapped or not."""
        return self.shape[0]

    @property
    def width(self) -> int:
        """Positions per row of its map (1 for a flat layer)."""
        return self.shape[2] if len(self.shape) == 3 else 1


def resolve_layers(config: Config, loaded: LoadedModel) -> tuple[Layer, ...]:
    """The layers of ``layers.use``, lowest first, each knowing the one below; every problem at once."""
    infos = {info.path: info for info in describe_layers(loaded)}
    modules = dict(loaded.module.named_modules())
    chosen: list[tuple[str, str, str]] = []
    problems = []
    for listed in config.layers.use:
        try:
            name, path = resolve_layer(loaded, listed)
        except SitegenError as error:
            problems.append(f"layers.use: {error}")
            continue
        info = infos[path]
        if info.calls != 1:
            problems.append(f"layers.use: {listed!r} ({path}) is called {info.calls} times in one forward; "
                            f"choose a module that runs once, such as its parent block")
        elif len(info.shape) not in (1, 3):
            problems.append(f"layers.use: {listed!r} ({path}) has output shape {info.shape}; a layer must give "
                            f"[C, H, W] or [C] per image")
        if any(path == p for _, _, p in chosen):
            problems.append(f"layers.use: {listed!r} is {path}, which is already listed")
        chosen.append((listed, name, path))
    problems += _order_problems(chosen, infos) + _neuron_problems(config, chosen, infos)
    if problems:
        raise SitegenError("\n".join(problems))
    size = loaded.preprocess.crop
    geometry = receptive_fields(loaded.module, {path: modules[path] for _, _, path in chosen}, (size, size))
    layers: list[Layer] = []
    for listed, name, path in chosen:
        layers.append(Layer(listed, name, path, infos[path].shape, geometry[path], layers[-1] if layers else None))
    return tuple(layers)


def _order_problems(chosen: list[tuple[str, str, str]], infos: dict[str, LayerInfo]) -> list[str]:
    """Layers must be listed lowest first (in the order the model computes them): each one's children are
    in the one listed before it."""
    called = [entry for entry in chosen if infos[entry[2]].order is not None]
    ordered = sorted(called, key=lambda entry: infos[entry[2]].order or 0)
    if called == ordered:
        return []
    return [f"layers.use: {', '.join(listed for listed, _, _ in called)} are not listed lowest first (in the "
            f"order the model computes them); list them as [{', '.join(repr(e[0]) for e in ordered)}]"]


def _neuron_problems(config: Config, chosen: list[tuple[str, str, str]], infos: dict[str, LayerInfo]) -> list[str]:
    """Neuron indices in layers.neurons that the layer does not have; patches shown as maps where it has none."""
    problems = []
    for listed, _, path in chosen:
        choice, shape = config.layers.neurons.get(listed), infos[path].shape
        if config.layers.patches.get(listed) == MAP and len(shape) != 3:
            problems.append(f"layers.patches.{listed}: \"map\" needs a layer of channels, and {listed} gives one "
                            f"value per neuron ({shape}): it has no map to show")
        if isinstance(choice, tuple) and shape:
            outside = [n for n in choice if n >= shape[0]]
            if outside:
                problems.append(f"layers.neurons.{listed}: {', '.join(map(str, outside[:5]))}"
                                f"{' and more' if len(outside) > 5 else ''} out of range: {listed} has "
                                f"{shape[0]} neurons (0 to {shape[0] - 1})")
    return problems


def own_block(loaded: LoadedModel, path: str, lower: str | None) -> list[str]:
    """The modules with parameters of their own and an initialiser (``reset_parameters``: convolutions,
    linear layers, norms) that the layer at ``path`` computes from the configured layer below (``lower``;
    None: from the input): those whose forward ends after ``lower``'s and no later than the layer's, in the
    order they run.  The randomization check re-initialises them."""
    infos = {info.path: info for info in describe_layers(loaded)}
    modules = dict(loaded.module.named_modules())
    end, start = infos[path].order, infos[lower].order if lower is not None else -1
    assert end is not None and start is not None  # configured layers run in every forward
    chosen = [info for info in infos.values() if info.order is not None and start < info.order <= end
              and any(True for _ in modules[info.path].parameters(recurse=False))
              and _initialiser(modules[info.path])]
    return [info.path for info in sorted(chosen, key=lambda info: info.order or 0)]


def _initialiser(module: nn.Module) -> bool:
    """Whether the module has a ``reset_parameters`` that takes no arguments."""
    reset = getattr(module, "reset_parameters", None)
    if not callable(reset):
        return False
    try:
        wanted = inspect.signature(reset).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in wanted)
