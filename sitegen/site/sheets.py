"""Pictures packed into sheets: one image file holds many of the site's pictures, each shown by position.

A static host counts files, and an atlas is mostly small pictures: a neuron's pictures on the featured images,
its top patches, its maps.  So each picture goes into a *sheet* (one image file) with the others shown
together: a neuron's own pictures in its sheet, a layer's tiles in the layer's, its neurons' thumbnails on a
featured image in one sheet per layer and image, an image's tree in the image's.  A page shows a picture as an
inline SVG whose ``viewBox`` is the picture's rectangle of its sheet, with the picture's own alt text (its
``aria-label``) and title; the sheet itself is an ``image`` at the page's end that each picture ``use``s, so
that a page names a sheet once; nothing needs JavaScript.  ``manifest.json`` names a picture as its sheet with
a W3C media fragment, ``sheet.avif#xywh=x,y,w,h``.

Pictures are placed as they are asked for, on shelves from the left, each with a gutter of its own edge pixels
around it, so that a browser smoothing a picture never mixes in its neighbour.  A sheet that would grow
taller than ``HEIGHT`` goes on in another file.  The cache keeps every picture exactly, and a sheet encodes it
once: small gradient pictures (shown enlarged) and optimized images in a lossless WebP sheet of their own
(``base~lossless.webp``), the rest (photos cut to a box, maps, larger pictures) in a lossy AVIF one
(``base.avif``) that keeps colour at full resolution (4:4:4).  A gradient picture is mostly single pixels of
colour: a codec that halves the resolution of colour, as lossy WebP and JPEG do, smears them towards grey, and
quality does little against that (in bench/legibility.py, WebP took 0.02 to 0.05 off the shares of block 10 and
above at any quality from 60 to 90), while AVIF at full colour keeps the shares of WebP at quality 90, or
better, at 45% to 60% of its size (at quality 65; tuned for SSIM, quality 52 keeps more in 6% fewer bytes).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..errors import SitegenError
from ..images import SMALL
from ..store import members
from ..store.cache import Cache, make_key

WIDTH = 1024  # of a sheet, in pixels (wider where one picture is)
HEIGHT = 4096  # a sheet that would grow taller goes on in another file: a browser decodes a sheet whole
GUTTER = 2  # pixels of a picture's edge repeated around it
FILL = 128  # the grey of a sheet where no picture is
LOSSLESS = {"format": "WEBP", "lossless": True, "method": 4}  # Pillow's options for a lossless sheet ...
# ... and a lossy one, at a quality; libaom tuned for SSIM rather than PSNR keeps more of a gradient picture's
# faint pixels in fewer bytes (bench/sheets.py)
LOSSY = {"format": "AVIF", "subsampling": "4:4:4", "speed": 6, "advanced": {"tune": "ssim"}}
QUALITY = 52  # by default ([site] quality)

PICTURES = (".webp", ".png", ".jpg")  # the members of cache entries that are pictures
Measure = Callable[[str, str, str], tuple[int, int, bool]]  # (kind, key, member) -> (width, height, lossless)


@dataclass(frozen=True)
class Member:
    """A picture in the cache: a member of an entry."""

    kind: str
    key: str
    member: str


@dataclass(eq=False)
class Sheet:
    """One image file of pictures; ``path`` from the site root."""

    path: str
    lossless: bool = False
    quality: int = QUALITY  # of a lossy sheet
    width: int = WIDTH
    height: int = 0
    members: list[Member] = field(default_factory=list)
    rects: list[tuple[int, int, int, int]] = field(default_factory=list)  # x, y, width, height of each
    _shelf: tuple[int, int, int] = (0, 0, 0)  # the open shelf: its top, the next free x, its height

    @property
    def encoding(self) -> dict:
        """Pillow's options for this sheet (its format among them)."""
        return LOSSLESS if self.lossless else {**LOSSY, "quality": self.quality}

    def place(self, width: int, height: int) -> tuple[int, int] | None:
        """Where a picture of this size goes (its top left, inside its gutter), or None if the sheet is full."""
        cell_w, cell_h = width + 2 * GUTTER, height + 2 * GUTTER
        top, x, shelf = self._shelf
        if x + cell_w > self.width and x > 0:  # a new shelf below this one
            top, x, shelf = top + shelf, 0, 0
        if self.members and top + max(shelf, cell_h) > HEIGHT:
            return None
        self.width = max(self.width, cell_w)
        shelf = max(shelf, cell_h)
        self._shelf = (top, x + cell_w, shelf)
        self.height = max(self.height, top + shelf)
        return x + GUTTER, top + GUTTER


@dataclass(frozen=True, eq=False)
class Pic:
    """A picture as pages show it: its sheet and its rectangle there."""

    sheet: Sheet
    x: int
    y: int
    width: int
    height: int

    def fragment(self) -> str:
        """The picture as a media fragment of its sheet: ``path#xywh=x,y,w,h``."""
        return f"{self.sheet.path}#xywh={self.x},{self.y},{self.width},{self.height}"


class Packer:
    """Places pictures into sheets named by a base path (``assets/layers/conv/3`` makes
    ``assets/layers/conv/3.avif``, then ``...3~2.avif`` when that is full, and its lossless pictures
    ``...3~lossless.webp``, ``...3~lossless2.webp``: no name of a layer or an image holds a ~); the same picture
    asked for again for the same sheet is the same :class:`Pic`."""

    def __init__(self, measure: Measure, quality: int = QUALITY) -> None:
        self.measure = measure
        self.quality = quality
        self.sheets: list[Sheet] = []
        self._open: dict[tuple[str, bool], Sheet] = {}  # (base, lossless) -> its last sheet
        self._count: dict[tuple[str, bool], int] = {}  # (base, lossless) -> its sheets so far
        self._placed: dict[tuple[str, Member], Pic] = {}

    def add(self, base: str, member: Member, photo: bool = False) -> Pic:
        """Place a picture (once per sheet); a ``photo`` (a photo cut to a box, a map over a photo) goes into the
        lossy sheet whatever its size: it has no single pixels of colour to keep."""
        pic = self._placed.get((base, member))
        if pic is not None:
            return pic
        width, height, lossless = self.measure(member.kind, member.key, member.member)
        lossless = lossless and not photo
        which = (base, lossless)
        sheet = self._open.get(which)
        spot = sheet.place(width, height) if sheet else None
        if sheet is None or spot is None:
            count = self._count[which] = self._count.get(which, 0) + 1
            name = f"{base}~lossless" if lossless else base
            spill = f"{name}{count}" if lossless else f"{name}~{count}"
            sheet = self._open[which] = Sheet(f"{name if count == 1 else spill}.{'webp' if lossless else 'avif'}",
                                              lossless, self.quality)
            self.sheets.append(sheet)
            spot = sheet.place(width, height)
            assert spot is not None  # an empty sheet takes any picture
        sheet.members.append(member)
        sheet.rects.append((*spot, width, height))
        pic = self._placed[(base, member)] = Pic(sheet, spot[0], spot[1], width, height)
        return pic


def made(sheet: Sheet, read: Callable[[Member], bytes], cache: Cache) -> bytes:
    """The sheet's image, composed once: kept in the cache under a key of what it holds and where (the keys of
    the cache's entries name what they hold), so that a render that changes no picture composes nothing."""
    key = make_key("sheet", sheet.encoding, GUTTER, FILL, sheet.width, sheet.height,
                   [[m.kind, m.key, m.member, *rect] for m, rect in zip(sheet.members, sheet.rects)])
    kept = cache.get(members.SHEETS, key)
    if kept and members.SHEET in kept:
        return kept[members.SHEET]
    data = compose(sheet, read)
    try:
        cache.put(members.SHEETS, key, {members.SHEET: data})
    except OSError:
        pass  # a cache this user cannot write to: composed again next time
    return data


def encodable(sheets: list[Sheet]) -> None:
    """An error naming a sheet whose format this Pillow cannot write as sitegen does (AVIF before Pillow 11.3, or
    with an AV1 encoder other than libaom, which Pillow's wheels hold, that has no ``tune``): one pixel is encoded
    each way the sheets are."""
    tried: set[str] = set()
    for sheet in sheets:
        fmt = sheet.encoding["format"]
        if fmt in tried:
            continue
        try:
            Image.new("RGB", (1, 1)).save(io.BytesIO(), **sheet.encoding)
        except KeyError:  # no writer of the format at all
            raise SitegenError(f"this Pillow ({Image.__version__}) cannot write {fmt}, the format of {sheet.path}; "
                               f"nothing was written: pip install 'pillow>=11.3'") from None
        except (OSError, ValueError) as error:  # a writer that refuses the options: another encoder's build
            fix = ("pip install --force-reinstall --only-binary=:all: 'pillow>=11.3' (its wheels' AVIF encoder is "
                   "libaom)") if fmt == "AVIF" else "pip install --force-reinstall --only-binary=:all: pillow"
            raise SitegenError(f"this Pillow ({Image.__version__}) cannot write {fmt} as sitegen does ({error}), "
                               f"the format of {sheet.path}; nothing was written: {fix}") from None
        tried.add(fmt)


def compose(sheet: Sheet, read: Callable[[Member], bytes]) -> bytes:
    """The sheet's image: every picture at its place, its gutter its own edge."""
    canvas = np.full((sheet.height, sheet.width, 3), FILL, dtype=np.uint8)
    for member, (x, y, width, height) in zip(sheet.members, sheet.rects):
        pixels = np.asarray(Image.open(io.BytesIO(read(member))).convert("RGB"))
        if pixels.shape[:2] != (height, width):
            raise ValueError(f"{member.kind}/{member.key} {member.member} is {pixels.shape[1]} x {pixels.shape[0]} "
                             f"px, not the {width} x {height} px it was measured")
        canvas[y - GUTTER:y + height + GUTTER, x - GUTTER:x + width + GUTTER] = np.pad(
            pixels, ((GUTTER, GUTTER), (GUTTER, GUTTER), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, **sheet.encoding)
    return buffer.getvalue()


def measurer(cache: Cache) -> Measure:
    """The size of a picture in ``cache`` and whether it is shown exactly (:func:`shape`), read from its file's
    header (each entry read once); an error naming the entry where it is absent, so that nothing is written."""
    sizes: dict[tuple[str, str], dict[str, tuple[int, int, bool]]] = {}

    def measure(kind: str, key: str, member: str) -> tuple[int, int, bool]:
        if (kind, key) not in sizes:
            entry = cache.get(kind, key) or {}
            sizes[(kind, key)] = {name: shape(data) for name, data in entry.items() if name.endswith(PICTURES)}
        found = sizes[(kind, key)].get(member)
        if found is None:
            raise SitegenError(f"cache entry {kind}/{key} is missing or damaged (it has no {member}); nothing was "
                               f"written: run `sitegen build` to compute it again")
        return found

    return measure


def shape(data: bytes) -> tuple[int, int, bool]:
    """A stored picture's width and height, and whether a page shows it exactly (in a lossless sheet): an optimized
    image (PNG), or a picture at most SMALL pixels a side, mostly single pixels of colour that a page shows
    enlarged, each pixel a block, and so any codec's flaws with them."""
    width, height = Image.open(io.BytesIO(data)).size
    return width, height, data.startswith(b"\x89PNG") or max(width, height) <= SMALL
