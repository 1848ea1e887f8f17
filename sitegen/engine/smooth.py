"""SmoothGrad (Smilkov et al., 2017): the mean plain gradient over noisy copies of the input.

The noise of image ``index`` of a call is drawn from its own seeded generator, on the CPU, so that an
independent reference (or another machine) draws the same numbers::

    torch.randn((samples, 3, H, W), generator=torch.Generator().manual_seed(seed + index))

times ``noise`` times the image's range (its largest value less its smallest, over all channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SmoothGrad:
    samples: int = 16  # noisy copies of each image
    noise: float = 0.15  # the noise's standard deviation, as a share of the image's range
    seed: int = 0  # image i of a call draws its noise from seed + i

    def as_dict(self) -> dict:
        return {"samples": self.samples, "noise": self.noise, "seed": self.seed}


def noise(image: torch.Tensor, settings: SmoothGrad, index: int = 0) -> torch.Tensor:
    """``[samples, 3, H, W]``: the noise added to ``image`` ([3, H, W]), on its device and of its dtype."""
    generator = torch.Generator().manual_seed(settings.seed + index)
    drawn = torch.randn((settings.samples, *image.shape), generator=generator)
    sigma = settings.noise * (image.max() - image.min())
    return drawn.to(device=image.device, dtype=image.dtype) * sigma
