"""The default atlas's compute against the model's own passes in it, in one cold build.

Every forward pass of the model (each call of its forward, also one the engine stops at a layer) and every
backward pass (each ``torch.autograd.grad`` call and ``Tensor.backward``) is counted and timed where it runs;
on a GPU the device is synchronised at both ends of each, so a pass's time is its own.  Everything else in
the compute is overhead: loading and preparing images, planning, cutting and scaling pictures, statistics,
encoding, writing the cache.  The ratio is the whole compute's time over the passes' time (1.0: the build
waits on nothing but the model).
Run: .venv/bin/python bench/overhead.py [config, default content/atlas.toml]   (as long as a cold build)
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
from pathlib import Path

import torch

from sitegen.config import load
from sitegen.pipeline import runner, workspace

ROOT = Path(__file__).resolve().parent.parent


class Passes:
    """Counts and times the calls of the functions it wraps, by kind."""

    def __init__(self) -> None:
        self.seconds = {"forward": 0.0, "backward": 0.0}
        self.calls = {"forward": 0, "backward": 0}
        self.depth = 0  # a pass inside a pass (a forward's hook, a backward's) counts once

    def wrap(self, kind: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            sync()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync()
                self.seconds[kind] += time.perf_counter() - start
                self.calls[kind] += 1
                self.depth -= 1
        return timed


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    config = load(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "content" / "atlas.toml")
    passes = Passes()
    loader = workspace.load_configured_model

    def load_timed(config):
        loaded = loader(config)
        loaded.module.forward = passes.wrap("forward", loaded.module.forward)
        return loaded

    workspace.load_configured_model = load_timed
    torch.autograd.grad = passes.wrap("backward", torch.autograd.grad)
    torch.Tensor.backward = passes.wrap("backward", torch.Tensor.backward)
    with tempfile.TemporaryDirectory() as temp:
        start = time.perf_counter()
        runner.compute(config, Path(temp) / "cache", quiet=True, log=lambda line: None)
        compute = time.perf_counter() - start
    model = sum(passes.seconds.values())
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"{config.title}, cold compute on {device}: {compute:.1f} s")
    for kind in ("forward", "backward"):
        print(f"  {kind:<8} passes: {passes.calls[kind]:6d} calls, {passes.seconds[kind]:7.1f} s")
    print(f"  everything else: {compute - model:.1f} s; compute / the model's passes = {compute / model:.2f}")


if __name__ == "__main__":
    main()
