"""``sitegen clean --cache-too``: delete a cache folder, and nothing that is not one."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..errors import SitegenError
from .cache import LOCKS, MANIFESTS, MARKER, is_cache
from .members import KINDS

# what a cache folder holds: entries, manifests and lock files, each possibly half-written (.tmp-*)
_ENTRY = re.compile(r"(?:[0-9a-f]{2}/(?:[0-9a-f]{40}\.zip|\.tmp-\w+\.zip))")
_OWN = re.compile(rf"(?:{'|'.join(map(re.escape, KINDS))})/{_ENTRY.pattern}"
                  rf"|{MANIFESTS}/(?:[0-9a-f]{{16}}\.json|\.tmp-\w+\.json)"
                  rf"|{LOCKS}/[\w-]+/[0-9a-f]{{3}}\.lock|{re.escape(MARKER)}")


def _contents(root: Path) -> tuple[list[str], int, int]:
    """Files of ``root`` that a cache does not hold (links included), and its entries and bytes."""
    foreign, entries, size = [], 0, 0
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or (name in files and not _OWN.fullmatch(rel)):
                foreign.append(rel)
            elif name in files:
                entries += rel.endswith(".zip")
                size += path.stat().st_size
        dirs[:] = [d for d in dirs if not Path(folder, d).is_symlink()]
    return foreign, entries, size


def remove_cache(cache: Path, config: Path) -> str:
    """Delete the cache folder ``cache`` if it is one and holds nothing else; say what was removed."""
    if not cache.exists():
        return f"no cache at {cache}: nothing removed"
    root = cache.resolve()
    refuse = f"not deleting {cache}"
    if root == Path.cwd().resolve() or Path.cwd().resolve().is_relative_to(root):
        raise SitegenError(f"{refuse}: it is the current folder or holds it")
    if config.resolve().is_relative_to(root):
        raise SitegenError(f"{refuse}: it holds the config {config}")
    if not root.is_dir() or not is_cache(root):
        raise SitegenError(f"{refuse}: it is not a sitegen cache (it has no {MARKER} written by sitegen)")
    foreign, entries, size = _contents(root)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise SitegenError(f"{refuse}: besides the cache it holds {shown}")
    shutil.rmtree(root)
    return f"removed the cache {cache}: {entries} entries, {size / 1e6:.1f} MB"
