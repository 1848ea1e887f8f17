import html
import posixpath
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

# The [model] table of the tiny atlases the tests build: a small CNN (tests/tinynet.py) at 32 px.
TINY_MODEL = """[model]
name = "tinynet:build"
weights = "none"
resize = 40
crop = 32
"""


def write_images(folder: Path, count: int, size=(96, 80), seed: int = 0) -> list[Path]:
    """Generated test images: smooth colour blobs on noise, different sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        h, w = size[1] + 8 * index, size[0]
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (w / 5) ** 2))
        colour = rng.uniform(0, 255, 3)
        pixels = rng.normal(100, 30, (h, w, 3)) + blob[..., None] * colour
        path = folder / f"img{index}.png"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def images(tmp_path):
    return write_images(tmp_path / "imgs", 4)


PICTURE = re.compile(r'<svg class="pic[^"]*" viewBox="(\d+) (\d+) (\d+) (\d+)" role="img" aria-label="([^"]*)"[^>]*>'
                     r'(?:<title>[^<]*</title>)?<use href="#([^"]+)"/></svg>')
SHEET = re.compile(r'<image id="([^"]+)" href="([^"]+)" width="\d+" height="\d+"/>')


def sheets_of(page_text: str) -> dict[str, str]:
    """The sheets a page's pictures use: id -> the sheet's href from the page."""
    return dict(SHEET.findall(page_text))


def pictures_on(site: Path, page: str) -> list[tuple[str, tuple[int, int, int, int], str]]:
    """The pictures of sheets that a page of a built site shows: (the sheet's path from the site root, its
    rectangle there, its alt text), as ``sheet#xywh=`` fragments name them in manifest.json."""
    out, text = [], (site / page).read_text(encoding="utf-8")
    hrefs = sheets_of(text)
    for x, y, w, h, alt, ident in PICTURE.findall(text):
        sheet = posixpath.normpath(posixpath.join(posixpath.dirname(page), hrefs[ident]))
        out.append((sheet, (int(x), int(y), int(w), int(h)), html.unescape(alt)))
    return out


def fragment(name: str) -> tuple[str, tuple[int, int, int, int]]:
    """``sheet#xywh=x,y,w,h`` as (sheet, rectangle)."""
    sheet, _, rect = name.partition("#xywh=")
    x, y, w, h = (int(v) for v in rect.split(","))
    return sheet, (x, y, w, h)
