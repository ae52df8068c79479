"""The autograd reference for one layer or loss: its torch.nn twin and a vector-Jacobian product.

The twin comes from ``handgrad.reference``. A subclass that overrides only ``backward`` (the
usual way to write, or to break, a backward pass) computes its base class's function, so it is
given its base class's twin; a class that overrides ``forward`` has none, and is checked by
finite differences alone.

This is the one place in ``handgrad.check`` where autograd runs (``torch.autograd.grad`` on a
twin built by ``handgrad.reference``).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from handgrad import nn
from handgrad.reference import loss_to_torch, to_torch

_ABSTRACT = (nn.Module, nn.Loss)


def handgrad_base(cls: type) -> type | None:
    """The handgrad.nn class whose forward ``cls`` runs, or None if ``cls`` has its own forward."""
    for klass in cls.__mro__:
        if klass.__module__.startswith("handgrad.nn."):
            if klass in _ABSTRACT or getattr(cls, "forward", None) is not vars(klass).get(
                "forward", getattr(klass, "forward", None)
            ):
                return None
            return klass
    return None


def _as_base(module: nn.Module) -> nn.Module | None:
    """A shallow copy of ``module`` whose class is its handgrad base class, or None."""
    base = handgrad_base(type(module))
    if base is None:
        return None
    if base is type(module):
        return module
    proxy = copy.copy(module)
    proxy.__class__ = base
    return proxy


def module_twin(module: nn.Module) -> torch.nn.Module | None:
    """The torch.nn twin of one layer (same parameters, buffers and mode), or None."""
    proxy = _as_base(module)
    if proxy is None:
        return None
    try:
        return to_torch(proxy)
    except TypeError:
        return None


def loss_twin(loss: nn.Module) -> torch.nn.Module | None:
    """The torch.nn twin of a loss, or None."""
    proxy = _as_base(loss)
    if proxy is None:
        return None
    try:
        return loss_to_torch(proxy)
    except TypeError:
        return None


def vjp(
    twin: torch.nn.Module, x: Tensor, upstream: Tensor
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Forward ``twin`` on ``x`` and pull ``upstream`` back: (output, dL/dx, dL/dparams).

    L = Σ output · upstream, so dL/d(output) is ``upstream``. Parameters the output does not
    depend on get zero gradients.
    """
    x_in = x.detach().clone().requires_grad_(True)
    params = [(name, p) for name, p in twin.named_parameters() if p.requires_grad]
    with torch.enable_grad():
        out = twin(x_in)
        grads = torch.autograd.grad(
            out, [x_in, *[p for _, p in params]], grad_outputs=upstream, allow_unused=True
        )
    grad_x = grads[0] if grads[0] is not None else torch.zeros_like(x)
    param_grads = {
        name: (g if g is not None else torch.zeros_like(p)).detach()
        for (name, p), g in zip(params, grads[1:], strict=True)
    }
    return out.detach(), grad_x.detach(), param_grads


def loss_gradient(
    twin: torch.nn.Module, x: Tensor, target: Tensor, upstream: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The twin loss's value at ``x`` and its gradient dL/dx (``upstream`` for reduction='none')."""
    x_in = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = twin(x_in, target)
        (grad,) = torch.autograd.grad(value, [x_in], grad_outputs=upstream)
    return value.detach(), grad.detach()
