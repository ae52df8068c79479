"""Input checks shared by the layers: clear ``ValueError``/``TypeError`` messages, never asserts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from handgrad.nn.module import Module


def label(module: Module) -> str:
    """A short name for messages, e.g. ``Linear(in_features=784, out_features=50, bias=True)``."""
    return f"{type(module).__name__}({module.extra_repr()})"


def check_input(
    module: Module,
    x: object,
    *,
    ndim: int | None = None,
    min_ndim: int | None = None,
    features: int | None = None,
    expected: str | None = None,
    like: Tensor | None = None,
    what: str = "input",
) -> Tensor:
    """Check that ``x`` is a floating tensor of the expected shape, dtype and device.

    Args:
        module: the module doing the checking (named in the message).
        x: the candidate input.
        ndim: exact number of dimensions, if fixed.
        min_ndim: smallest number of dimensions, if not fixed.
        features: required size of the last dimension.
        expected: the shape as a person reads it, e.g. ``"(N, 784)"``.
        like: a parameter whose dtype and device the input must share.
        what: which argument this is, for the message.

    Returns:
        ``x``, typed as a tensor.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{label(module)}: expected a tensor {what}, got {type(x).__name__}")
    shape_ok = (ndim is None or x.dim() == ndim) and (min_ndim is None or x.dim() >= min_ndim)
    if shape_ok and features is not None:
        shape_ok = x.dim() >= 1 and x.shape[-1] == features
    if not shape_ok:
        raise ValueError(
            f"{label(module)}: expected {what} of shape {expected}, got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{label(module)}: expected a floating-point {what}, got {x.dtype}; "
            "convert it with .float() or .double()"
        )
    if like is not None and (x.dtype != like.dtype or x.device != like.device):
        raise TypeError(
            f"{label(module)}: {what} is {x.dtype} on {x.device} but the parameters are "
            f"{like.dtype} on {like.device}; use model.to(dtype=..., device=...) or convert the "
            f"{what}"
        )
    return x


def check_dtype(dtype: torch.dtype | None) -> torch.dtype:
    """Return a floating dtype (default float32), or raise TypeError."""
    if dtype is None:
        return torch.float32
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"expected a floating-point torch dtype, got {dtype!r}")
    return dtype
