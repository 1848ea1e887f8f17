"""Paths (DESIGN §2): a root neuron and one neuron, or a group of them, in each of some layers below it.

A path's picture is the gradient of the root's activation (at its position)
with respect to the input, under a method's ReLU rule, with the gradient
arriving at each later layer of the path zeroed in every channel but the
path's neuron there (a group step: every channel not in its group); its
weights to a lower layer are ``sum over positions of A_j * g_j`` with the
true gradient under the same masks.  Many paths of
one root layer share each pass: every copy of the image in a batch carries
its own channel masks (``passes.gradients``' ``keep``).  Pure tensor code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import SitegenError
from .capture import inference_state, model_device
from .passes import Kept, activations, batch_for, gradients


@dataclass(frozen=True)
class Step:
    """One layer of a path: its name (for messages), its module and the neuron the path keeps there, or the
    group of its channels (a group step; the root is a neuron)."""

    name: str
    module: nn.Module
    neuron: int | tuple[int, ...]


def call_order(model: nn.Module, modules: Sequence[nn.Module],
               image: torch.Tensor) -> dict[nn.Module, tuple[int, int]]:
    """When each module first runs in one forward of ``image`` (0 first) and its output's channels (or units);
    modules that do not run are left out."""
    order: dict[nn.Module, tuple[int, int]] = {}

    def hook(module, _inputs, output) -> None:  # (a hook that returns a value replaces the output)
        channels = output.shape[1] if isinstance(output, torch.Tensor) and output.dim() > 1 else 0
        order.setdefault(module, (len(order), channels))

    handles = [module.register_forward_hook(hook) for module in set(modules)]
    try:
        with inference_state(model), torch.no_grad():
            model(image[:1].to(model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    return order


def check_paths(model: nn.Module, paths: Sequence[Sequence[Step]], image: torch.Tensor,
                lower: Step | None = None) -> None:
    """Each path non-empty, its root a neuron, its groups non-empty, its channels in range, and each of its
    layers (then ``lower``) below the one before it."""
    modules = [step.module for path in paths for step in path] + ([lower.module] if lower else [])
    order = call_order(model, modules, image)
    for path in paths:
        if not path:
            raise SitegenError("a path needs at least its root: [(layer, neuron), ...]")
        steps = list(path) + ([lower] if lower else [])
        if not isinstance(path[0].neuron, int):
            raise SitegenError(f"a path's root is one neuron, not a group: {path[0].name!r} {list(path[0].neuron)}")
        for step in steps:
            if step.module not in order:
                raise SitegenError(f"layer {step.name!r} does not run in the model's forward")
            channels = order[step.module][1]
            group = (step.neuron,) if isinstance(step.neuron, int) else step.neuron
            if not group:
                raise SitegenError(f"an empty group of {step.name!r}: a group step keeps at least one channel")
            if step is not lower and not all(0 <= n < channels for n in group):
                raise SitegenError(f"{step.name!r} has {channels} neurons (0 to {channels - 1}); a path asks for "
                                   f"{', '.join(str(n) for n in group if not 0 <= n < channels)}")
        for above, below in zip(steps, steps[1:]):
            if order[below.module][0] >= order[above.module][0]:
                raise SitegenError(f"layer {below.name!r} is not below {above.name!r}: list a path's layers from "
                                   f"the root down")


def keep_masks(paths: Sequence[Sequence[Step]]) -> list[tuple[nn.Module, list[Kept]]]:
    """For each module below the roots, the neuron or group each path keeps there (None: the path does not
    reach it)."""
    kept: dict[nn.Module, list[Kept]] = {}
    for index, path in enumerate(paths):
        for step in path[1:]:
            kept.setdefault(step.module, [None] * len(paths))[index] = step.neuron
    return list(kept.items())


def _root(path: Sequence[Step]) -> int:
    neuron = path[0].neuron
    assert isinstance(neuron, int)  # check_paths: a root is one neuron
    return neuron


def path_gradients(model: nn.Module, images: torch.Tensor, paths: Sequence[Sequence[Step]],
                   methods: Sequence[str], lower: nn.Module | None = None,
                   batch_size: int | None = None) -> dict[str, torch.Tensor]:
    """``{method: [N, len(paths), 3, H, W]}``, and with ``lower`` ``"edges"``: ``[N, len(paths), C_lower]``.

    Paths are grouped by their root's layer; each group's paths go through
    shared passes, each root neuron at its own position on each image.
    """
    device = model_device(model)
    batch_size = batch_size or batch_for(device)
    results: dict[str, torch.Tensor] = {}
    groups: dict[nn.Module, list[int]] = {}
    for index, path in enumerate(paths):
        groups.setdefault(path[0].module, []).append(index)
    for root, members in groups.items():
        group = [paths[index] for index in members]
        name = group[0][0].name
        neurons = [_root(path) for path in group]
        _, positions = activations(model, images, {name: root}, batch_size)[name]
        for n in range(images.shape[0]):
            got = gradients(model, images[n], name, root, neurons, positions[n, neurons].tolist(), methods,
                            batch_size, lower=lower, keep=keep_masks(group))
            for kind, values in got.items():
                if kind not in results:
                    results[kind] = torch.zeros(images.shape[0], len(paths), *values.shape[1:], device=device,
                                                dtype=values.dtype)
                results[kind][n, members] = values
    return results
