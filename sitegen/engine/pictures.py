"""Gradients -> the pictures a page shows (DESIGN §2, "displayed picture").

Each picture is scaled by its own robust maximum: ``s``, the 99.5th percentile
of |g| over the values where g is not zero (its support: a low layer's
whole-image picture is zero outside its receptive field, and those zeros must
not set the scale), all colour channels together.  It shows
``clip(g / s, -1, 1) * 0.5 + 0.5``: zero stays mid-grey, colours keep their
balance, and at most 0.5 % of the values clip.  One maximum over the whole
picture (the study's raw picture) lets a few pixels set the scale, and a
reader sees a grey square with a speck.  ``s`` goes with the picture, so
values stay comparable.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

PERCENTILE = 99.5


def scales(grads: torch.Tensor) -> torch.Tensor:
    """[N]: each picture's ``PERCENTILE``th percentile of |g| over its nonzero values, interpolated as
    ``numpy.percentile`` does (0 for a picture that is zero everywhere)."""
    flat = grads.reshape(grads.shape[0], -1).abs()
    count = (flat > 0).sum(dim=1)
    # the percentile's position counted from the largest value, 0-based
    top = (1 - PERCENTILE / 100) * (count - 1).clamp(min=0).double()
    k = min(flat.shape[1], int(top.max().floor()) + 2) if len(top) else 1
    largest = flat.topk(k, dim=1, sorted=True).values.double()
    below = top.floor().long().clamp(max=k - 1)
    above = top.ceil().long().clamp(max=k - 1)
    fraction = top - top.floor()
    rows = torch.arange(flat.shape[0], device=flat.device)
    value = largest[rows, below] * (1 - fraction) + largest[rows, above] * fraction
    return torch.where(count > 0, value, torch.zeros_like(value)).to(grads.dtype)


def display(grads: torch.Tensor, side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gradients [N, 3, H, W] -> (uint8 pictures [N, h, w, 3], their scales [N]), each on its own scale.

    Given a ``side``, pictures larger than that are first shrunk to it (averaging the gradient over each
    shown pixel), so that the scale is that of the pixels shown: shrinking a picture after scaling it
    averages its fine detail towards grey."""
    height, width = grads.shape[-2:]
    if side is not None and max(height, width) > side:
        ratio = side / max(height, width)
        size = (max(1, round(height * ratio)), max(1, round(width * ratio)))
        grads = F.interpolate(grads, size=size, mode="area")
    s = scales(grads).view(-1, 1, 1, 1)
    scaled = torch.where(s > 0, grads / s.clamp(min=torch.finfo(grads.dtype).tiny), torch.zeros_like(grads))
    picture = (scaled.clamp(-1, 1) * 0.5 + 0.5).mul(255).round().to(torch.uint8)
    return picture.permute(0, 2, 3, 1).cpu().numpy(), s.view(-1).float().cpu().numpy()


def cut(grads: torch.Tensor, boxes: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """[N, 3, H, W] gradients -> [N, 3, h, w]: each cut to its (top, left, bottom, right) box (inclusive, all
    boxes of one size), zero where a box leaves the image."""
    height, width = grads.shape[-2:]
    h, w = boxes[0][2] - boxes[0][0] + 1, boxes[0][3] - boxes[0][1] + 1
    out = grads.new_zeros(grads.shape[0], grads.shape[1], h, w)
    for row, (top, left, bottom, right) in enumerate(boxes):
        y0, y1, x0, x1 = max(top, 0), min(bottom, height - 1), max(left, 0), min(right, width - 1)
        if y0 <= y1 and x0 <= x1:
            out[row, :, y0 - top:y1 - top + 1, x0 - left:x1 - left + 1] = grads[row, :, y0:y1 + 1, x0:x1 + 1]
    return out


class MapStyle(TypedDict):
    fade: float
    colour: tuple[int, int, int]
    opacity: float
    power: int
    ring: tuple[int, int, int]
    halo: tuple[int, int, int]
    radius: int


# how an activation map is drawn: the photo faded towards white, the map in one hue over it, as strong as
# the square of its share of the maximum (so that where it fires strongly stands out), its peak ringed (in a
# light halo, so that the ring shows on red too)
MAP_STYLE: MapStyle = {"fade": 0.65, "colour": (214, 48, 20), "opacity": 0.85, "power": 2, "ring": (16, 40, 160),
                       "halo": (255, 255, 255), "radius": 7}


def activation_map(photo: np.ndarray, channel: torch.Tensor, position: int, ring: bool = True) -> np.ndarray:
    """A channel's map [h, w] upsampled (bilinear) to the photo [H, W, 3] and laid over it faded, from
    nothing (at or below 0) to full colour (its maximum); the map's maximum, at flat ``position``, ringed
    (unless not ``ring``)."""
    height, width = photo.shape[:2]
    up = F.interpolate(channel.float()[None, None].cpu(), size=(height, width), mode="bilinear",
                       align_corners=False)[0, 0]
    peak = float(up.max())
    strength = ((up / peak).clamp(0, 1) ** MAP_STYLE["power"]).numpy() if peak > 0 else np.zeros(
        (height, width), dtype=np.float32)
    alpha = (strength * MAP_STYLE["opacity"])[..., None]
    faded = photo * (1 - MAP_STYLE["fade"]) + 255 * MAP_STYLE["fade"]
    picture = Image.fromarray((faded * (1 - alpha) + np.array(MAP_STYLE["colour"]) * alpha).round().astype(np.uint8))
    i, j = divmod(position, channel.shape[1])
    y, x = (i + 0.5) * height / channel.shape[0] - 0.5, (j + 0.5) * width / channel.shape[1] - 0.5
    r = MAP_STYLE["radius"]
    if ring:
        draw = ImageDraw.Draw(picture)
        draw.ellipse((x - r - 1, y - r - 1, x + r + 1, y + r + 1), outline=MAP_STYLE["halo"], width=4)
        draw.ellipse((x - r, y - r, x + r, y + r), outline=MAP_STYLE["ring"], width=2)
    return np.asarray(picture)
