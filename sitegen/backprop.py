"""Backward rules for ReLU-like functions, and capturing layer outputs.

Guided backprop, deconvnet and the plain gradient differ only in how the
backward pass goes through a ReLU (DESIGN §2).  Instead of module hooks,
which go wrong on in-place ReLUs and on a ReLU module called several times
in one forward, every ReLU-like call is intercepted at the function level
(a ``TorchFunctionMode``) and replaced by an autograd function whose
backward reads the rule in force *when the backward runs*.  So one forward
can serve several backward passes, one per method.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

METHODS = ("guided", "deconv", "gradient")
# For optimizing an image, not a visualization: where a ReLU is closed for a whole image, it passes back
# what would open it, so a neuron that is silent at first still gets a gradient (Lucid's redirected ReLU).
REDIRECTED = "redirected"

# The rule in force.  A plain global, not a context variable: on CUDA the
# autograd engine runs backward functions in its own threads.
_rule = {"method": "gradient"}


class _ReLUWithRule(torch.autograd.Function):
    """max(0, x) (or min(max(0, x), upper)) with a switchable backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, upper: float | None, fn: Callable[[torch.Tensor], torch.Tensor]):
        # -1 below the open range (x <= 0), 1 above it (x >= upper), 0 open: one byte per element
        state = -(x <= 0).to(torch.int8)
        if upper is not None:
            state += (x >= upper).to(torch.int8)
        ctx.save_for_backward(state)
        return fn(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (state,) = ctx.saved_tensors
        mask = state == 0
        rule = _rule["method"]
        if rule == "guided":
            out = grad * mask * (grad > 0)
        elif rule == "deconv":
            out = grad.clamp(min=0)
        else:
            out = grad * mask
            if rule == REDIRECTED:
                # descending on a loss, a negative gradient raises x: let it through below the range,
                # a positive one above it, for the images whose true gradient is zero everywhere
                opening = mask | ((state < 0) & (grad < 0)) | ((state > 0) & (grad > 0))
                silent = (out.reshape(out.shape[0], -1) == 0).all(dim=1)
                silent = silent.reshape(-1, *[1] * (out.dim() - 1))
                out = torch.where(silent, grad * opening, out)
        return out, None, None


def _arg(args: tuple, kwargs: dict, index: int, name: str, default):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


# name of the torch function -> (index of the inplace flag or None, whether it is always in place)
_RELU_FUNCS = {
    "relu": (1, False),
    "relu_": (None, True),
    "relu6": (1, False),
    "hardtanh": (3, False),
    "hardtanh_": (None, True),
}


def _relu_call(func, args: tuple, kwargs: dict):
    """If ``func(*args, **kwargs)`` is a ReLU-like call, return (x, upper, inplace, plain_fn)."""
    name = getattr(func, "__name__", None)
    if name not in _RELU_FUNCS or not args or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    inplace_index, always_inplace = _RELU_FUNCS[name]
    inplace = always_inplace or bool(_arg(args, kwargs, inplace_index, "inplace", False))
    if name.startswith("relu6"):
        return x, 6.0, inplace, F.relu6
    if name.startswith("hardtanh"):
        low = float(_arg(args, kwargs, 1, "min_val", -1.0))
        high = float(_arg(args, kwargs, 2, "max_val", 1.0))
        if low != 0.0:  # not a ReLU: keep its true gradient
            return None
        return x, high, inplace, lambda t: F.hardtanh(t, 0.0, high)
    return x, None, inplace, torch.relu


class _RuleMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        call = _relu_call(func, args, kwargs)
        if call is None or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        x, upper, inplace, plain = call
        out = _ReLUWithRule.apply(x, upper, plain)
        if inplace:
            x.copy_(out)
            return x
        return out


@contextlib.contextmanager
def relu_rules() -> Iterator[None]:
    """Inside this context every ReLU / ReLU6 backward follows :func:`backward_rule`."""
    with _RuleMode():
        yield


def current_rule() -> str:
    return _rule["method"]


@contextlib.contextmanager
def backward_rule(method: str) -> Iterator[None]:
    if method not in METHODS + (REDIRECTED,):
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    previous = _rule["method"]
    _rule["method"] = method
    try:
        yield
    finally:
        _rule["method"] = previous


class _Stop(Exception):
    """Raised from a forward hook once every wanted layer is captured."""


def capture(model: nn.Module, x: torch.Tensor, modules: dict[str, nn.Module], *,
            copy: bool = False) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` until every given module has produced its output; return ``{name: output}``.

    The forward stops there, so layers low in the network cost only the
    network below them.  With ``copy`` the outputs are copied as they are made:
    a later in-place function (an in-place ReLU after a convolution, a residual
    ``+=``) would otherwise change an earlier layer's captured values.
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
            outputs[name] = output.detach().clone() if copy else output
            if len(outputs) == len(modules):
                raise _Stop
        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        try:
            model(x)
        except _Stop:
            pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in modules if name not in outputs]
    if missing:
        raise RuntimeError(f"layer(s) {', '.join(missing)} were not called in the model's forward")
    return outputs


@contextlib.contextmanager
def inference_state(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for the duration; both restored afterwards."""
    modes = {module: module.training for module in model.modules()}
    grads = {param: param.requires_grad for param in model.parameters()}
    try:
        model.eval()
        for param in grads:
            param.requires_grad_(False)
        yield
    finally:
        for module, mode in modes.items():
            module.training = mode
        for param, flag in grads.items():
            param.requires_grad_(flag)
