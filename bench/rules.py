"""What the ReLU rules cost: a forward and backward pass of the default model with each rule in force,
against the same passes with the model's own ReLUs, measured interleaved in one run.

The passes are those of a featured picture: batch 8 at 224 px, the backward from every logit to the
input.  Prints each rule's time over the plain passes' (goal for guided: at most 1.15 on a CPU) and the
largest difference between the two gradients of the plain rule (the true gradient both ways).
Run: .venv/bin/python bench/rules.py [rounds]
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from sitegen.engine.rules import backward_rule, relu_rules
from sitegen.model.registry import load_model

BATCH, ROUNDS = 8, 7


def timed(model: torch.nn.Module, x: torch.Tensor, method: str | None) -> tuple[float, torch.Tensor]:
    """Seconds for one forward and backward pass (under ``method``'s rule, or the plain ReLUs for None), and
    the input's gradient."""
    x = x.detach().requires_grad_(True)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    if method is None:
        model(x).sum().backward()
    else:
        with relu_rules(), backward_rule(method):
            model(x).sum().backward()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, x.grad


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model("efficientnet_lite0", "default")
    model = loaded.module.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    crop = loaded.preprocess.crop
    x = torch.randn(BATCH, 3, crop, crop, generator=torch.Generator().manual_seed(0)).to(device)
    methods = [None, "guided", "deconv", "gradient"]
    for method in methods:  # warm up
        timed(model, x, method)
    times: dict[str | None, list[float]] = {m: [] for m in methods}
    for _ in range(rounds):
        for method in methods:
            times[method].append(timed(model, x, method)[0])
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    plain = statistics.median(times[None])
    print(f"EfficientNet-Lite0, batch {BATCH} at {crop} px, forward and backward to the input, {name}, "
          f"median of {rounds} interleaved rounds")
    print(f"  plain ReLUs  {plain:.3f} s")
    for method in methods[1:]:
        ratio = statistics.median(t / p for t, p in zip(times[method], times[None]))
        print(f"  {method:<12} {statistics.median(times[method]):.3f} s   {ratio:.2f} x plain")
    difference = (timed(model, x, "gradient")[1] - timed(model, x, None)[1]).abs().max().item()
    print(f"  the gradient rule against the plain passes: largest difference {difference:.1e}")


if __name__ == "__main__":
    main()
