"""An atlas at scale: AlexNet (random init), conv1 to conv5 and all 4,096 units of fc6, over generated
probe images, built cold in one process.

Prints the time of each stage, the peak resident memory, the site's files and size (per 1,000 neurons),
the render and link-check times, and a projection to 50,000 probe images: the stages whose work grows
with the probe set (activations and statistics) scaled by their measured cost per image, the others
(their work grows with the neurons and top_k) as measured.
Run: .venv/bin/python bench/scale.py [probe images, default 2000] [folder to keep it in]
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from sitegen.check import check_site
from sitegen.config import load
from sitegen.pipeline import runner
from sitegen.render import render
from sitegen.site import build_site_model
from sitegen.store.cache import Cache

CONFIG = """title = "AlexNet at scale"
[model]
name = "alexnet"
weights = "none"
[layers]
use = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6"]
[images]
featured = ["featured/img0.png"]
probe = ["probe"]
[compute]
top_k = 4
methods = ["guided"]
"""
PER_IMAGE = ("activations", "statistics")  # stages whose work grows with the probe set
TARGET = 50_000


def images(folder: Path, count: int, seed: int) -> None:
    """Smooth colour blobs on noise, 256 px (as the tests' generated images)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256]
    for index in range(count):
        cy, cx = rng.uniform(0, 256, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 40.0 ** 2))
        pixels = rng.normal(100, 30, (256, 256, 3)) + blob[..., None] * rng.uniform(0, 255, 3)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"img{index}.png")


def timed_stages() -> dict[str, float]:
    """Time every stage's runs (each stage is one object of ``runner.STAGES``)."""
    spent: dict[str, float] = {}
    for stage in runner.STAGES:
        def run(ws, state, work, advance, _run=stage.run, _name=stage.name):
            start = time.perf_counter()
            _run(ws, state, work, advance)
            spent[_name] = spent.get(_name, 0.0) + time.perf_counter() - start
        stage.run = run
    return spent


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as temp:
        root = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(temp)
        images(root / "probe", count, 0)
        images(root / "featured", 1, 1)
        (root / "atlas.toml").write_text(CONFIG)
        config, cache = load(root / "atlas.toml"), Cache(root / "cache")
        spent = timed_stages()
        start = time.perf_counter()
        manifest, _ = runner.compute(config, cache.root, quiet=True, log=lambda line: None)
        compute = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        neurons = sum(len(layer.neurons) for layer in manifest.layers)
        print(f"AlexNet (random init), conv1-conv5 and fc6: {neurons} neurons, {count} probe images, top 4, guided")
        for name, seconds in spent.items():
            if seconds >= 0.05:
                print(f"  {name:<32} {seconds:8.1f} s")
        print(f"  compute in all                   {compute:8.1f} s, peak resident memory {peak:.2f} GB", flush=True)
        start = time.perf_counter()
        render(build_site_model(manifest, config), root / "site", cache, log=lambda line: None)
        rendered = time.perf_counter() - start
        start = time.perf_counter()
        links, problems = check_site(root / "site")
        checked = time.perf_counter() - start
        files = [p for p in (root / "site").rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files) / 1e6
    print(f"  render {rendered:.1f} s, check {checked:.1f} s ({links} links, {len(problems)} broken)")
    print(f"  site: {len(files)} files, {size:.0f} MB, {size / neurons * 1000:.0f} MB per 1,000 neurons")
    grows = sum(spent.get(name, 0.0) for name in PER_IMAGE)
    projected = compute - grows + grows * TARGET / count
    print(f"  projected compute for {TARGET} probe images: {projected / 60:.0f} min on this machine "
          f"({grows / count * 1000:.1f} ms per image in the per-image stages)")


if __name__ == "__main__":
    main()
