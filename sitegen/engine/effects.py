"""What a neuron does to the classes (DESIGN §2, "effect of a neuron on a class"): the logit a class loses when
the neuron's channel (or unit) is zeroed at every position, and its first-order estimate, the edge weight to
the class, activation times gradient summed over positions.  Pure tensor code; sums over images, which the
caller divides by their number for the means.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from . import seeded
from .capture import inference_state, model_device


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise TypeError("the model's output is not a [N, classes] tensor of logits")
    return out


@contextlib.contextmanager
def _kept(modules: dict[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Each module's output as the forward made it; the model goes on with a copy, so a later in-place
    function (an in-place ReLU, a residual ``+=``) changes neither."""
    outputs: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            outputs[name] = output
            return output.clone()
        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in modules.items()]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def first_order(model: nn.Module, images: torch.Tensor, modules: dict[str, nn.Module],
                classes: Sequence[int]) -> dict[str, torch.Tensor]:
    """``{layer: [len(classes), C]}``: summed over ``images``, each neuron's edge weight to each class's logit,
    ``sum over positions of A_j * d logit_c / d A_j`` (true gradients).  One forward per image, and from it
    one backward per class (batched or one after another, ``seeded.py``), which stops at the lowest of the
    layers."""
    device = model_device(model)
    total = {name: torch.zeros(len(classes), 0, device=device) for name in modules}
    seeds = torch.zeros(len(classes), 1, 0, device=device)
    with inference_state(model), torch.enable_grad():
        for index in range(images.shape[0]):
            with _kept(modules) as outputs:
                x = images[index:index + 1].to(device).requires_grad_(True)
                logits = _logits(model, x)
            names = list(modules)
            if seeds.shape[2] != logits.shape[1]:
                seeds = torch.zeros(len(classes), 1, logits.shape[1], device=device, dtype=logits.dtype)
                seeds[torch.arange(len(classes)), 0, torch.as_tensor(list(classes), device=device)] = 1
            grads = seeded.grads(model, "logits to " + ",".join(names), logits, [outputs[name] for name in names],
                                 seeds)
            for name, value, grad in zip(names, (outputs[name] for name in names), grads):
                weights = (value.detach()[None] * grad).reshape(len(classes), value.shape[1], -1).sum(dim=2)
                total[name] = weights if total[name].shape[1] == 0 else total[name] + weights
    return total


def ablation(model: nn.Module, images: torch.Tensor, module: nn.Module, neurons: Sequence[int],
             classes: Sequence[Sequence[int]], batch_size: int = 16) -> torch.Tensor:
    """``[len(neurons), k]``: summed over ``images``, the logit each of ``classes[i]`` (k classes per neuron)
    loses when neuron ``neurons[i]`` of ``module``'s output is zeroed at every position.

    Each image's forward runs once as it is; the layer's output is then copied, each copy with one neuron
    zeroed, and only what follows the layer runs on the copies (what the model computed before the layer
    broadcasts over them), as many copies per pass as hold ``COPIED`` numbers of the layer's output (at
    least ``batch_size``).  Where that does not give a plain forward's numbers (a later operation that cannot
    take copies beside one image, checked on the first image), each copy runs the whole model instead,
    ``batch_size`` of them per pass (once per layer of a model)."""
    device = model_device(model)
    columns = torch.as_tensor([list(c) for c in classes], device=device).reshape(len(neurons), -1)
    total = torch.zeros(columns.shape, device=device, dtype=torch.float64)
    with inference_state(model), torch.no_grad():
        for index in range(images.shape[0]):
            x = images[index:index + 1].to(device)
            sizes: list[int] = []  # the numbers in the image's output of the layer
            handle = module.register_forward_hook(
                lambda _module, _inputs, output, sizes=sizes: sizes.append(output[0].numel()))
            try:
                base = _logits(model, x)[0]
            finally:
                handle.remove()
            if module not in _EXPANDS:  # checked once per layer of a model: it follows from the architecture
                _EXPANDS[module] = _expands(model, x, module, list(neurons[:2]))
            expand = _EXPANDS[module]
            step = max(batch_size, COPIED // sizes[0]) if expand else batch_size
            for start in range(0, len(neurons), step):
                chunk = list(range(start, min(start + step, len(neurons))))
                zeroed = _zeroed(model, x, module, [neurons[k] for k in chunk], expand)
                rows = torch.arange(len(chunk), device=device)[:, None]
                total[chunk] += (base[columns[chunk]] - zeroed[rows, columns[chunk]]).double()
    return total


COPIED = 2 ** 21  # numbers of the layer's output in one pass's copies: what follows block 15 of EfficientNet-Lite0
# runs on 133 copies at a time, 3 to 4 times faster than on 8 on a 2-core CPU (its 320 channels, 108 probe views)
_EXPANDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer module -> whether copies at it are exact


def _zeroed(model: nn.Module, x: torch.Tensor, module: nn.Module, neurons: list[int], expand: bool) -> torch.Tensor:
    """``[len(neurons), classes]``: the logits of copies, copy i with ``neurons[i]`` zeroed; with ``expand``
    the copies are made at the layer from one forward of the image below it, else of the image itself."""
    def hook(_module, _inputs, output):
        out = output.expand(len(neurons), *output.shape[1:]).clone() if expand else output.clone()
        out[torch.arange(len(neurons), device=out.device), torch.as_tensor(neurons, device=out.device)] = 0
        return out

    handle = module.register_forward_hook(hook)
    try:
        return _logits(model, x if expand else x.expand(len(neurons), *x.shape[1:]))
    finally:
        handle.remove()


def _expands(model: nn.Module, x: torch.Tensor, module: nn.Module, neurons: list[int]) -> bool:
    """Whether copies made at the layer give the logits that copies of the image give (to 1e-4 of their
    scale), on one image."""
    try:
        fast = _zeroed(model, x, module, neurons, True)
    except (RuntimeError, ValueError, IndexError):  # an operation that cannot take copies beside one image
        return False
    plain = _zeroed(model, x, module, neurons, False)
    return fast.shape == plain.shape and bool((fast - plain).abs().max() <= 1e-4 * plain.abs().max().clamp(min=1e-12))
