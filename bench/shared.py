"""Neurons that need the whole image: one forward pass shared by their backward passes, run batched (vmap)
or one after another (engine/seeded.py times both once per layer and keeps the faster), against a batch of
copies of the image (a forward and a backward per copy).  AlexNet fc6 (random init, 64 units) and
EfficientNet-Lite0 block 15 (its ImageNet weights, 64 channels at the centre), guided backprop with the edge
weights to the layer below, on one 224 px image.  All three give the same numbers; the script checks that.

Run: .venv/bin/python bench/shared.py
"""

from __future__ import annotations

import time

import torch
import torchvision

from sitegen.engine import passes, seeded
from sitegen.engine.capture import inference_state
from sitegen.model.registry import load_model


def timed(fn, repeats: int = 3) -> tuple[float, dict]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def copies(model, image, name, module, lower, neurons, position, batch) -> dict:
    """The engine's pass over copies of the image, each seeded with its own neuron."""
    parts = []
    for start in range(0, len(neurons), batch):
        rows = list(range(start, min(start + batch, len(neurons))))
        parts.append(passes._copies(model, image, name, module, [(neurons[k], position) for k in rows],
                                    [None] * len(rows), ["guided"], {"guided"}, {"edges": lower}, (), rows))
    return {kind: torch.cat([part[kind] for part in parts]) for kind in parts[0]}


def main() -> None:
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet().eval()
    lite = load_model("efficientnet_lite0", "default").module.eval()
    cases = [("AlexNet fc6", alexnet, "classifier.2", "features.11", 0),
             ("EfficientNet-Lite0 block15", lite, "_blocks.15", "_blocks.10", 24)]
    image = torch.randn(3, 224, 224)
    neurons = list(range(64))
    batch = passes.batch_for(torch.device("cpu"))
    print(f"{len(neurons)} neurons on one 224 px image, guided backprop and edges to the layer below, "
          f"{batch} per pass")
    for case in cases:
        compare(*case, image, neurons, batch)


def compare(label: str, model, name: str, below: str, position: int, image, neurons: list[int], batch: int) -> None:
    modules = dict(model.named_modules())
    module, lower = modules[name], modules[below]

    def run():
        return passes.gradients(model, image, name, module, neurons, [position] * len(neurons), ["guided"], batch,
                                lower=lower)
    times, results = {}, {}
    for way, looped in (("batched", False), ("one after another", True)):
        seeded._LOOPED[model] = {name: looped}
        times[way], results[way] = timed(run)
    with inference_state(model):
        times["copies"], results["copies"] = timed(
            lambda: copies(model, image, name, module, lower, neurons, position, batch))
    seeded._LOOPED.pop(model)
    run()
    chosen = "one after another" if seeded.looped(model, name) else "batched"
    want = results["copies"]
    difference = max(float((got[k] - want[k]).abs().max() / want[k].abs().max().clamp(min=1e-30))
                     for got in results.values() for k in want)
    print(f"  {label:<27} copies {times['copies']:5.2f} s, shared forward: batched {times['batched']:5.2f} s, "
          f"one after another {times['one after another']:5.2f} s; copies / the faster shared "
          f"{times['copies'] / min(times['batched'], times['one after another']):.2f}x, batched / one after "
          f"another {times['batched'] / times['one after another']:.2f}x (largest relative difference "
          f"{difference:.1e}); the engine chose {chosen}")


if __name__ == "__main__":
    main()
