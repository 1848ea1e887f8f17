"""What the site is made of, before anything is written: pages, files made here, assets copied from the cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    """A file copied from a member of a cache entry."""

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
