"""The Python API, for notebooks and tests."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import nn

from .engine.effects import ablation as _ablation
from .engine.effects import first_order as _first_order
from .engine.optimization import Recipe
from .engine.optimization import optimize as _optimize
from .engine.passes import edges as _edges
from .engine.passes import visualize as _visualize
from .engine.paths import Step, check_paths, path_gradients
from .engine.smooth import SmoothGrad
from .errors import SitegenError
from .methods import PICTURE_METHODS, RULE_METHODS
from .model.layers import aliases_for

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _module(model: nn.Module, layer: str) -> tuple[str, nn.Module]:
    modules = dict(model.named_modules())
    path = aliases_for(model).get(layer, layer)
    if not path or path not in modules:
        names = sorted(set(aliases_for(model)) | {n for n in modules if n})
        raise SitegenError(f"unknown layer {layer!r}; valid names: {', '.join(names)}")
    return path, modules[path]


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise SitegenError(f"images must be a [N, 3, H, W] tensor, got shape {tuple(images.shape)}")


PathSpec = Sequence[tuple[str, int | Sequence[int]]]  # (layer, neuron) or (layer, [channels]), root first


def _steps(model: nn.Module, paths: Sequence[PathSpec]) -> list[list[Step]]:
    resolved = []
    for path in paths:
        steps = []
        for layer, neuron in path:
            name, module = _module(model, layer)
            try:
                kept: int | tuple[int, ...] = operator.index(neuron)  # type: ignore[arg-type]  # numpy's too
            except TypeError:
                kept = tuple(sorted({int(n) for n in neuron}))  # type: ignore[union-attr]
            steps.append(Step(name, module, kept))
        resolved.append(steps)
    return resolved


def visualize(model: nn.Module, images: torch.Tensor, layer: str, neurons: Sequence[int],
              method: str = "guided", batch_size: int | None = None, *, samples: int = 16, noise: float = 0.15,
              seed: int = 0) -> torch.Tensor:
    """Visualizations ``[N, len(neurons), 3, H, W]`` of ``neurons`` of ``layer`` on ``images``.

    ``images`` is a preprocessed float tensor ``[N, 3, H, W]``; ``layer`` a
    dotted module path or an alias (AlexNet: conv1..conv5, fc6..fc8);
    ``method`` one of "guided", "deconv", "gradient", "smoothgrad".  Each
    result is the gradient of the neuron's activation at its position (the
    first maximum over positions) with respect to the input, every ReLU's
    backward replaced as the method says.  SmoothGrad's is the mean of the
    plain gradient over ``samples`` noisy copies of the image (Gaussian noise
    of ``noise`` times the image's range; image n's drawn from
    ``torch.Generator().manual_seed(seed + n)``, see
    :mod:`sitegen.engine.smooth`), the neuron taken at its position on the
    clean image.  It runs on the atlas's engine: each neuron on its receptive
    field's crop where that gives the whole image's numbers, ``batch_size``
    neurons per pass (by default 256 on a GPU, 16 on a CPU).  The model is
    left as it was given.
    """
    if method not in PICTURE_METHODS:
        raise SitegenError(f"unknown method {method!r}; expected one of {', '.join(PICTURE_METHODS)}")
    if samples < 1 or noise < 0:
        raise SitegenError(f"SmoothGrad needs samples >= 1 and noise >= 0, got {samples} and {noise}")
    _check_images(images)
    path, module = _module(model, layer)
    smooth = SmoothGrad(samples, noise, seed)
    return _visualize(model, images, path, module, list(neurons), [method], batch_size, smooth)[method].cpu()


def edges(model: nn.Module, images: torch.Tensor, lower: str, upper: str, neurons: Sequence[int],
          batch_size: int | None = None) -> torch.Tensor:
    """Edge weights ``[N, len(neurons), C_lower]`` from every neuron of ``lower`` to ``neurons`` of ``upper``.

    ``w_ij(x) = sum over positions of A_j(x) * d a_i(x) / d A_j(x)``: activation
    times true gradient, with ``a_i`` the upper neuron's activation at its
    position (DESIGN §2).  The layers need not be adjacent: the gradient flows
    through whatever the model computes between them.
    """
    _check_images(images)
    _, low = _module(model, lower)
    path, up = _module(model, upper)
    return _edges(model, images, path, up, low, list(neurons), batch_size).cpu()


def optimize(model: nn.Module, layer: str, neurons: Sequence[int], steps: int = 256, size: int = 128,
             seed: int = 0, lr: float = 0.05, mean: Sequence[float] = IMAGENET_MEAN,
             std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Images ``[len(neurons), 3, size, size]`` in [0, 1], each optimized from noise to excite its neuron.

    The objective is a channel's mean over positions (a unit's value); the
    image is parameterized in decorrelated colour and scaled Fourier space and
    randomly jittered, scaled and rotated at every step (see
    :mod:`sitegen.engine.optimization`).  ``mean`` and ``std`` are the model's input
    normalisation (ImageNet's by default; EfficientNet-Lite wants 0.5 and
    0.5).  All neurons are optimized together in one batch; the same seed
    gives the same images.  The model is left as it was given.
    """
    path, module = _module(model, layer)
    if len(mean) != 3 or len(std) != 3:
        raise SitegenError("mean and std need one number per colour channel")
    recipe = Recipe(steps=steps, size=size, lr=lr)
    return _optimize(model, path, module, list(neurons), mean, std, recipe, seed).cpu()


def visualize_paths(model: nn.Module, images: torch.Tensor, paths: Sequence[PathSpec],
                    method: str = "guided", batch_size: int | None = None) -> torch.Tensor:
    """Path pictures ``[N, len(paths), 3, H, W]`` (DESIGN §2).

    A path is a list of ``(layer, neuron)`` pairs, root first, each next layer
    below the one before (aliases or dotted paths); below the root a step may
    be a group, ``(layer, [n1, n2, ...])``.  Its picture is the gradient of
    the root's activation at its position with respect to the input, under
    the method's ReLU rule, with the gradient arriving at each later layer of
    the path zeroed in every channel but the path's neuron there (a group's:
    every channel not in it; all positions kept).  A one-element path is
    :func:`visualize`'s picture.  All paths with one root layer share each
    forward and backward pass.  The model is left as it was given.
    """
    if method not in RULE_METHODS:
        raise SitegenError(f"unknown method {method!r}; expected one of {', '.join(RULE_METHODS)}")
    _check_images(images)
    steps = _steps(model, paths)
    check_paths(model, steps, images)
    return path_gradients(model, images, steps, [method], batch_size=batch_size)[method].cpu()


def path_edges(model: nn.Module, images: torch.Tensor, paths: Sequence[PathSpec], lower: str,
               batch_size: int | None = None) -> torch.Tensor:
    """Path weights ``[N, len(paths), C_lower]`` to every neuron of ``lower`` (DESIGN §2).

    ``w_j = sum over positions of A_j * g_j``, with ``g`` the true gradient of
    the root's activation arriving at ``lower`` under the path's masks (see
    :func:`visualize_paths`); ``lower`` must be below the path's last layer.
    For a one-element path it is :func:`edges`' weight.  The weights are
    linear in what a step keeps: a group's weight under a path (the sum of
    this over its channels) is the sum of its members' weights, exactly; a
    guided picture through a group is not the sum of its members' pictures.
    """
    _check_images(images)
    steps = _steps(model, paths)
    name, module = _module(model, lower)
    check_paths(model, steps, images, Step(name, module, 0))
    return path_gradients(model, images, steps, [], lower=module, batch_size=batch_size)["edges"].cpu()


def effects(model: nn.Module, images: torch.Tensor, layer: str, neurons: Sequence[int], classes: Sequence[int],
            ablate: bool = True, batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What ``neurons`` of ``layer`` do to the model's ``classes`` (DESIGN §2), as means over ``images``:
    ``(first_order, ablation)``, each ``[len(neurons), len(classes)]``.

    ``ablation[i, c]`` is the class's logit less its logit with the neuron's channel (or unit) set to zero at
    every position; ``first_order[i, c]`` is its first-order estimate, the edge weight to the class:
    ``sum over positions of A_i * d logit_c / d A_i`` with true gradients.  ``ablate=False`` skips the
    ablations (one forward per image and neuron; the estimate costs one backward per class for each
    ``batch_size`` images).
    The model's output must be ``[N, classes]`` logits.  The model is left as it was given.
    """
    _check_images(images)
    path, module = _module(model, layer)
    neurons = [int(n) for n in neurons]
    estimate = _first_order(model, images, {path: module}, [int(c) for c in classes], batch_size)[path][:, neurons].T
    exact = _ablation(model, images, module, neurons, [[int(c) for c in classes]] * len(neurons), batch_size) \
        if ablate else None
    count = images.shape[0]
    return (estimate / count).cpu(), (exact / count).float().cpu() if exact is not None else None
