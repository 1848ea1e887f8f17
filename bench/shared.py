"""Neurons that need the whole image (AlexNet fc6): one forward pass shared by a batched backward, against
a batch of copies of the image (a forward and a backward per copy), with and without the edge weights to
conv5 (whose true-gradient pass stops at conv5).  Both give the same numbers; the script checks that.

Run: .venv/bin/python bench/shared.py
"""

from __future__ import annotations

import time

import torch
import torchvision

from sitegen.engine import passes


def timed(fn, repeats: int = 3) -> tuple[float, dict]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    torch.manual_seed(0)
    model = torchvision.models.alexnet().eval()
    modules = dict(model.named_modules())
    image = torch.randn(3, 224, 224)
    neurons = list(range(64))
    batch = passes.batch_for(torch.device("cpu"))
    print(f"AlexNet fc6, {len(neurons)} units on one 224 px image, guided backprop, {batch} per pass")
    for edges in (False, True):
        lower = modules["features.11"] if edges else None

        def run(lower=lower):  # timed right here, in this iteration
            return passes.gradients(model, image, "classifier.2", modules["classifier.2"], neurons,
                                    [0] * len(neurons), ["guided"], batch, lower=lower)
        shared, got = timed(run)
        passes._UNSHARED.add(model)  # the engine's fallback for models without a batched backward
        copies, want = timed(run)
        passes._UNSHARED.discard(model)
        difference = max(float((got[k] - want[k]).abs().max() / want[k].abs().max().clamp(min=1e-30)) for k in got)
        what = "with edges to conv5" if edges else "pictures alone"
        print(f"  {what:<20} copies {copies:6.2f} s, shared forward {shared:6.2f} s: {copies / shared:.2f}x "
              f"(largest relative difference {difference:.1e})")


if __name__ == "__main__":
    main()
