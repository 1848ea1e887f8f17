"""All-neuron visualization of one image for a whole layer, against a per-neuron loop.

The per-neuron loop is the usual way: captum's NeuronGuidedBackprop, one full
forward and backward per neuron (captum hooks ReLU modules, so its model copy
gets out-of-place ReLUs).  sitegen's engine batches neurons and, where the
receptive field is smaller than the image, computes each neuron on its crop;
the public ``sitegen.visualize`` runs on it too (finding the crops and the
positions itself, which the engine column is given).
Both run on the same machine in one run (best of three each), on randomly
initialised AlexNet and a generated 224 px image; the results are compared.
On a GPU both run there, in strict float32 and then with TF32 allowed (as
PyTorch allows it by default for convolutions).  Run:
.venv/bin/python bench/visualize.py   (needs the bench extra: pip install -e '.[bench]')
"""

from __future__ import annotations

import copy
import time
from functools import partial

import torch
from torch import nn

import sitegen
from sitegen.engine.geometry import receptive_fields
from sitegen.engine.passes import activations, crops_are_exact, gradients
from sitegen.model.registry import load_model

CASES = [("conv5", "features.11", 256), ("conv1", "features.1", 64)]


def captum_loop(model: nn.Module, image: torch.Tensor, path: str, neurons: list[int], positions: list[int],
                width: int) -> torch.Tensor:
    from captum.attr import NeuronGuidedBackprop

    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    method = NeuronGuidedBackprop(model, dict(model.named_modules())[path])
    out = []
    for neuron, position in zip(neurons, positions):
        i, j = divmod(position, width)
        out.append(method.attribute(image[None], neuron_selector=(neuron, i, j))[0])
    return torch.stack(out)


def best_of(repeats: int, call):
    """The shortest of a few runs (the first pays for warming up), and the result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times), result


def set_tf32(allowed: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def main() -> None:
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model("alexnet", "none").module.eval().to(device)
    image = torch.randn(3, 224, 224).to(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"on {where}")
    print(f"{'layer':<6} {'neurons':>7} {'per-neuron loop':>16} {'engine':>8} {'speed-up':>9} {'API':>7} "
          f"{'speed-up':>9} {'max rel diff':>13}")
    for tf32 in ([False, True] if device.type == "cuda" else [False]):
        set_tf32(tf32)
        if tf32:
            print("with TF32 allowed:")
        compare(model, image)


def compare(model: nn.Module, image: torch.Tensor) -> None:
    modules = dict(model.named_modules())
    for name, path, count in CASES:
        module = modules[path]
        geometry = receptive_fields(model, {path: module}, (224, 224))[path]
        _, positions = activations(model, image[None], {path: module})[path]
        width = 55 if name == "conv1" else 13
        neurons = list(range(count))
        where = positions[0, neurons].tolist()
        crops = crops_are_exact(model, image, path, module, geometry)
        batch = 256 if image.is_cuda else 16  # neurons per pass: a GPU wants large batches, a CPU's caches small
        fast, ours = best_of(3, partial(gradients, model, image, path, module, neurons, where, ["guided"], batch,
                                        geometry if crops else None, width))
        ours = ours["guided"]
        api, public = best_of(3, partial(sitegen.visualize, model, image[None], name, neurons, "guided"))
        slow, theirs = best_of(3, partial(captum_loop, model, image, path, neurons, where, width))
        scale = theirs.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12)
        diff = max(((ours - theirs).abs() / scale).max().item(),
                   ((public[0].to(theirs.device) - theirs).abs() / scale).max().item())
        print(f"{name:<6} {count:>7} {slow:>15.2f}s {fast:>7.2f}s {slow / fast:>8.1f}x {api:>6.2f}s "
              f"{slow / api:>8.1f}x {diff:>13.1e}")


if __name__ == "__main__":
    main()
