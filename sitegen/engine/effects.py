"""What a neuron does to the classes (DESIGN §2, "effect of a neuron on a class"): the logit a class loses when
the neuron's channel (or unit) is zeroed at every position, and its first-order estimate, the edge weight to
the class, activation times gradient summed over positions.  Pure tensor code; sums over images, which the
caller divides by their number for the means.
"""

from __future__ import annotations

import contextlib
import time
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


def first_order(model: nn.Module, images: torch.Tensor, modules: dict[str, nn.Module], classes: Sequence[int],
                batch_size: int = 8) -> dict[str, torch.Tensor]:
    """``{layer: [len(classes), C]}``: summed over ``images``, each neuron's edge weight to each class's logit,
    ``sum over positions of A_j * d logit_c / d A_j`` (true gradients).  One forward per ``batch_size``
    images, and from it one backward per class for all of them at once (the class's logit seeded in every
    image's row: in eval mode images do not mix), batched or one after another (``seeded.py``), which stops at
    the lowest of the layers.  On a 2-core CPU a class's backward of 8 images at once runs 1.4 to 1.8 times
    faster than 8 apart (EfficientNet-Lite0's blocks 2 to 15, ``bench/effects.py``)."""
    device = model_device(model)
    names = list(modules)
    total: dict[str, torch.Tensor] = {}
    with inference_state(model), torch.enable_grad():
        for start in range(0, images.shape[0], batch_size):
            with _kept(modules) as outputs:
                x = images[start:start + batch_size].to(device).requires_grad_(True)
                logits = _logits(model, x)
            values = [outputs[name] for name in names]
            for first in range(0, len(classes), SEEDS):
                chunk = torch.as_tensor(list(classes[first:first + SEEDS]), device=device)
                seeds = torch.zeros(len(chunk), *logits.shape, device=device, dtype=logits.dtype)
                seeds[torch.arange(len(chunk), device=device), :, chunk] = 1
                grads = seeded.grads(model, "logits to " + ",".join(names), logits, values, seeds,
                                     retain_graph=first + SEEDS < len(classes))
                for name, value, grad in zip(names, values, grads):
                    weights = (value.detach()[None] * grad).sum(dim=1).reshape(len(chunk), value.shape[1], -1).sum(2)
                    rows = total.setdefault(name, torch.zeros(len(classes), value.shape[1], device=device,
                                                              dtype=weights.dtype))
                    rows[first:first + len(chunk)] += weights
    return total


SEEDS = 16  # classes per backward call: their gradients at the layers are kept together


def ablation(model: nn.Module, images: torch.Tensor, module: nn.Module, neurons: Sequence[int],
             classes: Sequence[Sequence[int]], batch_size: int = 16) -> torch.Tensor:
    """``[len(neurons), k]``: summed over ``images``, the logit each of ``classes[i]`` (k classes per neuron)
    loses when neuron ``neurons[i]`` of ``module``'s output is zeroed at every position.

    Each image's forward runs once as it is; the layer's output is then copied, each copy with one neuron
    zeroed, and only what follows the layer runs on the copies (what the model computed before the layer
    broadcasts over them), as many copies per pass as run fastest (:class:`_Copies`).  Where that does not
    give a plain forward's numbers (a later operation that cannot take copies beside one image, checked on the
    first image), each copy runs the whole model instead, ``batch_size`` of them per pass (once per layer of a
    model)."""
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
            copies = _COPIES.setdefault(
                module, _Copies(batch_size, max(batch_size, COPIED // sizes[0]), len(neurons)))
            start = 0
            while start < len(neurons):
                step = copies.next() if expand else batch_size
                chunk = list(range(start, min(start + step, len(neurons))))
                began = time.perf_counter()
                zeroed = _zeroed(model, x, module, [neurons[k] for k in chunk], expand)
                rows = torch.arange(len(chunk), device=device)[:, None]
                total[chunk] += (base[columns[chunk]] - zeroed[rows, columns[chunk]]).double()
                if expand and len(chunk) == step:
                    seeded.finish(device)
                    copies.took(step, time.perf_counter() - began)
                start += len(chunk)
    return total


class _Copies:
    """How many copies of a layer's output one pass takes: doubling from ``least``, each size timed on one
    pass, until a size runs slower per copy than the one before it or reaches ``most`` (what holds ``COPIED``
    numbers of the layer's output, or every neuron); from then on, the fastest.  On a 2-core CPU the fastest
    is 8 copies at EfficientNet-Lite0's block 2, 16 at blocks 4 and 7, and 256 at block 15
    (``bench/effects.py``)."""

    def __init__(self, least: int, most: int, neurons: int) -> None:
        self.most = min(most, neurons)
        self.least = min(least, self.most)
        self.timed: dict[int, float] = {}  # copies -> seconds per copy
        self.best: int | None = None

    def next(self) -> int:
        if self.best is not None:
            return self.best
        return min(2 * max(self.timed), self.most) if self.timed else self.least

    def took(self, step: int, seconds: float) -> None:
        if self.best is not None or step in self.timed:
            return
        per = seconds / step
        slower = bool(self.timed) and per > self.timed[max(self.timed)]
        self.timed[step] = per
        if slower or step >= self.most:
            self.best = min(self.timed, key=self.timed.__getitem__)


COPIED = 2 ** 22  # at most as many numbers of the layer's output in one pass's copies (16 MiB in float32)
_EXPANDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer module -> whether copies at it are exact
_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer module -> its copies per pass


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
