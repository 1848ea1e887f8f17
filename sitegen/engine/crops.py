"""Receptive-field crops: the smallest part of an image on which a neuron computes as on the whole image,
and the batches of neurons whose crops go through one pass together.  Pure arithmetic on shapes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .geometry import Geometry


@dataclass(frozen=True)
class Crop:
    """Rows y0..y1 and columns x0..x1 (inclusive) of the image, and the neuron's position (i, j) in
    the layer's output for that crop."""

    y0: int
    x0: int
    y1: int
    x1: int
    i: int
    j: int


def crop_for(geometry: Geometry, i: int, j: int, height: int, width: int) -> Crop | None:
    """The smallest crop on which the neuron at (i, j) computes exactly as on the whole image.

    It holds the receptive field, starts on the layer's stride grid (so every
    layer between sees the same positions), and is cut by the image's own
    borders (so the padding there is the network's own).  Positions next to
    the crop's inner borders see padding where the image had pixels, but they
    lie outside the neuron's receptive field.  None: the whole image is needed.
    """
    if geometry.whole:
        return None
    (jy, jx), (ly, lx), (hy, hx) = geometry.jump, geometry.lo, geometry.hi
    y0, x0 = max(0, (ly + i * jy) // jy * jy), max(0, (lx + j * jx) // jx * jx)
    y1, x1 = min(height - 1, hy + i * jy), min(width - 1, hx + j * jx)
    if (y0, x0, y1, x1) == (0, 0, height - 1, width - 1):
        return None
    return Crop(y0, x0, y1, x1, i - y0 // jy, j - x0 // jx)


def common_shape(crops: list[Crop | None], geometry: Geometry, height: int, width: int) -> list[Crop | None]:
    """The crops grown to one shape, so that they batch together (what a GPU wants).

    A crop stays exact when it grows, as long as it starts on the stride grid
    (or at the image's edge) and still holds the receptive field.  Along each
    axis the common length L is the longest crop's, made a little longer
    where needed so that a crop ending at the image's far edge starts on the
    grid; each crop then starts where it did, or L before that edge.
    """
    known = [c for c in crops if c is not None]
    if not crops or len(known) < len(crops):
        return [None] * len(crops)

    def length(longest: int, size: int, jump: int) -> int:
        while (size - longest) % jump:
            longest += 1
        return longest

    rows = length(max(c.y1 - c.y0 + 1 for c in known), height, geometry.jump[0])
    cols = length(max(c.x1 - c.x0 + 1 for c in known), width, geometry.jump[1])
    if (rows, cols) == (height, width):
        return [None] * len(crops)
    grown: list[Crop | None] = []
    for c in known:
        i, j = c.i + c.y0 // geometry.jump[0], c.j + c.x0 // geometry.jump[1]
        y0, x0 = min(c.y0, height - rows), min(c.x0, width - cols)
        grown.append(Crop(y0, x0, y0 + rows - 1, x0 + cols - 1, i - y0 // geometry.jump[0],
                          j - x0 // geometry.jump[1]))
    return grown


def plan_crops(geometry: Geometry | None, positions: Sequence[int], out_width: int, height: int, width: int,
           common: bool) -> list[Crop | None]:
    """Each neuron's receptive-field crop (None: the whole image), grown to one shape if ``common``."""
    if geometry is None:
        return [None] * len(positions)
    crops = [crop_for(geometry, *divmod(int(p), out_width), height, width) for p in positions]
    return common_shape(crops, geometry, height, width) if common else crops


def batches(crops: list[Crop | None], batch_size: int, height: int, width: int) -> Iterator[list[int]]:
    """Indices of neurons that go through one pass together: crops of one shape, more of the small ones
    (a crop costs, and holds, about its share of the image)."""
    groups: dict[tuple[int, int] | None, list[int]] = {}
    for index, crop in enumerate(crops):
        shape = None if crop is None else (crop.y1 - crop.y0 + 1, crop.x1 - crop.x0 + 1)
        groups.setdefault(shape, []).append(index)
    for shape, members in groups.items():
        size = batch_size if shape is None else min(
            len(members), max(batch_size, batch_size * height * width // (shape[0] * shape[1])))
        for start in range(0, len(members), size):
            yield members[start:start + size]
