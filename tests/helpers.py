"""Shared test helpers: tolerances and relative comparisons (no fixtures with side effects)."""

from __future__ import annotations

import torch
from torch import Tensor

# Relative tolerance of a hand-written gradient against autograd, by dtype.
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def rel_err(actual: Tensor, expected: Tensor, floor: float = 0.0) -> float:
    """max |a − e| / max(max |e|, floor).

    ``floor`` is the scale of the surrounding gradients: a gradient that is mathematically zero
    (a bias in front of a normalization) is then judged against the network's gradient scale
    rather than against its own rounding noise.
    """
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {tuple(actual.shape)} != {tuple(expected.shape)}")
    diff = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    scale = expected.double().abs().max().item() if expected.numel() else 0.0
    scale = max(scale, floor)
    return diff / scale if scale > 0 else diff


def assert_rel_close(
    actual: Tensor, expected: Tensor, tol: float, what: str = "", floor: float = 0.0
) -> None:
    err = rel_err(actual, expected, floor)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.0e}"
