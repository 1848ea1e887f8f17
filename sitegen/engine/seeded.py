"""Backward passes of one forward pass for many seeds (one-hot gradients at its output): batched, as autograd's
``is_grads_batched`` (vmap) runs them, or one after another over the retained graph.  Both give the same
numbers; which is faster depends on the model and the device.  On a CPU, vmap's backward of EfficientNet's
depthwise convolutions runs each seed apart and joins the results, and most of its time goes to the joins
(a one-after-another loop is 1.3 to 1.6 times faster at its block 15 and logits); AlexNet's fully connected
layers gain from the batch (vmap 1.7 times faster at fc6).  So the first call for each layer of a model
times both, the loop first (what it warms up serves vmap too), and the layer keeps the faster
(``bench/shared.py``).  Where the batched backward fails (an operation without a batched rule, which a
pass of the same layer that stopped higher up did not meet), the seeds run one after another, and so do
that layer's from then on.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence

import torch
from torch import nn

_LOOPED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {layer: whether the loop is faster}


def grads(model: nn.Module, layer: str, out: torch.Tensor, inputs: Sequence[torch.Tensor], seeds: torch.Tensor,
          retain_graph: bool = False) -> tuple[torch.Tensor, ...]:
    """For each input, ``[len(seeds), *input.shape]``: the gradient there of ``out`` seeded with each row of
    ``seeds`` (``[K, *out.shape]``), by the way ``layer`` of ``model`` runs fastest."""
    choices = _LOOPED.setdefault(model, {})
    if layer not in choices:
        finish(out.device)
        start = time.perf_counter()
        result = _looped(out, inputs, seeds, True)
        finish(out.device)
        middle = time.perf_counter()
        try:
            _batched(out, inputs, seeds, retain_graph)
        except (RuntimeError, NotImplementedError):  # an operation without a batched backward
            choices[layer] = True
            return result
        finish(out.device)
        choices[layer] = middle - start < time.perf_counter() - middle
        return result
    if not choices[layer]:
        try:  # the graph is kept until the batched pass is through, for the loop should it fail
            result = _batched(out, inputs, seeds, True)
        except (RuntimeError, NotImplementedError):
            choices[layer] = True
        else:
            return result
    return _looped(out, inputs, seeds, retain_graph)


def finish(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read next times it (a GPU runs it later)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def looped(model: nn.Module, layer: str) -> bool | None:
    """Whether the layer of the model runs its seeds one after another (None: not yet timed)."""
    return _LOOPED.get(model, {}).get(layer)


def _batched(out: torch.Tensor, inputs: Sequence[torch.Tensor], seeds: torch.Tensor,
             retain_graph: bool) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(out, list(inputs), seeds, retain_graph=retain_graph, is_grads_batched=True)


def _looped(out: torch.Tensor, inputs: Sequence[torch.Tensor], seeds: torch.Tensor,
            retain_graph: bool) -> tuple[torch.Tensor, ...]:
    rows = [torch.autograd.grad(out, list(inputs), seed, retain_graph=retain_graph or k < len(seeds) - 1)
            for k, seed in enumerate(seeds)]
    return tuple(torch.stack([row[i] for row in rows]) for i in range(len(inputs)))
