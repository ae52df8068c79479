"""The autograd reference for one layer or loss: its torch.nn twin, or None.

The twin and the vector-Jacobian products come from ``handgrad.reference`` (the one module that
runs autograd). A subclass that overrides only ``backward`` (the usual way to write, or to
break, a backward pass) computes its base class's function, so it is given its base class's
twin; a class that overrides ``forward`` has none, and is checked by finite differences alone.
"""

from __future__ import annotations

import torch

from handgrad import nn
from handgrad.reference import loss_gradient, loss_to_torch, to_torch, twin_base, vjp

__all__ = ["handgrad_base", "loss_gradient", "loss_twin", "module_twin", "vjp"]

handgrad_base = twin_base


def module_twin(module: nn.Module) -> torch.nn.Module | None:
    """The torch.nn twin of one layer (same parameters, buffers and mode), or None."""
    try:
        return to_torch(module)
    except TypeError:
        return None


def loss_twin(loss: nn.Module) -> torch.nn.Module | None:
    """The torch.nn twin of a loss, or None."""
    try:
        return loss_to_torch(loss)
    except TypeError:
        return None
