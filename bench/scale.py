"""An atlas at scale: AlexNet (random init), conv1 to conv5 and all 4,096 units of fc6 (and of fc7, with
"fc7"), over generated probe images, built cold in one process.

Prints the time of each stage, the peak resident memory, the site's files and size (per 1,000 neurons)
before and after pictures were packed into sheets (before: the same pages with every picture a file of
its own, as sitegen wrote them until then, each encoded as its sheet encodes it), the
static hosts' limits against the site, the render and link-check times, and a projection to 50,000 probe
images: the stages whose work grows with the probe set (activations and statistics) scaled by their
measured cost per image, the others (their work grows with the neurons and top_k) as measured.
Run: .venv/bin/python bench/scale.py [probe images, default 2000] [folder to keep it in] [fc7]
"""

from __future__ import annotations

import io
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from sitegen.check import HOSTS, against, check_site, footprint
from sitegen.config import load
from sitegen.pipeline import runner
from sitegen.render import render
from sitegen.site import build_site_model
from sitegen.site.model import SiteModel
from sitegen.site.sheets import measurer
from sitegen.store.cache import Cache

CONFIG = """title = "AlexNet at scale"
[model]
name = "alexnet"
weights = "none"
[layers]
use = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6"LAYERS]
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


def one_file_each(site: SiteModel, cache: Cache, written: Path) -> tuple[int, int]:
    """(files, bytes) of the site with every picture a file of its own: its pages and other files as
    written, and each distinct picture of its sheets encoded alone as its sheet encodes it."""
    sheets = {sheet.path for sheet in site.sheets}
    kept = [p for p in written.rglob("*") if p.is_file() and p.relative_to(written).as_posix() not in sheets]
    pictures = {member: sheet.encoding for sheet in site.sheets for member in sheet.members}
    size = sum(p.stat().st_size for p in kept)
    for member, encoding in pictures.items():
        entry = cache.get(member.kind, member.key) or {}
        buffer = io.BytesIO()
        Image.open(io.BytesIO(entry[member.member])).convert("RGB").save(buffer, **encoding)
        size += buffer.tell()
    return len(kept) + len(pictures), size


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    fc7 = sys.argv[3:4] == ["fc7"]
    with tempfile.TemporaryDirectory() as temp:
        root = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(temp)
        images(root / "probe", count, 0)
        images(root / "featured", 1, 1)
        (root / "atlas.toml").write_text(CONFIG.replace("LAYERS", ', "fc7"' if fc7 else ""))
        config, cache = load(root / "atlas.toml"), Cache(root / "cache")
        spent = timed_stages()
        start = time.perf_counter()
        manifest, _ = runner.compute(config, cache.root, quiet=True, log=lambda line: None)
        compute = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        neurons = sum(len(layer.neurons) for layer in manifest.layers)
        print(f"AlexNet (random init), conv1-conv5, fc6{' and fc7' if fc7 else ''}: {neurons} neurons, {count} probe "
              f"images, top 4, guided")
        for name, seconds in spent.items():
            if seconds >= 0.05:
                print(f"  {name:<32} {seconds:8.1f} s")
        print(f"  compute in all                   {compute:8.1f} s, peak resident memory {peak:.2f} GB", flush=True)
        start = time.perf_counter()
        site = build_site_model(manifest, config, measurer(cache))
        render(site, root / "site", cache, log=lambda line: None)
        rendered = time.perf_counter() - start
        start = time.perf_counter()
        links, problems = check_site(root / "site")
        checked = time.perf_counter() - start
        before = one_file_each(site, cache, root / "site")
        used = footprint(root / "site")
    print(f"  render {rendered:.1f} s, check {checked:.1f} s ({links} links, {len(problems)} broken)")
    mapped = sum(len(layer.neurons) for layer in manifest.layers)
    for when, (files, size) in (("before", before), ("after", (used.files, used.size))):
        print(f"  site {when:<6} {files:>7,} files ({files / mapped:.1f} per neuron), {size / 1e6:6.0f} MB, "
              f"{size / 1e6 / mapped * 1000:5.1f} MB per 1,000 neurons")
    print(f"  goal: at most {2 * mapped + 1000:,} files (2 per neuron and 1,000), {40 * mapped / 1000:.0f} MB "
          f"(40 per 1,000 neurons)")
    for name in ("cloudflare", "github"):
        print(f"  {HOSTS[name].title}: " + "; ".join(line.strip() for _, line in against(used, HOSTS[name])))
    grows = sum(spent.get(name, 0.0) for name in PER_IMAGE)
    projected = compute - grows + grows * TARGET / count
    print(f"  projected compute for {TARGET} probe images: {projected / 60:.0f} min on this machine "
          f"({grows / count * 1000:.1f} ms per image in the per-image stages)")


if __name__ == "__main__":
    main()
