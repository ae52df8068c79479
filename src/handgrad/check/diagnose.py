"""Name the bug: compare a wrong gradient with its reference and say which pattern explains it.

Tried in this order, the first that explains the hand-written gradient ``a`` wins:

1. values that are not finite;
2. a shape that differs from the parameter's: a transpose, a bias not summed over the batch,
   a kept dimension;
3. all zeros;
4. the classic slips of the layer at hand (``handgrad.check.slips``): the activation derivative at
   the output instead of the input, a missing softmax or mean term, ...;
5. a constant factor a = c · r, named when c is 2, ½, −1, N, 1/N (N the batch size), C, N·C or
   their negatives;
6. a transpose of a square matrix;
7. otherwise: no recognised pattern, with the largest differing entries as evidence.

Every message says what the gradient is, the evidence, and what usually causes it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from handgrad.check.compare import Tolerance, max_abs
from handgrad.check.finite_diff import unravel

FACTOR_2 = "factor 2"
FACTOR_HALF = "factor 1/2"
FACTOR_N = "factor N"
FACTOR_INV_N = "factor 1/N"
SIGN = "sign"
FACTOR = "constant factor"
FACTOR_NC = "factor N·C"
TRANSPOSE = "transpose"
BIAS_NOT_SUMMED = "bias not summed over the batch"
KEPT_DIM = "extra dimension"
SHAPE = "shape"
ZEROS = "all zeros"
NOT_FINITE = "not finite"
NOT_ACCUMULATED = "not accumulated"
NOT_REPEATABLE = "not repeatable"
RAISED = "backward raised"
AT_OUTPUT = "derivative at the output"
OUTPUT_FORM_AT_INPUT = "output-form derivative at the input"
DERIVATIVE_MISSING = "derivative missing"
MASK_FROM_GRADIENT = "mask from the gradient"
SOFTMAX_TERM_MISSING = "softmax term missing"
ONE_HOT_TERM_MISSING = "one-hot term missing"
JACOBIAN_DIAGONAL = "Jacobian diagonal only"
MEAN_TERM_DROPPED = "mean term dropped"
VARIANCE_TERM_DROPPED = "variance term dropped"
STATS_AS_CONSTANTS = "statistics treated as constants"
UNRECOGNISED = "no recognised pattern"

# What a size is, for messages: the keys of ``sizes`` passed to ``diagnose``.
SIZE_MEANING = {
    "N": "the batch size",
    "C": "the number of output features",
    "N·C": "the number of elements",
}


@dataclass(frozen=True)
class Diagnosis:
    """The name of a bug pattern and a sentence for a learner with the evidence.

    Attributes:
        pattern: one of the constants of this module, e.g. ``"factor 2"``, ``"transpose"``.
        message: what the gradient is, the evidence, and the usual cause.
        factor: the fitted constant, for the factor patterns.
    """

    pattern: str
    message: str
    factor: float | None = None


@dataclass(frozen=True)
class Candidate:
    """What a gradient would be after one classic slip: a pattern, its explanation, the tensor."""

    pattern: str
    explanation: str
    tensor: Tensor


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _close(a: Tensor, b: Tensor, rtol: float, scale: float) -> tuple[bool, float]:
    """Whether a ≈ b to ``rtol · scale``, and max |a − b|."""
    if a.shape != b.shape:
        return False, math.inf
    diff = max_abs(a.double() - b.double())
    return diff <= rtol * scale, diff


def _named_factors(sizes: Mapping[str, int]) -> list[tuple[float, str, str, str]]:
    """(value, pattern, symbol, meaning) for the constants worth a name."""
    named: list[tuple[float, str, str, str]] = [
        (
            2.0,
            FACTOR_2,
            "2",
            "a factor 2 counted twice: e.g. the 2 of d(x²)/dx = 2x applied "
            "twice, or the same gradient added twice",
        ),
        (0.5, FACTOR_HALF, "1/2", "a factor 2 is missing: e.g. the 2 of d(x²)/dx = 2x"),
    ]
    for key, size in sizes.items():
        if size <= 1:
            continue
        meaning = f"{key} = {size}, {SIZE_MEANING.get(key, key)}"
        if key == "N":
            named.append(
                (
                    float(size),
                    FACTOR_N,
                    key,
                    f"{meaning}: the 1/N of a mean over the batch is missing",
                )
            )
            named.append(
                (
                    1.0 / size,
                    FACTOR_INV_N,
                    f"1/{key}",
                    f"{meaning}: an extra 1/N, e.g. "
                    "the batch size divided out twice, or a sum over the batch replaced "
                    "by a mean",
                )
            )
        else:
            inverse = f"1/({key})" if "·" in key else f"1/{key}"
            named.append(
                (
                    float(size),
                    f"factor {key}",
                    key,
                    f"{meaning}: a division by {key} is missing"
                    f" ('mean' divides by {SIZE_MEANING.get(key, key)})",
                )
            )
            named.append(
                (1.0 / size, f"factor {inverse}", inverse, f"{meaning}: an extra division by {key}")
            )
    return named


def _factor(
    name: str, a: Tensor, r: Tensor, tol: Tolerance, scale: float, sizes: Mapping[str, int]
) -> Diagnosis | None:
    """a = c · r for a constant c (fitted by least squares), named when c is a known constant."""
    a64, r64 = a.double().reshape(-1), r.double().reshape(-1)
    rr = float(r64 @ r64)
    if rr == 0.0 or scale == 0.0:
        return None
    c = float(a64 @ r64) / rr
    residual = max_abs(a64 - c * r64)
    if c == 0.0 or residual > tol.diagnose_rtol * abs(c) * scale:
        return None
    evidence = f"fitted factor {_fmt(c)}, largest deviation {residual:.1e}"
    sign = -1.0 if c < 0 else 1.0
    if abs(c + 1.0) <= tol.diagnose_rtol:
        return Diagnosis(
            SIGN,
            f"{name} is the reference with its sign flipped ({evidence}): a minus sign is "
            "wrong, e.g. (t − x) for (x − t), or a gradient subtracted instead of added",
            c,
        )
    for value, pattern, symbol, meaning in _named_factors(sizes):
        if abs(abs(c) - value) <= tol.diagnose_rtol * value:
            if sign < 0:
                return Diagnosis(
                    SIGN,
                    f"{name} is −{symbol} × the reference ({evidence}): the sign is flipped, "
                    f"and {meaning}",
                    c,
                )
            return Diagnosis(
                pattern, f"{name} is {symbol} × the reference ({evidence}): {meaning}", c
            )
    return Diagnosis(
        FACTOR,
        f"{name} is a constant multiple of the reference ({evidence}): the formula is right "
        "up to a constant, so look for a wrong scale (a mean, a 2, a learning rate, a sign)",
        c,
    )


def _shape(name: str, a: Tensor, r: Tensor, tol: Tolerance, scale: float) -> Diagnosis:
    """Explain a gradient whose shape is not the reference's."""
    got, want = tuple(a.shape), tuple(r.shape)
    if a.dim() == 2 and got == want[::-1] and _close(a.t(), r, tol.diagnose_rtol, scale)[0]:
        return Diagnosis(
            TRANSPOSE,
            f"{name} has shape {got} but should have {want}, and its transpose is the "
            "reference: the gradient is transposed, e.g. xᵀ·g where dL/dW = gᵀ·x has W's "
            "shape (D_out, D_in)",
        )
    if a.dim() == r.dim() + 1 and got[1:] == want:
        if got[0] == 1 and _close(a[0], r, tol.diagnose_rtol, scale)[0]:
            return Diagnosis(
                KEPT_DIM,
                f"{name} has shape {got} but should have {want}; the values are right: drop "
                "the kept dimension (sum(0), not sum(0, keepdim=True))",
            )
        if _close(a.sum(0), r, tol.diagnose_rtol, scale)[0]:
            return Diagnosis(
                BIAS_NOT_SUMMED,
                f"{name} has shape {got} but should have {want}, and its sum over the first "
                f"dimension is the reference: the gradient was not summed over the batch "
                f"(N = {got[0]}); a bias gets Σ_n dL/dy[n], one value per feature",
            )
    return Diagnosis(SHAPE, f"{name} has shape {got}, but the parameter or input has {want}")


def _largest_differences(name: str, a: Tensor, r: Tensor, scale: float, tol: Tolerance) -> str:
    diff = (a.double() - r.double()).abs().reshape(-1)
    wrong = int((diff > tol.rtol * scale).sum())
    top = torch.topk(diff, min(3, diff.numel())).indices.tolist()
    shape = tuple(a.shape)
    parts = []
    for j in top:
        index = unravel(j, shape)
        parts.append(
            f"[{', '.join(map(str, index))}] yours {_fmt(float(a.reshape(-1)[j]))} vs "
            f"reference {_fmt(float(r.reshape(-1)[j]))}"
        )
    return (
        f"{name}: {UNRECOGNISED} (not a constant factor, a transpose, a sign, zeros or a known "
        f"missing term); {wrong} of {diff.numel()} entries differ, the largest at "
        + "; ".join(parts)
    )


def diagnose(
    name: str,
    actual: Tensor,
    expected: Tensor,
    *,
    tol: Tolerance,
    scale: float,
    sizes: Mapping[str, int],
    candidates: Sequence[Candidate] = (),
) -> Diagnosis:
    """Name the pattern that turns ``expected`` (the reference) into ``actual`` (hand-written).

    Args:
        name: the gradient's name, e.g. ``"2.weight"`` (used in the message).
        actual: the hand-written gradient.
        expected: the reference gradient.
        tol: the dtype's tolerance (``diagnose_rtol`` decides whether a pattern fits).
        scale: the reference's effective scale S (see ``compare``).
        sizes: the sizes a factor may be named after, e.g. ``{"N": 8, "C": 10, "N·C": 80}``.
        candidates: the layer's classic slips, from ``handgrad.check.slips``.
    """
    a, r = actual.detach(), expected.detach()
    if a.shape == r.shape and not bool(torch.isfinite(a).all()):
        bad = int((~torch.isfinite(a)).sum())
        return Diagnosis(
            NOT_FINITE,
            f"{name} has {bad} entries that are NaN or infinite: look for a division by zero, "
            "a log of 0, or an exponent that overflows",
        )
    if a.shape != r.shape:
        return _shape(name, a, r, tol, scale)
    if not bool(a.any()):
        return Diagnosis(
            ZEROS,
            f"{name} is all zeros but the reference is not (largest entry {max_abs(r):.3g}): "
            "nothing reached it, e.g. .grad never written, or a mask that blocks everything",
        )
    for candidate in candidates:
        fits, diff = _close(a, candidate.tensor, tol.diagnose_rtol, scale)
        if fits and not _close(candidate.tensor, r, tol.rtol, scale)[0]:
            return Diagnosis(
                candidate.pattern,
                f"{name} {candidate.explanation} (it matches that to {diff:.1e})",
            )
    factor = _factor(name, a, r, tol, scale, sizes)
    if factor is not None:
        return factor
    if a.dim() == 2 and a.shape[0] == a.shape[1]:
        fits, diff = _close(a, r.t(), tol.diagnose_rtol, scale)
        if fits:
            return Diagnosis(
                TRANSPOSE,
                f"{name} is the reference transposed (max difference from rᵀ {diff:.1e}): a "
                "square matrix hides a transpose from the shape check, e.g. xᵀ·g for gᵀ·x",
            )
    return Diagnosis(UNRECOGNISED, _largest_differences(name, a, r, scale, tol))


_ASSIGNED = re.compile(
    r"assign a gradient of size '\[([\d, ]*)\]' to a tensor of size '\[([\d, ]*)\]'"
)
_BROADCAST = re.compile(
    r"output with shape \[([\d, ]*)\] doesn't match the broadcast shape \[([\d, ]*)\]"
)


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s.strip())


def error_shapes(exc: BaseException) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(gradient shape, parameter shape) when torch refused a wrongly shaped ``.grad``."""
    text = str(exc)
    m = _ASSIGNED.search(text)
    if m:
        return _sizes(m.group(1)), _sizes(m.group(2))
    m = _BROADCAST.search(text)
    if m:
        return _sizes(m.group(2)), _sizes(m.group(1))
    return None


def diagnose_error(name: str, exc: BaseException) -> Diagnosis:
    """Explain an exception raised by a backward pass.

    torch refuses a ``.grad`` of the wrong shape, assigned (``p.grad = g``) or added in place
    (``p.grad += g``); the shapes in its message tell a transpose or a missing sum over the
    batch from other mistakes.
    """
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    shapes = error_shapes(exc)
    if shapes is not None:
        got, want = shapes
        if len(want) == 2 and got == want[::-1]:
            return Diagnosis(
                TRANSPOSE,
                f"{name}: backward put a gradient of shape {got} into a .grad of shape {want} "
                f"(torch refused: {text}): the gradient is transposed, e.g. xᵀ·g where "
                "dL/dW = gᵀ·x has W's shape (D_out, D_in)",
            )
        if len(got) > len(want) and tuple(s for s in got if s != 1) == tuple(
            s for s in want if s != 1
        ):
            return Diagnosis(
                KEPT_DIM,
                f"{name}: backward put a gradient of shape {got} into a .grad of shape {want} "
                f"(torch refused: {text}): drop the kept dimension of size 1, e.g. g.sum(0) "
                "instead of g.sum(0, keepdim=True)",
            )
        if len(got) == len(want) + 1 and got[1:] == want:
            return Diagnosis(
                BIAS_NOT_SUMMED,
                f"{name}: backward put a gradient of shape {got} into a .grad of shape {want} "
                f"(torch refused: {text}): it was not summed over the batch (N = {got[0]}); a "
                "bias gets Σ_n dL/dy[n], one value per feature",
            )
        return Diagnosis(
            SHAPE, f"{name}: backward put a gradient of shape {got} into a .grad of shape {want}"
        )
    return Diagnosis(RAISED, f"{name}: backward raised {text}")


def diagnose_accumulation(
    name: str, first: Tensor, after: Tensor, preload: Tensor, tol: Tolerance, scale: float
) -> Diagnosis:
    """Explain a parameter whose ``.grad`` did not become ``preload + first`` on a second call."""
    if _close(after, first, tol.rtol, scale)[0]:
        return Diagnosis(
            NOT_ACCUMULATED,
            f"{name}: not accumulated. A second backward, onto a .grad that already held a "
            "value, left only that call's gradient (the earlier value was lost): the backward "
            "assigns (.grad = …) where it must add (.grad += …), so gradients summed over "
            "several calls (chunks, accumulation steps) keep only the last one",
        )
    added = after.double() - preload.double()
    return Diagnosis(
        NOT_REPEATABLE,
        f"{name}: a second identical forward/backward added a different gradient (max "
        f"difference {max_abs(added - first.double()):.3g}): the backward depends on state it "
        "should not (a stale cache, or .grad read back into the computation)",
    )
