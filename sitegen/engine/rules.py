"""Backward rules for ReLU-like functions (DESIGN §2).

Guided backprop, deconvnet and the plain gradient differ only in how the
backward pass goes through a ReLU.  Instead of module hooks, which go wrong
on in-place ReLUs and on a ReLU module called several times in one forward,
every ReLU-like call is intercepted at the function level (a
``TorchFunctionMode``) and replaced by an autograd function whose backward
reads the rule in force *when the backward runs*.  So one forward can serve
several backward passes, one per method.

``RULES`` holds one function per ReLU-rule method of ``sitegen/methods.py``,
under the method's name: adding a method is a row there and a rule here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..methods import RULE_METHODS

# A rule gets the gradient arriving at a ReLU's output and ``through``, which passes a gradient through the
# ReLU as its true backward does, in one native pass (PyTorch's own ReLU backward); it returns the gradient the
# ReLU passes back to its input.  They run at every ReLU of every backward pass, so each is at most two
# element-wise passes, the second in place.
Through = Callable[[torch.Tensor], torch.Tensor]
Rule = Callable[[torch.Tensor, Through], torch.Tensor]


def _guided(grad: torch.Tensor, through: Through) -> torch.Tensor:
    return through(grad).clamp_(min=0)


def _deconv(grad: torch.Tensor, through: Through) -> torch.Tensor:
    return grad.clamp(min=0)


def _gradient(grad: torch.Tensor, through: Through) -> torch.Tensor:
    return through(grad)


def _redirected(grad: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """The true gradient, except for an image whose true gradient is zero everywhere: there a closed ReLU
    passes back what would open it (descending on a loss, a negative gradient raises x below the range, a
    positive one lowers it above).  Lucid's redirected ReLU, for optimizing an image from noise.  It needs to
    know on which side a ReLU was closed: ``state`` is int8, -1 below the open range, 1 above it, 0 open."""
    mask = state == 0
    out = grad * mask
    opening = mask | ((state < 0) & (grad < 0)) | ((state > 0) & (grad > 0))
    silent = (out.reshape(out.shape[0], -1) == 0).all(dim=1)
    silent = silent.reshape(-1, *[1] * (out.dim() - 1))
    return torch.where(silent, grad * opening, out)


RULES: dict[str, Rule] = {
    "guided": _guided, "deconv": _deconv, "gradient": _gradient}
if set(RULES) != set(RULE_METHODS):
    raise ImportError(f"engine/rules.py has rules for {sorted(RULES)}, methods.py lists {sorted(RULE_METHODS)}")
# Not a method: for optimizing an image (engine/optimization.py); it must be in force in the forward pass too.
REDIRECTED = "redirected"

# The rule in force.  A plain global, not a context variable: on CUDA the
# autograd engine runs backward functions in its own threads.
_rule = {"method": "gradient"}


def _through(saved: torch.Tensor, upper: float | None) -> Through:
    """The true backward of the ReLU from what its forward saved: its output (zero-cost to keep) or, for an
    in-place ReLU, whose output the model may change later, a bool mask of where it was open."""
    if saved.dtype == torch.bool:
        return lambda grad: grad * saved
    if upper is None:
        return lambda grad: torch.ops.aten.threshold_backward(grad, saved, 0.0)
    return lambda grad: torch.ops.aten.hardtanh_backward(grad, saved, 0.0, upper)


class _ReLUWithRule(torch.autograd.Function):
    """max(0, x) (or min(max(0, x), upper)) with a switchable backward.  Out of place, the forward is the ReLU
    alone and keeps its output, as PyTorch's own ReLU does; in place, it changes its input (one pass) and
    keeps one byte per element of where it was open (one more)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, upper: float | None, fn: Callable[[torch.Tensor, bool], torch.Tensor],
                inplace: bool):
        ctx.upper, ctx.redirected = upper, _rule["method"] == REDIRECTED
        if inplace:
            out = fn(x, True)
            ctx.mark_dirty(out)
        else:
            out = fn(x, False)
        if ctx.redirected:  # which side each closed ReLU is on
            state = -(out <= 0).to(torch.int8)
            if upper is not None:
                state += (out >= upper).to(torch.int8)
            ctx.save_for_backward(state)
        elif inplace:
            ctx.save_for_backward(out > 0 if upper is None else (out > 0) & (out < upper))
        else:
            ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (saved,) = ctx.saved_tensors
        method = _rule["method"]
        if ctx.redirected:
            rule = _redirected(grad, saved) if method == REDIRECTED else RULES[method](grad, _through(saved == 0, None))
            return rule, None, None, None
        if method == REDIRECTED:
            raise RuntimeError("the redirected rule must be in force during the forward pass too")
        return RULES[method](grad, _through(saved, ctx.upper)), None, None, None


def arg(args: tuple, kwargs: dict, index: int, name: str, default):
    """A function call's argument, given by position or by name."""
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
    """If ``func(*args, **kwargs)`` is a ReLU-like call, return (x, upper, inplace, plain_fn(x, inplace))."""
    name = getattr(func, "__name__", None)
    if name not in _RELU_FUNCS or not args or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    inplace_index, always_inplace = _RELU_FUNCS[name]
    inplace = always_inplace or (inplace_index is not None and bool(arg(args, kwargs, inplace_index, "inplace", False)))
    if name.startswith("relu6"):
        return x, 6.0, inplace, lambda t, in_place: F.hardtanh(t, 0.0, 6.0, in_place)
    if name.startswith("hardtanh"):
        low = float(arg(args, kwargs, 1, "min_val", -1.0))
        high = float(arg(args, kwargs, 2, "max_val", 1.0))
        if low != 0.0:  # not a ReLU: keep its true gradient
            return None
        return x, high, inplace, lambda t, in_place: F.hardtanh(t, 0.0, high, in_place)
    return x, None, inplace, lambda t, in_place: torch.relu_(t) if in_place else torch.relu(t)


class _RuleMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        call = _relu_call(func, args, kwargs)
        if call is None or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        x, upper, inplace, plain = call
        return _ReLUWithRule.apply(x, upper, plain, inplace)


@contextlib.contextmanager
def relu_rules() -> Iterator[None]:
    """Inside this context every ReLU / ReLU6 backward follows :func:`backward_rule`."""
    with _RuleMode():
        yield


def current_rule() -> str:
    return _rule["method"]


@contextlib.contextmanager
def backward_rule(method: str) -> Iterator[None]:
    if method not in RULES and method != REDIRECTED:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(RULES)}")
    previous = _rule["method"]
    _rule["method"] = method
    try:
        yield
    finally:
        _rule["method"] = previous
