"""Receptive fields from the layers' geometry (DESIGN §2).

One forward pass of a blank input is traced at the function level: every
tensor carries the box of input pixels that its position (0, 0) can see and
the step (jump) between neighbouring positions.  Convolutions, pooling and
padding move the box by the usual receptive-field arithmetic; element-wise
functions of same-sized maps take the union of their inputs' boxes (residual
branches included); anything else that mixes positions (global pooling,
flattening, a linear layer, resampling) sees the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .capture import capture, inference_state
from .rules import arg


@dataclass(frozen=True)
class Geometry:
    """Position (i, j) sees input rows ``lo[0] + i*jump[0] .. hi[0] + i*jump[0]``
    and columns ``lo[1] + j*jump[1] .. hi[1] + j*jump[1]`` (inclusive).
    ``whole`` means every position sees the whole input."""

    jump: tuple[int, int] = (1, 1)
    lo: tuple[int, int] = (0, 0)
    hi: tuple[int, int] = (0, 0)
    whole: bool = False

    @property
    def size(self) -> tuple[int, int]:
        return (self.hi[0] - self.lo[0] + 1, self.hi[1] - self.lo[1] + 1)

    def box(self, i: int, j: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The receptive field of position (i, j) as (top, left, bottom, right), inclusive.

        It may reach outside the image (that part of a patch is grey); a box
        larger than the image along an axis is the whole image along it.
        """
        if self.whole:
            return (0, 0, height - 1, width - 1)
        top, bottom = self.lo[0] + i * self.jump[0], self.hi[0] + i * self.jump[0]
        left, right = self.lo[1] + j * self.jump[1], self.hi[1] + j * self.jump[1]
        if bottom - top + 1 >= height:
            top, bottom = 0, height - 1
        if right - left + 1 >= width:
            left, right = 0, width - 1
        return (top, left, bottom, right)

    def centre(self, i: int, j: int) -> tuple[int, int]:
        """The input pixel at the centre of position (i, j)'s receptive field (rounded down)."""
        return ((self.lo[0] + self.hi[0]) // 2 + i * self.jump[0], (self.lo[1] + self.hi[1]) // 2 + j * self.jump[1])

    def as_dict(self) -> dict:
        return {"jump": list(self.jump), "lo": list(self.lo), "hi": list(self.hi), "whole": self.whole}


WHOLE = Geometry(whole=True)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _window(geo: Geometry, kernel, stride, padding, dilation) -> Geometry:
    """Receptive-field arithmetic of one sliding window (convolution or pooling)."""
    if geo.whole:
        return geo
    k, s, p, d = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    jump = (geo.jump[0] * s[0], geo.jump[1] * s[1])
    lo = (geo.lo[0] - p[0] * geo.jump[0], geo.lo[1] - p[1] * geo.jump[1])
    hi = (geo.hi[0] + ((k[0] - 1) * d[0] - p[0]) * geo.jump[0], geo.hi[1] + ((k[1] - 1) * d[1] - p[1]) * geo.jump[1])
    return Geometry(jump, lo, hi)


def _union(geos: list[Geometry]) -> Geometry:
    if any(g.whole for g in geos) or len({g.jump for g in geos}) > 1:
        return WHOLE
    lo = (min(g.lo[0] for g in geos), min(g.lo[1] for g in geos))
    hi = (max(g.hi[0] for g in geos), max(g.hi[1] for g in geos))
    return Geometry(geos[0].jump, lo, hi)


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


# Functions that keep the spatial size but move or mix positions: every output position sees everything.
_MIXING = {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "roll", "flip", "fliplr", "flipud", "rot90",
           "grid_sample", "transpose", "permute", "t", "mT", "swapaxes", "swapdims", "movedim", "pixel_shuffle",
           "pixel_unshuffle", "interpolate", "upsample", "fft_fft2", "fft_ifft2", "fft_rfft2", "fft_irfft2"}


# Functions that only reorder a tensor's dimensions: the spatial ones move, the geometry stays.
_REORDER = {"permute", "transpose", "swapaxes", "swapdims"}


def _reordered(name: str, args, kwargs, dims: tuple[int, int], ndim: int) -> tuple[int, int] | None:
    """Where the spatial dimensions ``dims`` go under a permute or transpose (None: not understood)."""
    if name == "permute":
        order = list(args[1:]) if len(args) > 2 else list(arg(args, kwargs, 1, "dims", ()))
        order = [int(d) % ndim for d in order]
        return (order.index(dims[0]), order.index(dims[1])) if sorted(order) == list(range(ndim)) else None
    first = int(arg(args, kwargs, 1, "dim0", 0)) % ndim
    second = int(arg(args, kwargs, 2, "dim1", 0)) % ndim
    swap = {first: second, second: first}
    return (swap.get(dims[0], dims[0]), swap.get(dims[1], dims[1]))


class _GeometryMode(TorchFunctionMode):
    """Follows every tensor made from the input: its geometry, and which of its dimensions are the image's
    rows and columns (2 and 3 in NCHW; 1 and 2 after a permute to channels-last, as ConvNeXt's blocks do
    for their norm and MLP)."""

    def __init__(self, source: torch.Tensor):
        super().__init__()
        # id -> (tensor, geometry, spatial dimensions); the tensor is kept so its id is not reused
        self.geos: dict[int, tuple[torch.Tensor, Geometry, tuple[int, int]]] = {
            id(source): (source, Geometry(), (2, 3))}

    def of(self, tensor: torch.Tensor) -> Geometry | None:
        found = self.geos.get(id(tensor))
        return found[1] if found is not None and found[0] is tensor else None

    def dims(self, tensor: torch.Tensor) -> tuple[int, int]:
        return self.geos[id(tensor)][2]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        inputs = [t for t in _tensors((args, kwargs)) if self.of(t) is not None]
        outs = list(_tensors(result))
        if not inputs or not outs:
            return result
        name = getattr(func, "__name__", "")
        for out in outs:  # every output: chunk, split and unbind make several
            dims = self.dims(inputs[0])
            if name in _REORDER and inputs[0] is args[0]:
                moved = _reordered(name, args, kwargs, dims, inputs[0].dim())
                geo, dims = (self.of(inputs[0]), moved) if moved is not None else (WHOLE, dims)
            elif name in _MIXING:
                geo = WHOLE
            else:
                geo = self._propagate(name, args, kwargs, inputs, out)
            self.geos[id(out)] = (out, geo, dims)
        return result

    def _propagate(self, name, args, kwargs, inputs, out) -> Geometry:
        first = self.of(inputs[0])
        assert first is not None  # ``inputs`` are the tensors whose geometry is known
        nchw = self.dims(inputs[0]) == (2, 3)
        if name == "conv2d" and inputs[0] is args[0] and nchw:
            weight = arg(args, kwargs, 1, "weight", None)
            kernel = tuple(weight.shape[-2:])
            stride = arg(args, kwargs, 3, "stride", 1)
            padding = arg(args, kwargs, 4, "padding", 0)
            dilation = arg(args, kwargs, 5, "dilation", 1)
            if padding == "valid":
                padding = 0
            elif padding == "same":
                d = _pair(dilation)
                padding = tuple(d[a] * (kernel[a] - 1) // 2 for a in range(2))
            return _window(first, kernel, stride, padding, dilation)
        if name in ("max_pool2d", "_max_pool2d", "max_pool2d_with_indices", "avg_pool2d") and inputs[0] is args[0] \
                and nchw:
            kernel = arg(args, kwargs, 1, "kernel_size", 1)
            stride = arg(args, kwargs, 2, "stride", None) or kernel
            padding = arg(args, kwargs, 3, "padding", 0)
            dilation = arg(args, kwargs, 4, "dilation", 1) if "max" in name else 1
            return _window(first, kernel, stride, padding, dilation)
        if name in ("pad", "_pad") and inputs[0] is args[0] and not first.whole and nchw:
            pad = list(arg(args, kwargs, 1, "pad", ()))
            if len(pad) >= 4:
                left, top = pad[0], pad[2]
                return Geometry(first.jump,
                                (first.lo[0] - top * first.jump[0], first.lo[1] - left * first.jump[1]),
                                (first.hi[0] - top * first.jump[0], first.hi[1] - left * first.jump[1]))
            return WHOLE
        # anything else: an element-wise function (or one along the channels alone, as a linear layer or a
        # norm on a channels-last map) keeps positions, all else mixes them
        h, w = self.dims(inputs[0])
        if max(h, w) >= out.dim():
            return WHOLE
        size = (out.shape[h], out.shape[w])
        if all(t.dim() == out.dim() and self.dims(t) == (h, w) and (t.shape[h], t.shape[w]) == size for t in inputs):
            return _union([geo for geo in map(self.of, inputs) if geo is not None])  # every one of them
        return WHOLE


def receptive_fields(model: nn.Module, modules: dict[str, nn.Module], input_size: tuple[int, int],
                     ) -> dict[str, Geometry]:
    """The geometry of each named module's output for an input of ``input_size`` (H, W)."""
    param = next(model.parameters(), None)  # a model may be in float64, or on a GPU
    x = torch.zeros(1, 3, *input_size, device=param.device if param is not None else "cpu",
                    dtype=param.dtype if param is not None else torch.float32)
    with inference_state(model), torch.no_grad():
        mode = _GeometryMode(x)
        with mode:
            outputs = capture(model, x, modules)
        result = {}
        for name, out in outputs.items():
            geo = mode.of(out)
            result[name] = geo if geo is not None and out.dim() == 4 and mode.dims(out) == (2, 3) else WHOLE
    return result


def mass_sides(grads: torch.Tensor, centres: list[tuple[int, int]], share: float = 0.9) -> list[int]:
    """For each picture [3, H, W] of ``grads``, the side (odd) of the smallest square centred on its
    centre that holds ``share`` of its mass (|g| summed over the colour channels; DESIGN §2, effective
    receptive field).  A square may reach past the image; a picture with no mass gets side 1."""
    mass = grads.abs().sum(dim=1).double()  # [N, H, W]
    n, height, width = mass.shape
    integral = torch.zeros(n, height + 1, width + 1, dtype=mass.dtype, device=mass.device)
    integral[:, 1:, 1:] = mass.cumsum(1).cumsum(2)
    radius = torch.arange(max(height, width) + 1, device=mass.device)
    centre = torch.as_tensor(centres, device=mass.device).view(n, 2, 1)
    y0 = (centre[:, 0] - radius).clamp(0, height)
    y1 = (centre[:, 0] + radius + 1).clamp(0, height)
    x0 = (centre[:, 1] - radius).clamp(0, width)
    x1 = (centre[:, 1] + radius + 1).clamp(0, width)
    rows = torch.arange(n, device=mass.device).view(n, 1)
    inside = (integral[rows, y1, x1] - integral[rows, y0, x1] - integral[rows, y1, x0] + integral[rows, y0, x0])
    enough = inside >= share * integral[:, -1, -1].view(n, 1)
    first = torch.where(enough.any(dim=1), enough.float().argmax(dim=1), torch.full((n,), len(radius) - 1,
                                                                                    device=mass.device))
    return (2 * first + 1).tolist()
