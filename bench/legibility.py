"""How legible a built atlas's pictures are: can a reader see anything in them?

For each layer, over the guided-backprop pictures a reader is shown (every
neuron's top patches and its zooms on the featured images, or its whole
pictures where a layer has no zoom), the median share of pixels more than 16
levels from mid-grey, and the median 99th percentile of |pixel - 128|.  A flat
grey square with a speck scores near 0 on both.  Goal: share >= 0.20 and 99th
percentile >= 80 in every layer (a layer whose patches and featured pictures are
by other methods, or maps, shows none).

The pictures are found through the site's manifest.json (each top patch's
"guided" picture, each neuron's "featured" pictures), each the part of its
sheet that a page shows (``sheet.webp#xywh=x,y,w,h``) or, in a site made
before pictures were packed into sheets, a file of its own; a site made
before those fields existed is read by its file names.

Run: .venv/bin/python bench/legibility.py [SITE]   (default: site/)
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

GOAL_SHARE, GOAL_P99 = 0.20, 80.0


@functools.lru_cache(maxsize=16)  # a neuron's pictures are in one sheet
def opened(file: str) -> Image.Image:
    return Image.open(file).convert("RGB")


def measure(path: Path) -> tuple[float, float]:
    """(share of pixels more than 16 levels from grey, 99th percentile of |pixel - 128|), over all channels,
    of a picture: a file, or ``sheet.webp#xywh=x,y,w,h``, the part of a sheet."""
    file, _, rect = str(path).partition("#xywh=")
    picture = opened(file)
    if rect:
        x, y, w, h = (int(v) for v in rect.split(","))
        picture = picture.crop((x, y, x + w, y + h))
    offset = np.abs(np.asarray(picture, dtype=np.int16) - 128).max(axis=2)
    return float((offset > 16).mean()), float(np.percentile(offset, 99))


def shown(site: Path, layer: dict) -> list[Path]:
    """The guided pictures the layer's pages show: top patches, and zooms (or whole pictures) on the
    featured images."""
    files = []
    for neuron in layer["neurons"]:
        files += [site / p["guided"] for p in neuron["top_patches"] if "guided" in p]
        files += [site / (f["zoom"] or f["picture"]) for f in neuron.get("featured", []) if f["method"] == "guided"]
        if "photo" not in (neuron["top_patches"] or [{}])[0]:  # an older site: by file name
            folder = site / "assets" / "patches" / layer["name"] / str(neuron["neuron"])
            files += sorted(p for p in folder.glob("*-gb.webp") if p.name[0].isdigit())
            vis = site / "assets" / "vis" / layer["name"] / str(neuron["neuron"])
            files += sorted(vis.glob("*-guided-box.webp")) or sorted(vis.glob("*-guided.webp"))
    return files


def main() -> None:
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "site")
    manifest = json.loads((site / "manifest.json").read_text())
    print(f"{'layer':<10} {'pictures':>8} {'share > 16':>10} {'p99 |x-128|':>12}  goal: share >= {GOAL_SHARE}, "
          f"p99 >= {GOAL_P99:g}")
    met = True
    for layer in manifest["layers"]:
        values = np.array([measure(path) for path in shown(site, layer)])
        if not len(values):  # its patches and its featured pictures are by other methods, or maps
            print(f"{layer['name']:<10} {0:>8}  no guided-backprop picture shown (its patches: {layer.get('patches')})")
            continue
        share, p99 = np.median(values[:, 0]), np.median(values[:, 1])
        ok = share >= GOAL_SHARE and p99 >= GOAL_P99
        met &= ok
        print(f"{layer['name']:<10} {len(values):>8} {share:>10.3f} {p99:>12.1f}  {'met' if ok else 'NOT met'}")
    print("goal met in every layer" if met else "goal not met")


if __name__ == "__main__":
    main()
