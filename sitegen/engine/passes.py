"""Batched forward and backward passes: activations, visualizations, edge weights, predictions.

Pure tensor code: no file I/O and no printing here (DESIGN §1).  Everything
is batched and runs on whatever device the model's parameters are on.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import SitegenError
from ..methods import SMOOTHGRAD, TRUE_GRADIENT
from . import seeded
from .capture import capture, inference_state, model_device
from .crops import Crop, batches, plan_crops
from .geometry import Geometry, receptive_fields
from .rules import RULES, backward_rule, relu_rules
from .smooth import SmoothGrad, noise

Kept = int | tuple[int, ...] | None  # what one path keeps at a layer: a channel, a group of them, or all


def _flat(out: torch.Tensor) -> torch.Tensor:
    """[B, C, ...] -> [B, C, positions]; a flat [B, C] output has one position."""
    return out.reshape(out.shape[0], out.shape[1], -1)


def activations(model: nn.Module, images: torch.Tensor, modules: dict[str, nn.Module],
                batch_size: int = 32, on_device: bool = False) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """For each layer: (values [N, C], positions [N, C]), on the CPU unless ``on_device``.

    A channel's activation is its maximum over positions and its position the
    first argmax in row-major order; a unit's activation is its value.
    """
    device = model_device(model)
    values: dict[str, list] = {name: [] for name in modules}
    positions: dict[str, list] = {name: [] for name in modules}
    with inference_state(model), torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(device)
            outs = capture(model, batch, modules, copy=True)
            for name, out in outs.items():
                flat = _flat(out)
                pos = flat.argmax(dim=2)
                values[name].append(flat.gather(2, pos.unsqueeze(2)).squeeze(2).float())
                positions[name].append(pos)
    where = device if on_device else torch.device("cpu")
    return {name: (torch.cat(values[name]).to(where), torch.cat(positions[name]).to(where)) for name in modules}


class _LowerLayer:
    """A lower layer's output as the forward made it, for edge weights and path maps: the tensor itself (a
    node of the graph, so a backward pass can stop there) and its value.  The model goes on with a copy, so
    a later in-place function (an in-place ReLU, a residual ``+=``) changes neither."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.node: torch.Tensor | None = None

    def __enter__(self):
        def hook(_module, _inputs, output):
            if output.requires_grad:
                self.node = output
                return output.clone()
            return None
        self.handle = self.module.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def checked(self) -> torch.Tensor:
        if self.node is None:
            raise SitegenError("the upper layer does not depend on the lower one: list layers lowest first")
        return self.node


def _recorded(kind: str, value: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """From a lower layer's value and each copy's true gradient there: ``"maps"`` (and ``"lower maps"``),
    activation times gradient at each position, [B, C, ...]; ``"edges"``, the same summed over positions,
    [B, C]."""
    product = value * grad
    return product if kind != "edges" else product.reshape(product.shape[0], product.shape[1], -1).sum(dim=2)


def _backward(out: torch.Tensor, seeds: tuple[nn.Module, str, torch.Tensor] | None, x: torch.Tensor,
              recorders: dict[str, _LowerLayer], passes: list[str], want: set[str],
              retain: bool = False) -> dict[str, torch.Tensor]:
    """One backward pass from ``out`` per method, each under its rule: the gradient at ``x`` for the methods in
    ``want``, and from the true gradient's pass each recorder's kind (that pass stops at the recorders'
    layers where ``x``'s gradient is not wanted).  ``seeds``: the model, the layer and the seeds' one-hot
    gradients at ``out``, ``[seeds, *out.shape]``, for backward passes of one forward (``seeded.py``),
    each seed's gradients summed over ``x``'s images; None where ``out`` is the sum of every copy's own
    neuron.  ``retain`` keeps the graph for more passes."""
    got: dict[str, torch.Tensor] = {}
    for index, method in enumerate(passes):
        nodes = [r.checked() for r in recorders.values()] if method == TRUE_GRADIENT else []
        inputs = ([x] if method in want else []) + nodes
        more = retain or index < len(passes) - 1
        with backward_rule(method):
            if seeds is None:
                grads = torch.autograd.grad(out, inputs, retain_graph=more)
            else:  # [seeds, images, ...] -> [seeds, ...]
                grads = tuple(grad.sum(dim=1) for grad in seeded.grads(*seeds[:2], out, inputs, seeds[2], more))
        if method in want:
            got[method] = grads[0]
        for (kind, recorder), grad in zip(recorders.items(), grads[len(inputs) - len(nodes):]):
            got[kind] = _recorded(kind, recorder.checked().detach(), grad)
    return got


def _copies(model: nn.Module, image: torch.Tensor, name: str, module: nn.Module, seeds: list[tuple[int, int]],
            cuts: list[Crop | None], passes: list[str], want: set[str], recorded: dict[str, nn.Module],
            keep: Sequence[tuple[nn.Module, Sequence[Kept]]], rows: list[int]) -> dict[str, torch.Tensor]:
    """One pass over a batch of copies of the image (or of crops), each seeded with its own neuron at its
    position: ``{method: [B, 3, h, w]}`` for the methods in ``want``, and each recorded kind."""
    if cuts[0] is None:
        batch = image.expand(len(seeds), -1, -1, -1).clone()
    else:
        boxes = [c for c in cuts if c is not None]
        assert len(boxes) == len(cuts)  # a batch's crops are of one shape (crops.batches)
        batch = torch.stack([image[:, c.y0:c.y1 + 1, c.x0:c.x1 + 1] for c in boxes])
    batch.requires_grad_(True)
    with contextlib.ExitStack() as stack:
        recorders = {kind: stack.enter_context(_LowerLayer(at)) for kind, at in recorded.items()}
        _restrict(stack, keep, rows)
        with torch.enable_grad(), relu_rules():
            out = capture(model, batch, {name: module})[name]
        where = [p if c is None else c.i * out.shape[-1] + c.j for (_, p), c in zip(seeds, cuts)]
        copies = torch.arange(len(seeds), device=batch.device)
        channels = torch.as_tensor([n for n, _ in seeds], device=batch.device)
        total = _flat(out)[copies, channels, torch.as_tensor(where, device=batch.device)].sum()
        return _backward(total, None, batch, recorders, passes, want)


def _shared(model: nn.Module, images: torch.Tensor, name: str, module: nn.Module, seeds: list[tuple[int, int]],
            passes: list[str], want: set[str], recorded: dict[str, nn.Module],
            batch_size: int | None = None) -> dict[str, torch.Tensor]:
    """As :func:`_copies` for neurons that need the whole image, with one forward pass of the images alone
    (``[B, 3, H, W]``; SmoothGrad's noisy copies of one image, or the image itself): copies of an image
    would all compute the same forward.  Each method's backward passes, one per seed, run from it (batched
    or one after another, ``seeded.py``), ``batch_size`` seeds at a time, each seed set in every image and
    its gradients summed over them; the true gradient's, where it only serves the recorded kinds (of one
    image), stops at their layers."""
    x = images.clone().requires_grad_(True)
    assert not recorded or len(x) == 1
    with contextlib.ExitStack() as stack:
        recorders = {kind: stack.enter_context(_LowerLayer(at)) for kind, at in recorded.items()}
        with torch.enable_grad(), relu_rules():
            out = capture(model, x, {name: module})[name]
        step = batch_size or len(seeds)
        parts = []
        for start in range(0, len(seeds), step):
            chunk = seeds[start:start + step]
            one_hot = torch.zeros(len(chunk), *out.shape, device=x.device, dtype=out.dtype)
            rows = torch.arange(len(chunk), device=x.device)
            channels = torch.as_tensor([n for n, _ in chunk], device=x.device)
            where = torch.as_tensor([p for _, p in chunk], device=x.device)
            one_hot.view(len(chunk), len(x), out.shape[1], -1)[rows, :, channels, where] = 1
            parts.append(_backward(out, (model, name, one_hot), x, recorders, passes, want,
                                   retain=start + step < len(seeds)))
        return parts[0] if len(parts) == 1 else {kind: torch.cat([p[kind] for p in parts]) for kind in parts[0]}


def _restrict(stack: contextlib.ExitStack, keep: Sequence[tuple[nn.Module, Sequence[Kept]]],
              rows: list[int]) -> None:
    """Zero the gradient arriving at each path layer of ``keep`` in every channel but the one (or the group)
    each copy's path keeps there (all positions of it); a copy whose path does not reach that layer keeps
    every channel."""
    for module, channels in keep:
        kept = [channels[k] for k in rows]
        if all(channel is None for channel in kept):
            continue

        def hook(_module, _inputs, output, kept=kept):
            if not output.requires_grad:
                return
            mask = torch.ones(output.shape[:2], dtype=output.dtype, device=output.device)
            for row, channel in enumerate(kept):
                if channel is not None:
                    mask[row] = 0
                    mask[row, [channel] if isinstance(channel, int) else list(channel)] = 1
            mask = mask.view(*mask.shape, *[1] * (output.dim() - 2))
            output.register_hook(lambda grad: grad * mask)
        stack.callback(module.register_forward_hook(hook).remove)


def gradients(model: nn.Module, image: torch.Tensor, name: str, module: nn.Module,
              neurons: Sequence[int], positions: Sequence[int], methods: Sequence[str],
              batch_size: int = 32, geometry: Geometry | None = None,
              out_width: int = 1, lower: nn.Module | None = None,
              common: bool | None = None,
              keep: Sequence[tuple[nn.Module, Sequence[Kept]]] = (),
              maps_at: nn.Module | None = None, smooth: SmoothGrad | None = None,
              index: int = 0, lower_maps: bool = False) -> dict[str, torch.Tensor]:
    """:func:`rule_gradients`, and with ``"smoothgrad"`` among ``methods`` its pictures too: the mean over
    ``smooth``'s noisy copies of the image (``engine/smooth.py``; ``index``: the image's index in its call,
    which seeds its noise) of each neuron's true gradient at its position on the clean image."""
    rules = [method for method in methods if method != SMOOTHGRAD]
    results = rule_gradients(model, image, name, module, neurons, positions, rules, batch_size, geometry,
                             out_width, lower, common, keep, maps_at, lower_maps) \
        if rules or lower is not None or maps_at is not None else {}
    if SMOOTHGRAD in methods:
        if keep:
            raise ValueError("SmoothGrad pictures of paths are not defined")
        smooth = smooth or SmoothGrad()
        clean = (image[0] if image.dim() == 4 else image).to(model_device(model))
        results[SMOOTHGRAD] = _smoothed(model, clean + noise(clean, smooth, index), name, module, neurons,
                                        positions, batch_size, geometry, out_width, common) / smooth.samples
    return results


def _smoothed(model: nn.Module, noisy: torch.Tensor, name: str, module: nn.Module, neurons: Sequence[int],
              positions: Sequence[int], batch_size: int, geometry: Geometry | None, out_width: int,
              common: bool | None) -> torch.Tensor:
    """``[len(neurons), 3, H, W]``: each neuron's true gradient at its position, summed over the ``noisy``
    images.  Neurons on receptive-field crops go through :func:`rule_gradients` one image after another;
    those that need the whole image share each forward pass of ``batch_size`` of the images, and each
    backward pass is seeded in all of them (:func:`_shared`), a few seeds at a time, so that a batched
    backward carries at most ``batch_size`` copies."""
    _, _, height, width = noisy.shape
    crops = plan_crops(geometry, positions, out_width, height, width,
                       noisy.device.type == "cuda" if common is None else common)
    total = torch.zeros(len(neurons), *noisy.shape[1:], device=noisy.device, dtype=noisy.dtype)
    cropped = [k for k, crop in enumerate(crops) if crop is not None]
    for image in noisy if cropped else ():
        total[cropped] += rule_gradients(model, image, name, module, [neurons[k] for k in cropped],
                                         [positions[k] for k in cropped], [TRUE_GRADIENT], batch_size, geometry,
                                         out_width, common=common)[TRUE_GRADIENT]
    whole = [k for k, crop in enumerate(crops) if crop is None]
    seeds = [(int(neurons[k]), int(positions[k])) for k in whole]
    per = max(1, batch_size // min(batch_size, len(noisy)))  # seeds per backward: at most batch_size copies
    with inference_state(model):
        for start in range(0, len(noisy) if whole else 0, batch_size):
            total[whole] += _shared(model, noisy[start:start + batch_size], name, module, seeds, [TRUE_GRADIENT],
                                    {TRUE_GRADIENT}, {}, per)[TRUE_GRADIENT]
    return total


def rule_gradients(model: nn.Module, image: torch.Tensor, name: str, module: nn.Module,
                   neurons: Sequence[int], positions: Sequence[int], methods: Sequence[str],
                   batch_size: int = 32, geometry: Geometry | None = None,
                   out_width: int = 1, lower: nn.Module | None = None,
                   common: bool | None = None,
                   keep: Sequence[tuple[nn.Module, Sequence[Kept]]] = (),
                   maps_at: nn.Module | None = None, lower_maps: bool = False) -> dict[str, torch.Tensor]:
    """Visualizations of many neurons on one image by ReLU-rule methods, ``{method: [len(neurons), 3, H, W]}``.

    The image is replicated along the batch and each copy is seeded with a
    different neuron (at its given flat position), so one forward and one
    backward per method serve ``batch_size`` neurons.  Batch elements are
    independent in eval mode, so every copy's input gradient is exactly that
    neuron's gradient.  Given the layer's ``geometry`` (and its output width),
    each neuron is computed on its receptive-field crop (``crops.crop_for``)
    where that is smaller than the image, and the result is placed back.
    Crops of many shapes make many small batches; with ``common`` (the
    default on a GPU, where a batch's size costs little and a pass's launch
    much) they are grown to one shape first (``crops.common_shape``).
    Neurons that need the whole image share one forward pass of it, and
    their backward passes run from it (:func:`_shared`).

    Given a ``lower`` layer's module, the result also holds ``"edges"``,
    ``[len(neurons), C_lower]``: each neuron's edge weights
    ``sum over positions of A_j * d a_i / d A_j`` with true gradients
    (DESIGN §2), from the gradient pass when ``methods`` has one and from
    one more backward pass otherwise, which stops at the lower layer.

    ``keep`` makes each neuron's result a path's (DESIGN §2, path picture and
    path weight): for each of its layers (modules below this one), the
    channel the neuron's path keeps there, a tuple of channels (a group
    step), or None; the gradient arriving there is zeroed in every other
    channel, in every backward pass.  Given ``maps_at`` (a module below this
    one; only without ``geometry``), the result also holds ``"maps"``,
    ``[len(neurons), C, h, w]``: activation times true gradient at each of
    its positions, where the path's weight lies.  With ``lower_maps`` the
    lower layer's are kept the same way, unsummed, as ``"lower maps"``
    instead of ``"edges"``.
    """
    for method in methods:
        if method not in RULES:
            raise ValueError(f"unknown method {method!r}; expected one of {', '.join(RULES)}")
    device = model_device(model)
    image = image.to(device)
    image = image[0] if image.dim() == 4 else image
    _, height, width = image.shape
    crops = plan_crops(geometry, positions, out_width, height, width,
                       device.type == "cuda" if common is None else common)
    results = {method: torch.zeros(len(neurons), *image.shape, device=device, dtype=image.dtype)
               for method in methods}
    below = "lower maps" if lower_maps else "edges"
    recorded = {kind: at for kind, at in ((below, lower), ("maps", maps_at)) if at is not None}
    passes = list(methods) + ([TRUE_GRADIENT] if recorded and TRUE_GRADIENT not in methods else [])
    kept: dict[str, dict[int, torch.Tensor]] = {kind: {} for kind in recorded}
    with inference_state(model):
        for chunk in batches(crops, batch_size, height, width):
            cuts = [crops[k] for k in chunk]
            seeds = [(int(neurons[k]), int(positions[k])) for k in chunk]
            if cuts[0] is None and not keep:
                got = _shared(model, image[None], name, module, seeds, passes, set(methods), recorded)
            else:
                got = _copies(model, image, name, module, seeds, cuts, passes, set(methods), recorded, keep, chunk)
            for method in methods:
                for row, (k, c) in enumerate(zip(chunk, cuts)):
                    if c is None:
                        results[method][k] = got[method][row]
                    else:
                        results[method][k, :, c.y0:c.y1 + 1, c.x0:c.x1 + 1] = got[method][row]
            for kind in recorded:
                kept[kind].update((k, value.float()) for k, value in zip(chunk, got[kind]))
            del got
    for kind, values in kept.items():
        results[kind] = torch.stack([values[k] for k in range(len(neurons))])
    return results


def crops_are_exact(model: nn.Module, image: torch.Tensor, name: str, module: nn.Module,
                    geometry: Geometry, tolerance: float = 1e-3) -> bool:
    """Check on one image that receptive-field crops give the whole image's numbers for this layer.

    The geometry is traced for the whole image; a model whose padding depends
    on the input size (dynamic 'same' padding) could still differ on a crop,
    so the corners, an edge and the centre are compared before crops are used,
    each with the channel most active there.
    """
    if geometry.whole:
        return False
    with inference_state(model), torch.no_grad():
        outputs = capture(model, image.to(model_device(model))[None], {name: module})
    out = outputs[name][0]
    if out.dim() != 3:
        return False
    _, height, width = out.shape
    positions = [0, width - 1, (height - 1) * width, height * width - 1, (height // 2) * width + width // 2]
    neurons = [int(out.reshape(out.shape[0], -1)[:, p].argmax()) for p in positions]
    full = gradients(model, image, name, module, neurons, positions, [TRUE_GRADIENT])[TRUE_GRADIENT]
    crop = gradients(model, image, name, module, neurons, positions, [TRUE_GRADIENT], geometry=geometry,
                     out_width=width)[TRUE_GRADIENT]
    scale = full.abs().amax(dim=(1, 2, 3))
    if not (scale > 0).any():
        return False  # nothing to compare: do not trust crops
    return bool(((full - crop).abs().amax(dim=(1, 2, 3)) <= tolerance * scale).all())


def batch_for(device: torch.device) -> int:
    """Copies of an image per pass where the caller does not say: a GPU wants large batches, a CPU's caches
    small ones (bench/visualize.py)."""
    return 256 if device.type == "cuda" else 16


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(layer, H, W): crop plan}


def crop_plan(model: nn.Module, image: torch.Tensor, name: str, module: nn.Module) -> tuple[Geometry | None, int]:
    """The geometry for receptive-field crops of the layer's neurons on images of ``image``'s size, once
    checked to give the whole image's numbers (else None), and the width of the layer's map.  Both follow
    from the architecture alone, so they are kept for the model's later calls."""
    size = (image.shape[-2], image.shape[-1])
    plans = _PLANS.setdefault(model, {})
    if (name, *size) not in plans:
        geometry = receptive_fields(model, {name: module}, size)[name]
        with inference_state(model), torch.no_grad():
            out = capture(model, image.to(model_device(model))[None], {name: module})[name]
        width = out.shape[-1] if out.dim() == 4 else 1
        plans[(name, *size)] = (geometry if crops_are_exact(model, image, name, module, geometry) else None), width
    return plans[(name, *size)]


def visualize(model: nn.Module, images: torch.Tensor, name: str, module: nn.Module,
              neurons: Sequence[int], methods: Sequence[str], batch_size: int | None = None,
              smooth: SmoothGrad | None = None) -> dict[str, torch.Tensor]:
    """``{method: [N, len(neurons), 3, H, W]}``: each neuron at its own position on each image, through the
    atlas's engine (receptive-field crops where they are exact); image n's SmoothGrad noise is seeded with
    ``smooth.seed + n``."""
    neurons = list(neurons)
    batch_size = batch_size or batch_for(model_device(model))
    _, positions = activations(model, images, {name: module}, batch_size)[name]
    geometry, width = crop_plan(model, images[0], name, module)
    per_image = []
    for index in range(images.shape[0]):
        where = positions[index, neurons].tolist()
        per_image.append(gradients(model, images[index], name, module, neurons, where, methods, batch_size,
                                   geometry, width, smooth=smooth, index=index))
    return {method: _stacked([grads[method] for grads in per_image]) for method in methods}


def _stacked(per_image: list[torch.Tensor]) -> torch.Tensor:
    """Per-image results as one tensor, without copying a single image's (pictures of a layer are large)."""
    return per_image[0].unsqueeze(0) if len(per_image) == 1 else torch.stack(per_image)


def edges(model: nn.Module, images: torch.Tensor, name: str, module: nn.Module, lower: nn.Module,
          neurons: Sequence[int], batch_size: int | None = None) -> torch.Tensor:
    """``[N, len(neurons), C_lower]``: edge weights of each upper neuron, at its position, on each image."""
    neurons = list(neurons)
    batch_size = batch_size or batch_for(model_device(model))
    _, positions = activations(model, images, {name: module}, batch_size)[name]
    geometry, width = crop_plan(model, images[0], name, module)
    per_image = [gradients(model, images[n], name, module, neurons, positions[n, neurons].tolist(), [],
                           batch_size, geometry, width, lower=lower)["edges"] for n in range(images.shape[0])]
    return _stacked(per_image)


def predictions(model: nn.Module, images: torch.Tensor, k: int = 5, batch_size: int = 32):
    """Top-k softmax probabilities and class indices of a classifier, ([N, k], [N, k])."""
    device = model_device(model)
    probs, indices = [], []
    with inference_state(model), torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            logits = model(images[start:start + batch_size].to(device))
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                raise TypeError("the model's output is not a [N, classes] tensor of logits")
            top = logits.float().softmax(dim=1).topk(min(k, logits.shape[1]), dim=1)
            probs.append(top.values.cpu())
            indices.append(top.indices.cpu())
    return torch.cat(probs), torch.cat(indices)
