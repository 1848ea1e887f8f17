"""What the lossy sheets' encoding costs and keeps, on the default atlas.

For every fourth lossy sheet of the site (the neurons' own, the layers' tiles and photos, their neurons on each
featured image, the trees), composed from the cache's exact pictures and encoded each way: the seconds the
encoding takes beyond composing, the megabytes, and per layer the legibility share of bench/legibility.py (the
median share of pixels more than 16 levels from grey) over the guided-backprop patches those sheets hold,
beside the share of the exact pictures, and the PSNR of the sheets (mean over sheets, in dB).  WebP at quality
90 is how sheets were encoded earlier; AVIF keeps colour at full resolution (4:4:4), at speed 6: at quality 65
with libaom's default tuning (for PSNR) before, tuned for SSIM now.
Run: .venv/bin/python bench/sheets.py   (the atlas is computed first where the cache lacks it)
"""

from __future__ import annotations

import functools
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from sitegen.config import load
from sitegen.pipeline import runner
from sitegen.site import build_site_model
from sitegen.site import sheets as packing
from sitegen.site.sheets import Member, compose, measurer
from sitegen.store.cache import Cache

ENCODINGS = {
    "WebP, quality 90 (earlier)": {"format": "WEBP", "quality": 90, "method": 4},
    "AVIF 4:4:4, quality 65 (before)": {"format": "AVIF", "quality": 65, "subsampling": "4:4:4", "speed": 6},
    **{f"AVIF 4:4:4, SSIM, quality {quality}{' (now)' if quality == 52 else ''}": {
        "format": "AVIF", "quality": quality, "subsampling": "4:4:4", "speed": 6, "advanced": {"tune": "ssim"}}
       for quality in (52, 51, 40)},
}


def share(pixels: np.ndarray) -> float:
    return float((np.abs(pixels.astype(np.int16) - 128).max(axis=2) > 16).mean())


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    config, cache = load(root / "content" / "atlas.toml"), Cache(root / ".cache")
    manifest, _ = runner.compute(config, cache.root, quiet=True, log=lambda line: None)
    site = build_site_model(manifest, config, measurer(cache))
    entry = functools.lru_cache(maxsize=64)(cache.get)

    def read(member: Member) -> bytes:
        return entry(member.kind, member.key)[member.member]

    sheets = [sheet for sheet in site.sheets if not sheet.lossless][::4]
    layer_of = {sheet.path: sheet.path.split("/")[2] if "/layers/" in sheet.path else "" for sheet in sheets}
    canvases, lossy = [], dict(packing.LOSSY)
    start = time.perf_counter()
    packing.LOSSY.clear()
    packing.LOSSY["format"] = "BMP"  # composed once, unencoded, so that each encoding's time is its own
    try:
        for sheet in sheets:
            canvases.append(np.asarray(Image.open(io.BytesIO(compose(sheet, read))).convert("RGB")))
    finally:
        packing.LOSSY.clear()
        packing.LOSSY.update(lossy)
    print(f"{len(sheets)} of the default atlas's {sum(not s.lossless for s in site.sheets)} lossy sheets, composed "
          f"in {time.perf_counter() - start:.1f} s")
    guided = [[rect for member, rect in zip(sheet.members, sheet.rects) if member.member.endswith("-gb.webp")]
              for sheet in sheets]
    order = [layer.name for layer in manifest.layers]
    layers = sorted({layer_of[sheet.path] for sheet, found in zip(sheets, guided) if layer_of[sheet.path] and found},
                    key=order.index)

    def shares(decoded: list[np.ndarray]) -> dict[str, float]:
        by_layer: dict[str, list[float]] = {layer: [] for layer in layers}
        for i, found in enumerate(guided):
            layer = layer_of[sheets[i].path]
            for x, y, w, h in found if layer in by_layer else []:
                by_layer[layer].append(share(decoded[i][y:y + h, x:x + w]))
        return {layer: float(np.median(values)) if values else float("nan") for layer, values in by_layer.items()}

    print("share: of the guided-backprop patches in those sheets, per layer")
    print(f"{'encoding':<40} {'seconds':>8} {'MB':>6} {'PSNR':>6}  " + " ".join(f"{name:>7}" for name in layers))
    exact = shares(canvases)
    print(f"{'exact pictures':<40} {'':>8} {'':>6} {'':>6}  " + " ".join(f"{exact[name]:7.3f}" for name in layers))
    for name, options in ENCODINGS.items():
        decoded, size, spent, psnr = [], 0, 0.0, []
        for canvas in canvases:
            buffer, image = io.BytesIO(), Image.fromarray(canvas)
            start = time.perf_counter()
            image.save(buffer, **options)
            spent += time.perf_counter() - start
            size += buffer.tell()
            buffer.seek(0)
            decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
            error = np.mean((decoded[-1].astype(np.float64) - canvas) ** 2)
            psnr.append(10 * np.log10(255 ** 2 / error) if error else np.inf)
        got = shares(decoded)
        print(f"{name:<40} {spent:8.1f} {size / 1e6:6.1f} {np.mean(psnr):6.2f}  "
              + " ".join(f"{got[layer]:7.3f}" for layer in layers), flush=True)


if __name__ == "__main__":
    main()
