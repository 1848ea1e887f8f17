"""Image files -> items (checked once, the answer cached by their bytes) -> model-sized pixels -> batches."""

from __future__ import annotations

import csv
import ctypes
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..errors import SitegenError
from ..images import (
    MAX_PIXELS,
    Item,
    View,
    display_name,
    expand,
    load_rgb,
    make_items,
    probe_views,
    problem,
    view_pixels,
)
from ..model.registry import Preprocess
from ..store import members
from ..store.cache import Cache, make_key


def collect_items(config: Config, cache: Cache | None, problems: list[str], notes: list[str]
                  ) -> tuple[list[Item], list[Item], list, dict[str, bytes]]:
    """Featured and probe views, the files left out as (name, reason), and the image checks to cache.

    Every file is decoded once to see that it can be used; the answer is cached by its bytes, but only
    written (:func:`keep_checks`) once the whole config is found sound.  Problems are appended to
    ``problems``, and patterns cut short to ``notes``."""
    checks: dict[str, bytes] = {}

    def usable(path: Path, digest: str) -> str | None:
        key = make_key(members.IMAGE_CHECKS, digest, MAX_PIXELS)
        if cache is not None:
            entry = cache.get(members.IMAGE_CHECKS, key)
            if entry is not None:
                return entry[members.PROBLEM].decode() or None
        reason = problem(path)
        checks[key] = (reason or "").encode()
        return reason

    images = config.images
    featured: list[Item] = []
    skipped: list[tuple[str, str]] = []
    probe: list[Item] = []
    try:
        featured, skipped = make_items(expand(images.featured, config.root, "images.featured", notes), config.root,
                                       [View()], usable)
    except SitegenError as error:
        problems.append(str(error))
    leave_out = set() if images.featured_in_probe else {item.digest for item in featured}
    try:
        probe, skipped_probe = make_items(expand(images.probe, config.root, "images.probe", notes), config.root,
                                          probe_views(images.probe_flip, images.probe_zooms), usable, leave_out)
    except SitegenError as error:
        problems.append(str(error))
        return featured, probe, skipped, checks
    skipped += [pair for pair in skipped_probe if pair not in skipped]
    probe = labelled(config, probe, problems)
    files, top = len({item.digest for item in probe}), config.images.label_top
    if config.images.labels and top is not None and files and 2 * top >= files:
        notes.append(f"images.label_top = {top} counts half the probe set's {files} files or more: among so many, "
                     f"each class keeps about its share of the probe set, and few neurons are named by a class "
                     f"(leave it out to count a quarter)")
    if not probe:
        also = (" (featured images are left out of the probe set unless images.featured_in_probe = true)"
                if leave_out else "")
        problems.append(f"images.probe: no readable probe images; top patches need at least one{also}"
                        + "".join(f"\n  - {name}: {reason}" for name, reason in skipped[:10]))
    elif config.compute.top_k > len(probe):
        problems.append(f"compute.top_k is {config.compute.top_k} but the probe set has only {len(probe)} views")
    elif config.compute.per_photo and config.compute.top_k > config.compute.per_photo * (
            photos := len({item.digest for item in probe})):
        problems.append(f"compute.top_k is {config.compute.top_k} but with compute.per_photo = "
                        f"{config.compute.per_photo} the probe set's {photos} photos give at most "
                        f"{config.compute.per_photo * photos}")
    return featured, probe, skipped, checks


def labelled(config: Config, probe: list[Item], problems: list[str]) -> list[Item]:
    """The probe items with their classes (``images.labels``): each file's parent folder, or its row of a
    CSV file of (file, label); a file without one is a problem, named."""
    how = config.images.labels
    if not how:
        return probe
    if how == "folders":  # a file right in a probe folder is in no class folder
        roots = {(config.root / entry).resolve() for entry in config.images.probe}
        labels = {item.path.resolve(): display_name(item.path.parent.name) for item in probe
                  if item.path.parent.resolve() not in roots}
    else:
        labels = {}
        try:
            with open(config.root / how, newline="", encoding="utf-8-sig") as rows:  # a spreadsheet's BOM too
                for number, row in enumerate(csv.reader(rows), start=1):
                    if len(row) != 2 or not row[0].strip():
                        if number == 1 or not any(row):  # a header, or an empty line
                            continue
                        problems.append(f"images.labels: {how}, line {number}: expected file,label")
                        continue
                    labels[(config.root / row[0].strip()).resolve()] = row[1].strip()
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"images.labels: {how} could not be read: {error}")
            return probe
    missing = sorted({item.name for item in probe if not labels.get(item.path.resolve())})
    if missing:
        where = "in no class folder (images.labels = \"folders\")" if how == "folders" else f"without a label in {how}"
        problems.append(f"images.labels: {len(missing)} probe file(s) {where}: " + ", ".join(missing[:5])
                        + (", ..." if len(missing) > 5 else ""))
    return [replace(item, label=labels.get(item.path.resolve(), "")) for item in probe]


def keep_checks(cache: Cache, checks: dict[str, bytes]) -> None:
    """Cache the image checks that :func:`collect_items` made."""
    for key, reason in checks.items():
        cache.put(members.IMAGE_CHECKS, key, {members.PROBLEM: reason})


class ItemPixels(torch.utils.data.Dataset):
    """Views decoded to model-sized pixels, in DataLoader workers where there are many."""

    def __init__(self, items: list[Item], preprocess: Preprocess):
        self.items, self.preprocess = items, preprocess

    def __len__(self) -> int:
        return len(self.items)

    def pixels(self, index: int) -> np.ndarray:
        item, p = self.items[index], self.preprocess
        try:
            image = load_rgb(item.path)
        except Exception as error:  # noqa: BLE001 - any unreadable image is reported the same way
            raise SitegenError(f"image {item.name!r} could not be read: {error}") from None
        return view_pixels(image, item.view, p.resize, p.crop, p.interpolation)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.pixels(index)).permute(2, 0, 1)


def pixels(item: Item, preprocess: Preprocess) -> np.ndarray:
    """The pixels the model sees of one view, uint8 [H, W, 3]."""
    return ItemPixels([item], preprocess).pixels(0)


def loader(items: list[Item], preprocess: Preprocess, batch_size: int, device: torch.device,
           groups: list[int] | None = None) -> torch.utils.data.DataLoader:
    """Batches of ``items``' pixels; with ``groups`` (consecutive runs of items, by length) no batch spans two."""
    batches, start = [], 0
    for length in groups or [len(items)]:
        batches += [list(range(first, min(first + batch_size, start + length)))
                    for first in range(start, start + length, batch_size)]
        start += length
    workers = min(4, os.cpu_count() or 1) if len(items) >= 64 else 0
    return torch.utils.data.DataLoader(ItemPixels(items, preprocess), batch_sampler=batches, num_workers=workers,
                                       pin_memory=device.type == "cuda", persistent_workers=False)


def normalise(pixels: torch.Tensor, preprocess: Preprocess, device: torch.device) -> torch.Tensor:
    """uint8 [N, 3, H, W] on any device -> the model's input on ``device``."""
    x = pixels.to(device, non_blocking=True).float().div_(255)
    mean = torch.tensor(preprocess.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


_MALLOC_TRIM: Callable[[int], int] | None
try:
    _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc: its allocator does not need this
    _MALLOC_TRIM = None


def return_freed_memory() -> None:
    """Hand the memory freed by the last batch back to the system.  Once large tensors have been
    freed, glibc's malloc serves them from its heap instead of mmap, and that heap fragments: without
    this, mining's resident memory grows with the number of batches (bench/mining.py: 1.3x at 4,000
    probe images against 1,000), not with what it holds."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
