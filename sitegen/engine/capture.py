"""Running a model up to the layers wanted, and leaving it as it was given."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def model_device(model: nn.Module) -> torch.device:
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


class _Stop(Exception):
    """Raised from a forward hook once every wanted layer is captured."""


def capture(model: nn.Module, x: torch.Tensor, modules: dict[str, nn.Module], *,
            copy: bool = False) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` until every given module has produced its output; return ``{name: output}``.

    The forward stops there, so layers low in the network cost only the
    network below them.  With ``copy`` the outputs are copied as they are made:
    a later in-place function (an in-place ReLU after a convolution, a residual
    ``+=``) would otherwise change an earlier layer's captured values.
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
            outputs[name] = output.detach().clone() if copy else output
            if len(outputs) == len(modules):
                raise _Stop
        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        try:
            model(x)
        except _Stop:
            pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in modules if name not in outputs]
    if missing:
        raise RuntimeError(f"layer(s) {', '.join(missing)} were not called in the model's forward")
    return outputs


@contextlib.contextmanager
def inference_state(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for the duration; both restored afterwards."""
    modes = {module: module.training for module in model.modules()}
    grads = {param: param.requires_grad for param in model.parameters()}
    try:
        model.eval()
        for param in grads:
            param.requires_grad_(False)
        yield
    finally:
        for module, mode in modes.items():
            module.training = mode
        for param, flag in grads.items():
            param.requires_grad_(flag)
