"""Image files -> items (an image file seen through one view) -> model-sized pixels.

No torch here: the site half uses :func:`cut` and the photos too.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import io
import os
import re
import stat
import warnings
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import SitegenError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
ANCHORS = {"c": "centre", "tl": "top left", "tr": "top right", "bl": "bottom left", "br": "bottom right"}
INTERPOLATION = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                 "bicubic": Image.Resampling.BICUBIC}
MAX_PIXELS = 100_000_000  # larger images are refused (a decompression bomb can claim gigabytes)


@dataclass(frozen=True)
class View:
    zoom: float = 1.0
    anchor: str = "c"
    flip: bool = False

    @property
    def spec(self) -> str:
        return f"z{self.zoom:g}-{self.anchor}" + ("-flip" if self.flip else "")

    def describe(self) -> str:
        parts = [] if self.zoom == 1 else [f"zoom {self.zoom:g} at the {ANCHORS[self.anchor]}"]
        if self.flip:
            parts.append("mirrored")
        return ", ".join(parts) or "whole image"


@dataclass(frozen=True)
class Item:
    """One image file seen through one view."""

    path: Path
    name: str  # the file's path relative to the config folder, for people
    digest: str  # sha256 of the file's bytes
    view: View = View()
    label: str = ""  # its class, in a labelled probe set

    @property
    def id(self) -> str:
        return f"{self.digest[:16]}-{self.view.spec}"


def probe_views(flip: bool, zooms: tuple[float, ...]) -> list[View]:
    views = []
    for zoom in zooms:
        anchors = ["c"] if zoom == 1 else list(ANCHORS)
        for anchor in anchors:
            views.append(View(zoom, anchor, False))
            if flip:
                views.append(View(zoom, anchor, True))
    return views


MAX_FILES = 100_000  # a pattern that finds more is cut short, with a note


def _name_pattern(part: str) -> str:
    """One name of a glob (``*``, ``?``, ``[...]``) as a regex; wildcards match no leading dot, as in a shell."""
    regex = r"(?!\.)" if part[:1] in "*?[" else ""
    i = 0
    while i < len(part):
        char, end = part[i], part.find("]", i + 2) if part[i] == "[" else -1
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif end > 0:  # a class: "!" negates it as in a shell; anything else is literal but ranges
            inner = part[i + 1:end]
            negated = inner.startswith("!")
            inner = re.sub(r"([\\^\[&~|])", r"\\\1", inner[1:] if negated else inner)
            regex += "[" + ("^" if negated else "") + inner + "]"
            i = end
        else:
            regex += re.escape(char)
        i += 1
    return regex


def _pattern(text: str) -> re.Pattern:
    """A glob with ``**`` for any folders as a regex on a path relative to where its wildcards start."""
    parts = text.split("/")
    pieces = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            pieces.append(r"(?:(?!\.)[^/]+/)*" + (r"(?!\.)[^/]+" if last else ""))
        else:
            pieces.append(_name_pattern(part) + ("" if last else "/"))
    return re.compile("".join(pieces))


def walk(folder: Path, notes: list[str], what: str, accept: Callable[[Path], bool]) -> Iterator[Path]:
    """The files under ``folder`` that ``accept`` takes, sorted within each folder, at most MAX_FILES of them;
    hidden folders (a cache, .git) are not entered, and a linked folder is followed once, never back into
    one already seen (a link to a parent makes no loop)."""
    seen: set[tuple[int, int]] = set()
    count = 0
    for top, dirs, files in os.walk(folder, followlinks=True):
        here = os.stat(top)
        if (here.st_dev, here.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((here.st_dev, here.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(top, name)
            if not accept(path):
                continue
            if count == MAX_FILES:
                notes.append(f"{what}: more than {MAX_FILES} files under {folder}; using the first {MAX_FILES}")
                return
            count += 1
            yield path


def _matches(pattern: re.Pattern, base: Path, path: Path) -> bool:
    return bool(pattern.fullmatch(path.relative_to(base).as_posix()))


def expand(patterns: tuple[str, ...], root: Path, key: str, notes: list[str] | None = None) -> list[Path]:
    """Files named by ``patterns`` (files, folders searched recursively, globs with ``**``), relative to
    ``root``; what was cut short is said in ``notes``."""
    notes = [] if notes is None else notes
    found: dict[Path, None] = {}
    for pattern in patterns:
        full = root / pattern
        if glob.has_magic(pattern):
            parts = Path(pattern).parts
            fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
            base = root.joinpath(*parts[:fixed])
            try:
                match = _pattern("/".join(parts[fixed:]))
            except re.error as error:
                raise SitegenError(f"{key}: {pattern!r} is not a valid pattern ({error})") from None
            matches = list(walk(base, notes, f"{key}: {pattern!r}", functools.partial(_matches, match, base))
                           ) if base.is_dir() else []
        elif full.is_dir():  # what is not a plain file (a pipe, a device, a link to nothing) is left out, and said
            matches = list(walk(full, notes, f"{key}: {pattern!r}", lambda p: p.suffix.lower() in IMAGE_SUFFIXES))
        elif full.is_file():
            matches = [full]
        else:
            raise SitegenError(f"{key}: {pattern!r} matches no file (relative to {root})")
        if not matches:
            raise SitegenError(f"{key}: {pattern!r} matches no image file (relative to {root})")
        found.update(dict.fromkeys(matches))
    return list(found)


def make_items(paths: list[Path], root: Path, views: list[View],
               usable: Callable[[Path, str], str | None] = lambda path, digest: None,
               leave_out: Collection[str] = frozenset()) -> tuple[list[Item], list[tuple[str, str]]]:
    """One item per file and view; a file whose bytes repeat an earlier file's (or one of ``leave_out``'s
    digests) is used once.

    ``usable(path, digest)`` says why a file cannot be used (or None); such files are
    left out and returned as (name, reason) pairs.
    """
    items: list[Item] = []
    skipped: list[tuple[str, str]] = []
    bad: dict[str, str] = {}  # digest -> why its file was left out
    seen = set(leave_out)
    for path in paths:
        odd = not_a_file(path)
        if odd:  # named as listed: where a link leads says nothing
            skipped.append((display_name(Path(os.path.relpath(path, root)).as_posix()), odd))
            continue
        try:
            name = display_name(path.resolve().relative_to(root.resolve()).as_posix())
        except ValueError:
            name = display_name(path.name)
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as error:
            skipped.append((name, f"unreadable ({error.strerror or error})"))
            continue
        if digest in bad:  # the same bytes as a file already left out: left out too
            skipped.append((name, bad[digest]))
            continue
        if digest in seen:
            continue
        seen.add(digest)
        reason = usable(path, digest)
        if reason:
            bad[digest] = reason
            skipped.append((name, reason))
            continue
        items.extend(Item(path, name, digest, view) for view in views)
    return items, skipped


def not_a_file(path: Path) -> str | None:
    """Why ``path`` is not a plain file that can be read (a link to nothing, a pipe, a device), or None.  A
    pipe or a device is never opened: reading one can wait forever or never end."""
    try:
        mode = path.stat().st_mode  # follows links
    except FileNotFoundError:
        return "a link to nothing" if path.is_symlink() else "gone"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
    return "not a plain file (" + next((what for test, what in kinds if test(mode)), "of another kind") + ")"


def skip_summary(skipped: list[tuple[str, str]], shown: int = 3) -> str:
    """Files left out, counted, by reason, the first few of each named: "skipped 3 image files: 2 empty
    file (a.png, b.png), 1 ..."."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in skipped:
        by_reason.setdefault(reason, []).append(name)
    lines = [f"skipped {len(skipped)} image file{'s' if len(skipped) != 1 else ''}:"]
    groups = sorted(by_reason.items(), key=lambda pair: -len(pair[1]))
    for reason, names in groups[:5]:
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        lines.append(f"  - {len(names)} {reason}: {', '.join(names[:shown])}{more}")
    if len(groups) > 5:
        lines.append(f"  - {sum(len(names) for _, names in groups[5:])} for {len(groups) - 5} other reasons")
    return "\n".join(lines)


NAME_LIMIT = 96  # characters of a name made for a file of the site: room for what is added to it, far from 255


def fit_name(name: str, limit: int = NAME_LIMIT) -> str:
    """A name for a file of the site, at most ``limit`` characters: a longer one keeps its start and gains a
    short hash of the whole, so that two long names that share their start stay apart."""
    if len(name) <= limit:
        return name
    return name[:limit - 17] + "-" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def display_name(text: str) -> str:
    """A file or folder name as text a page can hold: bytes of the name that are not UTF-8 (which Python
    keeps as lone surrogates) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def slug(text: str) -> str:
    return fit_name(re.sub(r"[^a-z0-9]+", "-", Path(text).stem.lower()).strip("-") or "image")


def unique_slugs(names: list[str]) -> list[str]:
    """A slug per name (for page names), numbered where two would be the same."""
    taken: set[str] = set()
    result = []
    for name in names:
        base = candidate = slug(name)
        number = 1
        while candidate in taken:
            number += 1
            candidate = f"{base}-{number}"
        taken.add(candidate)
        result.append(candidate)
    return result


def problem(path: Path) -> str | None:
    """Why an image file cannot be used (empty, not an image, truncated, too large), or None."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        load_rgb(path)
    except Image.DecompressionBombError as error:
        return f"too large ({error})"
    except UnidentifiedImageError:
        return "not an image PIL can read"
    except (OSError, ValueError, SyntaxError) as error:
        return f"unreadable ({error})"
    return None


def load_rgb(path: Path) -> Image.Image:
    """Open any image PIL reads as 8-bit RGB (16-bit, palette, CMYK, alpha and greyscale included)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_PIXELS
        try:
            image: Image.Image = Image.open(path)
            image.load()
        except Image.DecompressionBombWarning as warning:
            raise Image.DecompressionBombError(str(warning)) from None
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def view_pixels(image: Image.Image, view: View, resize: int, crop: int, interpolation: str) -> np.ndarray:
    """The pixels the model sees, uint8 [crop, crop, 3]: view, resize the shorter side, centre crop."""
    width, height = image.size
    if view.zoom < 1:
        w, h = max(1, round(width * view.zoom)), max(1, round(height * view.zoom))
        x = {"c": (width - w) // 2, "tl": 0, "bl": 0, "tr": width - w, "br": width - w}[view.anchor]
        y = {"c": (height - h) // 2, "tl": 0, "tr": 0, "bl": height - h, "br": height - h}[view.anchor]
        image = image.crop((x, y, x + w, y + h))
    if view.flip:
        image = ImageOps.mirror(image)
    # the arithmetic of torchvision's Resize(int) and CenterCrop, so models get their weights' own transform
    width, height = image.size
    if width <= height:
        size = (resize, int(resize * height / width))
    else:
        size = (int(resize * width / height), resize)
    image = image.resize(size, INTERPOLATION.get(interpolation, Image.Resampling.BILINEAR))
    left, top = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
    return np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.uint8).copy()


def cut(pixels: np.ndarray, box: tuple[int, int, int, int], fill: int = 128) -> np.ndarray:
    """The (top, left, bottom, right) inclusive box of an [H, W, C] array, ``fill`` outside it."""
    top, left, bottom, right = box
    height, width = pixels.shape[:2]
    out = np.full((bottom - top + 1, right - left + 1) + pixels.shape[2:], fill, dtype=pixels.dtype)
    y0, y1 = max(top, 0), min(bottom, height - 1)
    x0, x1 = max(left, 0), min(right, width - 1)
    if y0 <= y1 and x0 <= x1:
        out[y0 - top:y1 - top + 1, x0 - left:x1 - left + 1] = pixels[y0:y1 + 1, x0:x1 + 1]
    return out


def fit(pixels: np.ndarray, side: int) -> np.ndarray:
    """Shrink an [H, W, 3] array so that neither side exceeds ``side`` (area-averaged); smaller ones stay."""
    height, width = pixels.shape[:2]
    if max(height, width) <= side:
        return pixels
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX))


ENCODINGS = {  # kind: (format, options)
    "photo": ("JPEG", {"quality": 88}),                           # the featured photos, files of their own
    # every other picture is kept exactly and encoded for the reader once, in its sheet (site/sheets.py):
    # gradient pictures, photos cut to a box, maps, lossless WebP at the lowest effort ...
    "picture": ("WEBP", {"lossless": True, "method": 0}),
    "exact": ("PNG", {"optimize": False, "compress_level": 6}),   # ... and optimized images, shown exactly
}
SMALL = 64  # a picture at most this many pixels a side is shown exactly: it is mostly single pixels of colour


PATCH_SIDE = 128  # patches larger than this are stored shrunk to it (the grid shows them at about 100 px)
WHOLE_SIDE = 160  # whole-image pictures are stored at the size the neuron page shows them
# how pictures are stored, part of their cache keys: a change of encoding stores them anew
STORAGE = repr([(kind, fmt, options) for kind, (fmt, options) in ENCODINGS.items()])


def encode(pixels: np.ndarray, kind: str) -> bytes:
    """Pixels [H, W, 3] uint8 stored as one of the ENCODINGS."""
    fmt, options = ENCODINGS[kind]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()
