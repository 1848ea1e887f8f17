"""Top-patch mining: throughput against a bare forward pass, and memory against the probe set's size.

Throughput: sitegen's mining (a forward pass truncated at the deepest layer,
each channel's maximum and its position for every layer, written to the
cache in chunks) against a bare forward pass of the same model truncated at
the same layer, over the same images through the same DataLoader.

Memory: the peak resident memory of the mining stage and the top-k selection,
each size in a fresh process, for 1,000 and 4,000 probe images; it should
grow with neurons x k, not with the probe set.

Images are generated (smooth colour fields with noise), nothing is downloaded.
Run: .venv/bin/python bench/mining.py
"""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

LAYERS = ["block2", "block4", "block7", "block10", "block15"]


def make_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:160, 0:160] / 160.0
    for index in range(count):
        a, b, c = rng.uniform(0, 6, 3)
        field = np.stack([np.sin(a * xx + b * yy), np.cos(b * xx - c * yy), np.sin(c * (xx + yy))], axis=-1)
        pixels = (field * 90 + 128 + rng.normal(0, 12, field.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:05d}.jpg", quality=90)


def write_config(folder: Path, count: int) -> Path:
    path = folder / "atlas.toml"
    path.write_text(f"""
[model]
name = "efficientnet_lite0"
weights = "default"
[layers]
use = {json.dumps(LAYERS)}
[images]
probe = ["images"]
[compute]
top_k = 9
batch_size = 32
""")
    return path


@contextlib.contextmanager
def workspace(config_path: Path, cache: Path):
    """The bench atlas's workspace, and its state with every neuron mapped."""
    from sitegen.config import load
    from sitegen.pipeline.stage import State
    from sitegen.pipeline.workspace import Workspace
    from sitegen.store.cache import Cache

    with Workspace.open(load(config_path), Cache(cache), quiet=True) as ws:
        yield ws, State(mapped={layer.name: tuple(range(layer.count)) for layer in ws.layers})


def mine(ws, state) -> None:
    from sitegen.pipeline.stages.activations import ActivationsStage

    stage = ActivationsStage()
    stage.run(ws, state, stage.plan(ws, state), lambda n: None)


def mine_only(config_path: Path, cache: Path) -> None:
    """In a fresh process: mine and select the top k; print the peak resident and GPU memory in MiB."""
    import torch

    from sitegen.pipeline.stages.selection import top_k

    with workspace(config_path, cache) as (ws, state):
        mine(ws, state)
        for layer in ws.layers:
            top_k(ws, layer, state.mapped[layer.name])
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, gpu)


def throughput(config_path: Path, cache: Path) -> tuple[float, float]:
    with workspace(config_path, cache) as (ws, state):
        return compare(ws, state, cache)


def compare(ws, state, cache: Path) -> tuple[float, float]:
    import torch

    from sitegen.engine.capture import capture, inference_state

    model = ws.model.module
    deepest = {ws.layers[-1].path: ws.modules[ws.layers[-1].path]}

    def bare() -> None:
        with inference_state(model), torch.no_grad():
            for pixels in ws.loader(list(ws.probe)):
                capture(model, ws.normalise(pixels), deepest)
            if torch.cuda.is_available():
                torch.cuda.synchronize()

    def mining() -> None:
        for path in Path(cache).glob("acts"):
            for entry in path.rglob("*.zip"):
                entry.unlink()
        mine(ws, state)

    times = {"bare": [], "mining": []}
    for _ in range(2):  # alternate, best of two each
        for name, call in (("bare", bare), ("mining", mining)):
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return len(ws.probe) / min(times["bare"]), len(ws.probe) / min(times["mining"])


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--mine-only":
        mine_only(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        small, large = root / "small", root / "large"
        make_images(small / "images", 1000)
        make_images(large / "images", 4000)
        import torch
        print("on " + (torch.cuda.get_device_name() if torch.cuda.is_available() else "the CPU"))
        bare, mining = throughput(write_config(small, 1000), root / "cache-throughput")
        print(f"throughput, 1,000 images: bare forward {bare:.1f} images/s, mining {mining:.1f} images/s, "
              f"ratio {mining / bare:.2f}")
        peaks = {}
        for name, folder in (("1,000", small), ("4,000", large)):
            out = subprocess.run([sys.executable, __file__, "--mine-only", str(write_config(folder, 0)),
                                  str(root / f"cache-{folder.name}")], check=True, capture_output=True, text=True)
            peaks[name] = [float(word) for word in out.stdout.strip().splitlines()[-1].split()]
        for index, kind in enumerate(["peak memory", "peak GPU memory"]):
            small_peak, large_peak = peaks["1,000"][index], peaks["4,000"][index]
            if large_peak:
                print(f"{kind}: 1,000 images {small_peak:.0f} MiB, 4,000 images {large_peak:.0f} MiB, "
                      f"ratio {large_peak / small_peak:.2f}")


if __name__ == "__main__":
    main()
