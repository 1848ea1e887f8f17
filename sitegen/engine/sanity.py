"""The randomization check (Adebayo et al., "Sanity Checks for Saliency Maps", 2018): a picture that looks the
same after a layer's weights are re-initialised does not show what that layer learned.

Pure tensor code.  :func:`reinitialised` makes the model with a set of modules re-initialised;
:func:`agreement` compares a neuron's pictures under the two models by the Spearman rank correlation of
|picture| (summed over colours) over the pixels of its receptive field's box.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn


def reinitialised(model: nn.Module, paths: Sequence[str], seed: int) -> nn.Module:
    """A copy of ``model`` with the modules at ``paths`` re-initialised, in that order, each by its own
    initialiser (``reset_parameters``) after ``torch.manual_seed(seed)``; the model is left as it was.
    The global random state is restored afterwards."""
    other = copy.deepcopy(model)
    modules = dict(other.named_modules())
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        with torch.no_grad():
            for path in paths:
                modules[path].reset_parameters()
    finally:
        torch.random.set_rng_state(state)
    return other


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks of a 1-d tensor (0 for the smallest), ties sharing the mean of their ranks (float64)."""
    order = values.argsort(stable=True)
    ordered = values[order]
    _, counts = torch.unique_consecutive(ordered, return_counts=True)
    ends = counts.cumsum(0)
    mean = (ends - counts).double() + (counts.double() - 1) / 2  # each run's mean 0-based rank
    out = torch.empty(values.shape[0], dtype=torch.float64, device=values.device)
    out[order] = mean.repeat_interleave(counts)
    return out


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Spearman rank correlation of two tensors of one shape (NaN where either is constant)."""
    x, y = ranks(a.reshape(-1)), ranks(b.reshape(-1))
    x, y = x - x.mean(), y - y.mean()
    scale = float(x.norm() * y.norm())
    return float((x * y).sum()) / scale if scale > 0 else float("nan")


def agreement(trained: torch.Tensor, random: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]]
              ) -> list[float]:
    """For pictures ``[N, 3, H, W]`` of N neurons under the trained and the re-initialised model, each
    neuron's Spearman correlation of |picture| summed over colours, over its box (top, left, bottom,
    right, inclusive; clipped to the image)."""
    height, width = trained.shape[-2:]
    out = []
    for k, (top, left, bottom, right) in enumerate(boxes):
        rows = slice(max(top, 0), min(bottom, height - 1) + 1)
        columns = slice(max(left, 0), min(right, width - 1) + 1)
        out.append(spearman(trained[k].abs().sum(0)[rows, columns], random[k].abs().sum(0)[rows, columns]))
    return out
