"""Pure tensor computations: activations, visualizations, predictions.

No file I/O and no printing here (DESIGN §1).  Everything is batched and runs
on whatever device the model's parameters are on.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from .backprop import METHODS, backward_rule, capture, inference_state, relu_rules


def model_device(model: nn.Module) -> torch.device:
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def _flat(out: torch.Tensor) -> torch.Tensor:
    """[B, C, ...] -> [B, C, positions]; a flat [B, C] output has one position."""
    return out.reshape(out.shape[0], out.shape[1], -1)


def activations(model: nn.Module, images: torch.Tensor, modules: dict[str, nn.Module],
                batch_size: int = 32) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """For each layer: (values [N, C], positions [N, C]).

    A channel's activation is its maximum over positions and its position the
    first argmax in row-major order; a unit's activation is its value.
    """
    device = model_device(model)
    values: dict[str, list] = {name: [] for name in modules}
    positions: dict[str, list] = {name: [] for name in modules}
    with inference_state(model), torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(device)
            outs, _ = capture(model, batch, modules)
            for name, out in outs.items():
                flat = _flat(out)
                pos = flat.argmax(dim=2)
                values[name].append(flat.gather(2, pos.unsqueeze(2)).squeeze(2).float().cpu())
                positions[name].append(pos.cpu())
    return {name: (torch.cat(values[name]), torch.cat(positions[name])) for name in modules}


def gradients(model: nn.Module, image: torch.Tensor, name: str, module: nn.Module,
              neurons: Sequence[int], positions: Sequence[int], methods: Sequence[str],
              batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Visualizations of many neurons on one image, ``{method: [len(neurons), 3, H, W]}``.

    The image is replicated along the batch and each copy is seeded with a
    different neuron (at its given flat position), so one forward and one
    backward per method serve ``batch_size`` neurons.  Batch elements are
    independent in eval mode, so every copy's input gradient is exactly that
    neuron's gradient.
    """
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    device = model_device(model)
    image = image.to(device).unsqueeze(0) if image.dim() == 3 else image.to(device)
    results: dict[str, list[torch.Tensor]] = {method: [] for method in methods}
    with inference_state(model):
        for start in range(0, len(neurons), batch_size):
            chunk = torch.as_tensor(list(neurons[start:start + batch_size]), device=device)
            where = torch.as_tensor(list(positions[start:start + batch_size]), device=device)
            batch = image.expand(len(chunk), -1, -1, -1).clone().requires_grad_(True)
            with torch.enable_grad(), relu_rules():
                outs, _ = capture(model, batch, {name: module})
                flat = _flat(outs[name])
                seeds = flat[torch.arange(len(chunk), device=device), chunk, where].sum()
            for index, method in enumerate(methods):
                with backward_rule(method):
                    (grad,) = torch.autograd.grad(seeds, batch, retain_graph=index < len(methods) - 1)
                results[method].append(grad.detach())
            del outs, flat, seeds, batch
    return {method: torch.cat(parts) for method, parts in results.items()}


def visualize(model: nn.Module, images: torch.Tensor, name: str, module: nn.Module,
              neurons: Sequence[int], methods: Sequence[str], batch_size: int = 32) -> dict[str, torch.Tensor]:
    """``{method: [N, len(neurons), 3, H, W]}``: each neuron at its own position on each image."""
    neurons = list(neurons)
    acts = activations(model, images, {name: module}, batch_size)
    _, positions = acts[name]
    per_image = []
    for index in range(images.shape[0]):
        where = positions[index, neurons].tolist()
        per_image.append(gradients(model, images[index], name, module, neurons, where, methods, batch_size))
    return {method: torch.stack([grads[method] for grads in per_image]) for method in methods}


def pictures(grads: torch.Tensor) -> np.ndarray:
    """Gradients [..., 3, H, W] -> uint8 pictures [..., H, W, 3]: g / max|g| * 0.5 + 0.5.

    One maximum over the whole picture (all pixels, all colour channels), so
    zero is mid-grey and the colours keep their balance.
    """
    scale = grads.abs().amax(dim=(-3, -2, -1), keepdim=True)
    scaled = torch.where(scale > 0, grads / scale.clamp(min=torch.finfo(grads.dtype).tiny), torch.zeros_like(grads))
    picture = (scaled * 0.5 + 0.5).clamp(0, 1).mul(255).round().to(torch.uint8)
    return picture.movedim(-3, -1).cpu().numpy()


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


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """values [N_images, C] -> [C, k] image indices, highest first, ties by image order."""
    order = np.argsort(-values, axis=0, kind="stable")
    return order[:k].T.copy()
