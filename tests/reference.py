"""An independent, one-neuron-at-a-time reference for DESIGN §2.

It shares no code with sitegen's engine: the ReLU-like modules of a deep copy
of the model are swapped for explicit modules with the backward rule written
out, and each neuron gets its own forward and backward pass.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class _Rule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, upper, method):
        ctx.method = method
        ctx.save_for_backward(x)
        ctx.upper = upper
        return x.clamp(min=0) if upper is None else x.clamp(0, upper)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        alive = (x > 0) if ctx.upper is None else ((x > 0) & (x < ctx.upper))
        return RULES[ctx.method](grad, alive), None, None


# Each method's ReLU backward as DESIGN §2 writes it: the gradient arriving at the output, and where the
# ReLU was open -> the gradient passed to its input.  A method of sitegen's table without a rule here fails.
RULES = {
    "gradient": lambda grad, alive: grad * alive.to(grad.dtype),
    "deconv": lambda grad, alive: torch.where(grad > 0, grad, torch.zeros_like(grad)),
    "guided": lambda grad, alive: torch.where((grad > 0) & alive, grad, torch.zeros_like(grad)),
}


class RuleReLU(nn.Module):
    def __init__(self, upper, method):
        super().__init__()
        self.upper, self.method = upper, method

    def forward(self, x):
        return _Rule.apply(x, self.upper, self.method)


def swap_relus(model: nn.Module, method: str) -> nn.Module:
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, child_name, RuleReLU(6.0, method))
            elif isinstance(child, nn.ReLU):
                setattr(parent, child_name, RuleReLU(None, method))
    return model


def reference_visualize(model, images, layer_path, neurons, method):
    """[N, len(neurons), 3, H, W], one forward + backward per image and neuron."""
    ref = swap_relus(model, method)
    module = dict(ref.named_modules())[layer_path]
    out = torch.zeros(images.shape[0], len(neurons), *images.shape[1:], dtype=images.dtype)
    for n in range(images.shape[0]):
        for k, neuron in enumerate(neurons):
            x = images[n:n + 1].clone().requires_grad_(True)
            got = {}
            handle = module.register_forward_hook(lambda m, i, o, got=got: got.__setitem__("o", o))
            try:
                ref(x)
            finally:
                handle.remove()
            act = got["o"][0, neuron]
            flat = act.reshape(-1)
            # first maximum in row-major order
            position = int(torch.nonzero(flat == flat.max())[0])
            (grad,) = torch.autograd.grad(flat[position], x)
            out[n, k] = grad[0]
    return out


def reference_edges(model, images, lower_path, upper_path, neurons):
    """[N, len(neurons), C_lower]: w_ij = sum over positions of A_j * d a_i / d A_j, one neuron at a time.

    The lower output is made a leaf of its own: the rest of the network is run
    from it, so its gradient is the plain derivative of the upper activation.
    """
    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    results = []
    for n in range(images.shape[0]):
        rows = []
        for neuron in neurons:
            state = {}

            def take(module, inputs, output, state=state):
                leaf = output.detach().clone().requires_grad_(True)
                state["A"] = leaf
                return leaf  # the forward goes on from the leaf

            def grab(module, inputs, output, state=state):
                state["U"] = output

            h1 = modules[lower_path].register_forward_hook(take)
            h2 = modules[upper_path].register_forward_hook(grab)
            try:
                model(images[n:n + 1])
            finally:
                h1.remove()
                h2.remove()
            flat = state["U"][0, neuron].reshape(-1)
            position = int(torch.nonzero(flat == flat.max())[0])
            (grad,) = torch.autograd.grad(flat[position], state["A"])
            rows.append((state["A"] * grad)[0].reshape(state["A"].shape[1], -1).sum(1).detach())
        results.append(torch.stack(rows))
    return torch.stack(results)


def _only(channel):
    """A forward hook that keeps a layer's value but lets its gradient through one channel alone."""
    def hook(module, inputs, output):
        keep = torch.zeros(1, output.shape[1], *[1] * (output.dim() - 2), dtype=output.dtype)
        keep[0, channel] = 1
        return output.detach() + (output - output.detach()) * keep
    return hook


def reference_visualize_path(model, images, path, method, position=None):
    """[N, 3, H, W]: one path ([(module path, neuron), ...], root first), one forward + backward per image,
    the root taken at its maximum (or at ``position``).

    The masks are written into the forward: each later layer of the path is
    replaced by ``A.detach() + (A - A.detach()) * one_hot``, the same value
    with a gradient through the path's channel alone.
    """
    ref = swap_relus(model, method)
    modules = dict(ref.named_modules())
    (root, neuron), later = path[0], path[1:]
    out = torch.zeros(images.shape[0], *images.shape[1:], dtype=images.dtype)
    for n in range(images.shape[0]):
        x = images[n:n + 1].clone().requires_grad_(True)
        got = {}
        handles = [modules[name].register_forward_hook(_only(channel)) for name, channel in later]
        handles.append(modules[root].register_forward_hook(lambda m, i, o, got=got: got.__setitem__("o", o)))
        try:
            ref(x)
        finally:
            for handle in handles:
                handle.remove()
        flat = got["o"][0, neuron].reshape(-1)
        at = int(torch.nonzero(flat == flat.max())[0]) if position is None else position
        (grad,) = torch.autograd.grad(flat[at], x)
        out[n] = grad[0]
    return out


def reference_path_edges(model, images, path, lower_path):
    """[N, C_lower]: the path's weights to every neuron of the lower layer, made a leaf (see reference_edges),
    with the path's masks written into the forward as in reference_visualize_path."""
    contributions = reference_path_contributions(model, images, path, lower_path)
    return contributions.reshape(*contributions.shape[:2], -1).sum(2)


def reference_path_contributions(model, images, path, lower_path):
    """[N, C_lower, ...]: activation times gradient of the path's root at each position of the lower layer."""
    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    (root, neuron), later = path[0], path[1:]
    rows = []
    for n in range(images.shape[0]):
        state = {}

        def take(module, inputs, output, state=state):
            state["A"] = output.detach().clone().requires_grad_(True)
            return state["A"]

        handles = [modules[lower_path].register_forward_hook(take)]
        handles += [modules[name].register_forward_hook(_only(channel)) for name, channel in later]
        handles.append(modules[root].register_forward_hook(lambda m, i, o, state=state: state.__setitem__("U", o)))
        try:
            model(images[n:n + 1])
        finally:
            for handle in handles:
                handle.remove()
        flat = state["U"][0, neuron].reshape(-1)
        position = int(torch.nonzero(flat == flat.max())[0])
        (grad,) = torch.autograd.grad(flat[position], state["A"])
        rows.append((state["A"] * grad)[0].detach())
    return torch.stack(rows)


def reference_smoothgrad(model, images, layer_path, neurons, samples, noise, seed):
    """SmoothGrad as DESIGN §2 defines it, one image, neuron and noisy copy at a time: the mean plain gradient
    of the neuron's activation at its position on the clean image, over copies of the image plus the noise that
    image n's own generator (seed + n) draws, times ``noise`` times the image's range."""
    ref = copy.deepcopy(model).eval()
    module = dict(ref.named_modules())[layer_path]
    out = torch.zeros(images.shape[0], len(neurons), *images.shape[1:], dtype=images.dtype)
    for n in range(images.shape[0]):
        drawn = torch.randn((samples, *images.shape[1:]), generator=torch.Generator().manual_seed(seed + n))
        sigma = noise * (images[n].max() - images[n].min())
        for k, neuron in enumerate(neurons):
            got = {}

            def hook(module, inputs, output, got=got):
                got["o"] = output
                return output.clone()  # an in-place ReLU after the layer changes a copy, not its output

            handle = module.register_forward_hook(hook)
            try:
                with torch.no_grad():
                    ref(images[n:n + 1])
                flat = got["o"][0, neuron].reshape(-1)
                position = int(torch.nonzero(flat == flat.max())[0])  # on the clean image
                for s in range(samples):
                    x = (images[n] + drawn[s].to(images.dtype) * sigma)[None].clone().requires_grad_(True)
                    ref(x)
                    (grad,) = torch.autograd.grad(got["o"][0, neuron].reshape(-1)[position], x)
                    out[n, k] += grad[0] / samples
            finally:
                handle.remove()
    return out


def reference_picture(model, image, layer_path, neuron, position, method):
    """One neuron's picture ([3, H, W]) on one image ([3, H, W]) by a ReLU-rule method, the neuron taken at a
    given flat ``position`` (not necessarily its maximum): one forward and one backward."""
    ref = swap_relus(model, method)
    got = {}

    def hook(module, inputs, output):
        got["o"] = output
        return output.clone()  # the model goes on with a copy: an in-place ReLU after it changes not the output

    handle = dict(ref.named_modules())[layer_path].register_forward_hook(hook)
    try:
        x = image[None].clone().requires_grad_(True)
        ref(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(got["o"][0, neuron].reshape(-1)[position], x)
    return grad[0]


def reference_effects(model, images, layer_path, neurons, classes):
    """Means over ``images`` of (first-order effect, ablation) ``[len(neurons), len(classes)]``, one image,
    neuron and class at a time: the layer's output made a leaf for the gradient, a plain forward with the
    channel zeroed for the ablation."""
    ref = copy.deepcopy(model).eval()
    module = dict(ref.named_modules())[layer_path]
    first = torch.zeros(len(neurons), len(classes), dtype=torch.float64)
    exact = torch.zeros(len(neurons), len(classes), dtype=torch.float64)
    for n in range(images.shape[0]):
        x = images[n:n + 1]
        for k, neuron in enumerate(neurons):
            for c, cls in enumerate(classes):
                leaf = {}

                def as_leaf(m, i, o, leaf=leaf):
                    leaf["a"] = o.detach().clone().requires_grad_(True)
                    return leaf["a"].clone()  # an in-place ReLU after the layer changes a copy

                handle = module.register_forward_hook(as_leaf)
                try:
                    logit = ref(x)[0, cls]
                finally:
                    handle.remove()
                (grad,) = torch.autograd.grad(logit, leaf["a"])
                first[k, c] += float((leaf["a"][0, neuron].detach() * grad[0, neuron]).sum())

                def zero(m, i, o, neuron=neuron):
                    o = o.clone()
                    o[:, neuron] = 0
                    return o

                handle = module.register_forward_hook(zero)
                try:
                    with torch.no_grad():
                        without = ref(x)[0, cls]
                finally:
                    handle.remove()
                with torch.no_grad():
                    exact[k, c] += float(ref(x)[0, cls] - without)
    return first / images.shape[0], exact / images.shape[0]
