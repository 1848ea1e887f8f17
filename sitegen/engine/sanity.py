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
    initialiser (``reset_parameters``) on the CPU, after the CPU's generator is seeded with ``seed``: the
    same weights whatever device the model is on.  The model and every random state are left as they were."""
    other = copy.deepcopy(model)
    modules = dict(other.named_modules())
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.random.default_generator.manual_seed(seed)
        for path in paths:
            module = modules[path]
            device = next(module.parameters()).device
            module.to("cpu").reset_parameters()
            module.to(device)
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
    right, inclusive; clipped to the image).  NaN where the trained picture is the same everywhere there
    (nothing to compare); 0 where only the re-initialised one is (it lost all it showed)."""
    height, width = trained.shape[-2:]
    out = []
    for k, (top, left, bottom, right) in enumerate(boxes):
        rows = slice(max(top, 0), min(bottom, height - 1) + 1)
        columns = slice(max(left, 0), min(right, width - 1) + 1)
        mine, theirs = trained[k].abs().sum(0)[rows, columns], random[k].abs().sum(0)[rows, columns]
        constant = bool((theirs == theirs.reshape(-1)[0]).all()) and not bool((mine == mine.reshape(-1)[0]).all())
        out.append(0.0 if constant else spearman(mine, theirs))
    return out
