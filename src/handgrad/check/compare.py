"""One row of the check: a hand-written gradient against a reference, its metrics and verdict.

The metrics are those of the backprop-ninja ``cmp`` table: exact (bit-equal), approximate
(close at the dtype's tolerance) and the largest absolute difference, plus the largest relative
error. "Close" is judged over the whole tensor, not entry by entry:

    max |a − r|  ≤  rtol · S,    S = max(max |r|, κ · S_layer)

where ``S_layer`` is the largest reference gradient of the same layer. The floor κ · S_layer is
what lets a gradient that is zero in exact arithmetic (a bias in front of a normalization, whose
reference is rounding noise) pass, without loosening the check of ordinary gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

OK = "ok"
WRONG = "wrong"
SHAPE = "shape mismatch"
ERROR = "error"
VACUOUS = "vacuous"
SKIPPED = "skipped"
INHERITED = "inherited"
DRIFT = "drift"

# Verdicts that make a layer faulty (the report names the first such layer).
FAULTY = frozenset({WRONG, SHAPE, ERROR})


@dataclass(frozen=True)
class Tolerance:
    """How close a hand-written gradient must be, for one dtype.

    Attributes:
        rtol: allowed max |a − r| relative to the effective scale S (see the module docstring).
        floor: κ, the fraction of the layer's largest gradient below which S does not go.
        fd_rtol: allowed error against float64 central finite differences, relative to S.
        diagnose_rtol: how exactly a pattern (a factor, a transpose, ...) must explain a wrong
            gradient before the diagnosis names it.
    """

    rtol: float
    floor: float
    fd_rtol: float
    diagnose_rtol: float


# float64: hand-written and autograd agree to ~1e-15; a real bug is off by O(1). float32:
# reordered sums differ by ~1e-6 relative, more through a normalization with a tiny variance.
TOLERANCES = {
    torch.float64: Tolerance(rtol=1e-8, floor=1e-2, fd_rtol=1e-6, diagnose_rtol=1e-6),
    torch.float32: Tolerance(rtol=1e-4, floor=1e-1, fd_rtol=1e-4, diagnose_rtol=1e-3),
}


def tolerance_for(dtype: torch.dtype) -> Tolerance:
    """The tolerance for ``dtype``; float32 and float64 are supported."""
    if dtype not in TOLERANCES:
        raise ValueError(f"gradcheck: dtype must be torch.float64 or torch.float32, got {dtype}")
    return TOLERANCES[dtype]


@dataclass(frozen=True)
class Comparison:
    """The metrics of one hand-written gradient against its reference.

    ``vacuous`` is set when both tensors are exactly zero (or empty): such a comparison proves
    nothing, and the report fails rather than pass it.
    """

    shape_ok: bool
    exact: bool
    approx: bool
    max_abs_diff: float
    max_rel_err: float
    finite: bool
    vacuous: bool


def max_abs(t: Tensor) -> float:
    """max |t| as a float (0 for an empty tensor)."""
    return float(t.detach().abs().max()) if t.numel() else 0.0


def effective_scale(expected: Tensor, layer_scale: float, tol: Tolerance) -> float:
    """S = max(max |r|, κ · S_layer)."""
    return max(max_abs(expected), tol.floor * layer_scale)


def compare(actual: Tensor, expected: Tensor, *, tol: Tolerance, layer_scale: float) -> Comparison:
    """Compare a hand-written gradient with its reference (shapes must match to be close)."""
    if actual.shape != expected.shape:
        return Comparison(False, False, False, math.inf, math.inf, True, False)
    finite = bool(torch.isfinite(actual).all())
    vacuous = actual.numel() == 0 or (
        not bool(actual.any()) and not bool(expected.to(actual.dtype).any())
    )
    exact = torch.equal(actual, expected.to(actual.dtype))
    if not finite:
        return Comparison(True, False, False, math.inf, math.inf, False, vacuous)
    diff = max_abs(actual.double() - expected.double())
    scale = effective_scale(expected.double(), layer_scale, tol)
    rel = diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)
    return Comparison(True, exact, diff <= tol.rtol * scale, diff, rel, True, vacuous)
