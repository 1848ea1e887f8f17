"""Feature visualization by optimization: the image a neuron would like to see.

Each neuron gets one image, optimized from noise to maximize its objective
(a channel's mean over positions, a unit's value), many neurons to a batch.
The recipe is the one that makes such images readable (Olah, Mordvintsev &
Schubert, "Feature Visualization", Distill 2017):

- the image lives in a scaled Fourier space (low frequencies move first) and
  in decorrelated colour (ImageNet's colour covariance), squashed to [0, 1]
  by a sigmoid;
- at every step it is padded, jittered, scaled and rotated at random before
  the network sees it, so only patterns that survive small transformations
  grow;
- a ReLU that is closed for a whole image passes back the gradient that would
  open it (Lucid's redirected ReLU), so a neuron silent on noise still moves.

Randomness comes from one generator per neuron seeded by (seed, neuron), so a
neuron's image does not depend on the batch it was computed in or the device.
Pure tensor code: no file I/O, no printing (DESIGN §1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .capture import capture, inference_state, model_device
from .rules import REDIRECTED, backward_rule, relu_rules

# The square root of ImageNet's colour covariance (from its SVD), as in Lucid;
# columns scaled so that the largest has norm 1.
_COLOUR = torch.tensor([[0.26, 0.09, 0.02],
                        [0.27, 0.00, -0.05],
                        [0.27, -0.09, 0.03]])
COLOUR = _COLOUR / _COLOUR.norm(dim=0).max()


@dataclass(frozen=True)
class Recipe:
    """How to optimize: steps, image size, Adam's learning rate, and the random transformations."""

    steps: int = 256
    size: int = 128
    lr: float = 0.05
    pad: int = 12           # constant grey border added before the transformations
    jitter: int = 8         # largest shift in pixels, before and (halved) after scaling and rotating
    scale: float = 0.1      # scale drawn uniformly from [1 - scale, 1 + scale]
    rotate: float = 10.0    # angle drawn uniformly from [-rotate, rotate] degrees
    decay: float = 1.0      # spectrum scaled by 1 / frequency ** decay

    def as_dict(self) -> dict:
        return {"steps": self.steps, "size": self.size, "lr": self.lr, "pad": self.pad, "jitter": self.jitter,
                "scale": self.scale, "rotate": self.rotate, "decay": self.decay}


def _frequencies(size: int) -> torch.Tensor:
    """|f| of each coefficient of a real 2-D FFT of a size x size image, [size, size // 2 + 1]."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    return (fx * fx + fy * fy).sqrt()


class FourierImage(nn.Module):
    """A batch of images parameterized by their colour-decorrelated, frequency-scaled spectra."""

    scale: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, spectra: torch.Tensor, size: int, decay: float):
        super().__init__()
        self.size = size
        self.spectra = nn.Parameter(spectra)  # [N, 3, size, size // 2 + 1, 2]
        scale = 1.0 / _frequencies(size).clamp(min=1.0 / size) ** decay
        self.register_buffer("scale", scale[None, None, :, :, None].to(spectra))

    def forward(self) -> torch.Tensor:
        """The images, [N, 3, size, size] in [0, 1]."""
        spectrum = torch.view_as_complex((self.spectra * self.scale).contiguous())
        # 'ortho' keeps values near unit size; /4 keeps the sigmoid out of saturation at first (Lucid's choice)
        decorrelated = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4
        colour = COLOUR.to(decorrelated)
        rgb = torch.einsum("nchw,dc->ndhw", decorrelated, colour)
        return torch.sigmoid(rgb)


def objective(out: torch.Tensor) -> torch.Tensor:
    """A layer's output -> [N, C]: each channel's mean over positions, or each unit's value."""
    return out.reshape(out.shape[0], out.shape[1], -1).mean(dim=2)


def _transform(images: torch.Tensor, params: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """Pad with grey, then shift, scale and rotate each image by its own row of ``params``
    (dy, dx, scale, angle in radians, dy2, dx2): one resampling per step."""
    padded = F.pad(images, [recipe.pad] * 4, value=0.5)
    side = padded.shape[-1]
    dy, dx, scale, angle, dy2, dx2 = params.unbind(dim=1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # affine_grid maps output to input coordinates in [-1, 1]: the inverse transformation
    theta = torch.stack([torch.stack([cos, -sin, (dx + dx2) * 2 / side], dim=1),
                         torch.stack([sin, cos, (dy + dy2) * 2 / side], dim=1)], dim=1)
    grid = F.affine_grid(theta, list(padded.shape), align_corners=False)
    return F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _draws(generator: torch.Generator, recipe: Recipe) -> torch.Tensor:
    """One neuron's transformation parameters for every step, [steps, 6]."""
    u = torch.rand(recipe.steps, 6, generator=generator)
    jitter = float(recipe.jitter)
    return torch.stack([
        (u[:, 0] * 2 - 1) * jitter, (u[:, 1] * 2 - 1) * jitter,
        1 + (u[:, 2] * 2 - 1) * recipe.scale,
        (u[:, 3] * 2 - 1) * math.radians(recipe.rotate),
        (u[:, 4] * 2 - 1) * jitter / 2, (u[:, 5] * 2 - 1) * jitter / 2,
    ], dim=1)


def _normaliser(mean: Sequence[float], std: Sequence[float], device: torch.device):
    """Images in [0, 1] -> the model's input."""
    shift = torch.tensor(list(mean), device=device).view(1, 3, 1, 1)
    scale = torch.tensor(list(std), device=device).view(1, 3, 1, 1)
    return lambda images: (images - shift) / scale


def optimize(model: nn.Module, name: str, module: nn.Module, neurons: Sequence[int], mean: Sequence[float],
             std: Sequence[float], recipe: Recipe = Recipe(), seed: int = 0) -> torch.Tensor:
    """``[len(neurons), 3, size, size]`` images in [0, 1], each optimized for its own neuron.

    ``mean`` and ``std`` are the model's input normalisation; the objective is
    :func:`objective` of the layer ``name`` (module ``module``).  All neurons
    given are optimized together, one image per neuron in one batch.
    """
    device = model_device(model)
    normalise = _normaliser(mean, std, device)
    spectra, draws = [], []
    for neuron in neurons:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + int(neuron))
        spectra.append(torch.randn(3, recipe.size, recipe.size // 2 + 1, 2, generator=generator) * 0.01)
        draws.append(_draws(generator, recipe))
    image = FourierImage(torch.stack(spectra).to(device), recipe.size, recipe.decay)
    steps = torch.stack(draws, dim=1).to(device)  # [steps, N, 6]
    rows = torch.arange(len(neurons), device=device)
    index = torch.as_tensor([int(n) for n in neurons], device=device)
    optimizer = torch.optim.Adam(image.parameters(), lr=recipe.lr)
    with inference_state(model), torch.enable_grad(), backward_rule(REDIRECTED):
        for step in range(recipe.steps):
            optimizer.zero_grad(set_to_none=True)
            seen = _transform(image(), steps[step], recipe)
            with relu_rules():
                out = capture(model, normalise(seen), {name: module})[name]
            loss = -objective(out)[rows, index].sum()  # rows are independent: each image its own neuron
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return image().detach()


def excitation(model: nn.Module, name: str, module: nn.Module, images: torch.Tensor, mean: Sequence[float],
               std: Sequence[float], batch_size: int = 32) -> torch.Tensor:
    """``[N, C]``: :func:`objective` of every neuron of the layer on each image in [0, 1], untransformed."""
    device = model_device(model)
    normalise = _normaliser(mean, std, device)
    parts = []
    with inference_state(model), torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(device)
            out = capture(model, normalise(batch), {name: module})[name]
            parts.append(objective(out).float().cpu())
    return torch.cat(parts)
