"""What the site is made of, before anything is written: pages, files made here, assets copied from the cache."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .sheets import Sheet

# Significant digits of the numbers in the site's JSON files: finer than any picture's 256 levels, and coarse
# enough that builds whose float sums ran in another order (other thread counts, batches, torchrun ranks)
# write the same bytes, but for a value within about 1e-7 of a rounding boundary.
SIGNIFICANT = 4


def plural(count: int, noun: str) -> str:
    """1 channel, 2 channels."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 11th, 1,022nd."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number:,}{suffix}"


@dataclass(frozen=True)
class Page:
    path: str  # output path relative to the site root, posix
    template: str
    title: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class File:
    """A file made by the site half itself (manifest.json, the search index)."""

    path: str
    data: bytes


@dataclass(frozen=True)
class Asset:
    """A file copied from a member of a cache entry (a featured photo; the other pictures go into sheets)."""

    path: str  # output path relative to the site root
    kind: str  # the entry's kind
    key: str
    member: str


@dataclass(frozen=True)
class SiteModel:
    title: str
    pages: list[Page]
    assets: list[Asset]
    nav: list[dict[str, str]]
    files: dict[str, bytes] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    sheets: list[Sheet] = field(default_factory=list)  # files of pictures (sheets.py)


def portable(data: Any, nonfinite: list[str] | None = None, where: str = "") -> Any:
    """``data`` with every float rounded to SIGNIFICANT digits and every NaN or infinity made None (JSON has
    no such numbers: a browser's JSON.parse fails on them), the places of those listed in ``nonfinite``."""
    if isinstance(data, float):
        if math.isfinite(data):
            return float(f"{data:.{SIGNIFICANT}g}")
        if nonfinite is not None:
            nonfinite.append(where)
        return None
    if isinstance(data, dict):
        return {key: portable(value, nonfinite, f"{where}/{key}") for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [portable(value, nonfinite, f"{where}/{index}") for index, value in enumerate(data)]
    return data


def json_file(path: str, data: dict[str, Any], **options: Any) -> File:
    """A JSON file of the site: numbers as :func:`portable` makes them, and where some were not finite, a
    note that says so and where the first are."""
    nonfinite: list[str] = []
    data = portable(data, nonfinite)
    if nonfinite:
        data["notes"] = [f"{len(nonfinite)} numbers that are not finite (NaN or infinite: activations of a model "
                         f"that computes such values) are written as null, first at {', '.join(nonfinite[:3])}"]
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, **options) + "\n"
    return File(path, text.encode("utf-8"))
