"""The Python API, for notebooks and tests."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backprop import METHODS
from .compute import edges as _edges
from .compute import visualize as _visualize
from .errors import SitegenError
from .models import aliases_for


def _module(model: nn.Module, layer: str) -> tuple[str, nn.Module]:
    modules = dict(model.named_modules())
    path = aliases_for(model).get(layer, layer)
    if not path or path not in modules:
        names = sorted(set(aliases_for(model)) | {n for n in modules if n})
        raise SitegenError(f"unknown layer {layer!r}; valid names: {', '.join(names)}")
    return path, modules[path]


def visualize(model: nn.Module, images: torch.Tensor, layer: str, neurons: Sequence[int],
              method: str = "guided", batch_size: int = 32) -> torch.Tensor:
    """Visualizations ``[N, len(neurons), 3, H, W]`` of ``neurons`` of ``layer`` on ``images``.

    ``images`` is a preprocessed float tensor ``[N, 3, H, W]``; ``layer`` a
    dotted module path or an alias (AlexNet: conv1..conv5, fc6..fc8);
    ``method`` one of "guided", "deconv", "gradient".  Each result is the
    gradient of the neuron's activation at its position (the first maximum
    over positions) with respect to the input, every ReLU's backward replaced
    as the method says.  The model is left as it was given.
    """
    if method not in METHODS:
        raise SitegenError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise SitegenError(f"images must be a [N, 3, H, W] tensor, got shape {tuple(images.shape)}")
    path, module = _module(model, layer)
    return _visualize(model, images, path, module, list(neurons), [method], batch_size)[method].cpu()


def edges(model: nn.Module, images: torch.Tensor, lower: str, upper: str, neurons: Sequence[int],
          batch_size: int = 32) -> torch.Tensor:
    """Edge weights ``[N, len(neurons), C_lower]`` from every neuron of ``lower`` to ``neurons`` of ``upper``.

    ``w_ij(x) = sum over positions of A_j(x) * d a_i(x) / d A_j(x)``: activation
    times true gradient, with ``a_i`` the upper neuron's activation at its
    position (DESIGN §2).  The layers need not be adjacent: the gradient flows
    through whatever the model computes between them.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise SitegenError(f"images must be a [N, 3, H, W] tensor, got shape {tuple(images.shape)}")
    _, low = _module(model, lower)
    path, up = _module(model, upper)
    return _edges(model, images, path, up, low, list(neurons), batch_size).cpu()
