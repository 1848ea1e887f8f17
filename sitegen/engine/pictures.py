"""Gradients -> the pictures a page shows (DESIGN §2)."""

from __future__ import annotations

import numpy as np
import torch


def pictures(grads: torch.Tensor) -> np.ndarray:
    """Gradients [..., 3, H, W] -> uint8 pictures [..., H, W, 3]: g / max|g| * 0.5 + 0.5.

    One maximum over the whole picture (all pixels, all colour channels), so
    zero is mid-grey and the colours keep their balance.
    """
    scale = grads.abs().amax(dim=(-3, -2, -1), keepdim=True)
    scaled = torch.where(scale > 0, grads / scale.clamp(min=torch.finfo(grads.dtype).tiny), torch.zeros_like(grads))
    picture = (scaled * 0.5 + 0.5).clamp(0, 1).mul(255).round().to(torch.uint8)
    return picture.movedim(-3, -1).cpu().numpy()
