"""Name a learner's mistake: one fixed word (the kind) and a sentence with the evidence.

The learner's gradient ``a`` of a named tensor is compared with ``r``, the gradient recomputed
from the learner's own upstream gradients (the local reference). Tried in this order:

1. a shape that differs: a transpose (``a.T`` is ``r``), a sum over the wrong axis (``a`` is
   the gradient entering the tensor's use summed over another axis), a gradient not summed over
   the batch, a kept or dropped dimension, values right once reshaped, or a plain shape error;
2. all zeros;
3. a missing branch: the tensor is used k ≥ 2 times and ``a`` is the sum of only some of the
   k contributions;
4. an activation derivative at the wrong point: with Y = f(X) element-wise (tanh, sigmoid,
   exp, relu recognised from the values), dX = f'(Y)·dY (the derivative at the output) or
   dX = g(X)·dY where g is the output form of f' (1 − y² for tanh, y(1 − y) for sigmoid);
   or the derivative left out, dX = dY (kind ``unknown``: the fixed kinds have no word for
   it, the sentence names it);
5. a constant factor, a sign, a transposed square matrix (``handgrad.check.diagnose``);
6. otherwise ``unknown``, with the largest differing entries.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from handgrad.check import diagnose as d
from handgrad.check.compare import Tolerance, max_abs

KINDS = (
    "ok",
    "factor",
    "sign",
    "transpose",
    "shape",
    "missing_branch",
    "wrong_point",
    "zero",
    "inherited",
    "unknown",
)

MISSING_BRANCH = "missing branch"

_KIND_OF_PATTERN = {
    d.SIGN: "sign",
    d.TRANSPOSE: "transpose",
    d.ZEROS: "zero",
    d.BIAS_NOT_SUMMED: "shape",
    d.KEPT_DIM: "shape",
    d.SHAPE: "shape",
    d.AT_OUTPUT: "wrong_point",
    d.OUTPUT_FORM_AT_INPUT: "wrong_point",
    d.DERIVATIVE_MISSING: "unknown",
    MISSING_BRANCH: "missing_branch",
    d.NOT_FINITE: "unknown",
    d.UNRECOGNISED: "unknown",
}


def kind_of(pattern: str) -> str:
    """The report's kind word for a ``handgrad.check.diagnose`` pattern."""
    if pattern in _KIND_OF_PATTERN:
        return _KIND_OF_PATTERN[pattern]
    if pattern.startswith("factor") or pattern == d.FACTOR:
        return "factor"
    return "unknown"


@dataclass(frozen=True)
class Activation:
    """An element-wise activation recognised from values: f, f' at the input, and the output
    form of f' (f' written with y = f(x)), with the learner-facing formulas."""

    name: str
    f: Callable[[Tensor], Tensor]
    derivative: Callable[[Tensor], Tensor]
    output_form: Callable[[Tensor], Tensor]
    formula: str  # f'(x) in terms of y


ACTIVATIONS = (
    Activation("tanh", torch.tanh, lambda x: 1 - torch.tanh(x) ** 2, lambda y: 1 - y**2, "1 − y²"),
    Activation(
        "sigmoid",
        torch.sigmoid,
        lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x)),
        lambda y: y * (1 - y),
        "y·(1 − y)",
    ),
    Activation("exp", torch.exp, torch.exp, lambda y: y, "y"),
    Activation(
        "relu",
        lambda x: x.clamp_min(0.0),
        lambda x: (x > 0).to(x.dtype),
        lambda y: (y > 0).to(y.dtype),
        "(y > 0)",
    ),
)


@dataclass(frozen=True)
class Context:
    """What the graph tells about one named tensor, for the diagnosis.

    Attributes:
        uses: per use, its description (e.g. "`counts_sum`" or "the mul") and its contribution
            to the local reference (None when nothing flowed).
        upstream: per use, the gradient entering that operation (for the axis check), or None.
        pairs: (Y's name, X's value, Y's value, dY) for named Y = f(X) element-wise candidates.
    """

    uses: Sequence[tuple[str, Tensor | None]]
    upstream: Sequence[Tensor | None]
    pairs: Sequence[tuple[str, Tensor, Tensor, Tensor]]


def _close(a: Tensor, b: Tensor, rtol: float, scale: float) -> bool:
    return a.shape == b.shape and max_abs(a.double() - b.double()) <= rtol * scale


def squeezed_shape(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def diagnose_shape(
    grad_name: str, a: Tensor, r: Tensor, tol: Tolerance, scale: float, ctx: Context
) -> tuple[str, str]:
    """(kind, sentence) for a gradient whose shape is not the tensor's."""
    got, want = tuple(a.shape), tuple(r.shape)
    rt = tol.diagnose_rtol
    head = f"{grad_name} has shape {got} but the tensor has {want}"
    if a.dim() == 2 and got == want[::-1] and _close(a.t(), r, rt, scale):
        return "transpose", (
            f"{head}, and its transpose is right: the gradient is transposed (for W in "
            "x @ W, dW = x.T @ dout has W's shape)"
        )
    for up in ctx.upstream:
        if up is None or up.dim() == 0 or up.dim() < len(want):
            continue
        for axis, keep in itertools.product(range(up.dim()), (True, False)):
            s = up.sum(axis, keepdim=keep)
            if tuple(s.shape) == got and _close(s, a, rt, max(scale, max_abs(s))):
                lead = up.dim() - len(want)
                right = [
                    i
                    for i in range(up.dim())
                    if i < lead or (want[i - lead] == 1 and up.shape[i] != 1)
                ]
                where = ", ".join(map(str, right)) if right else "the broadcast axes"
                return "shape", (
                    f"{head}: it is the upstream gradient summed over axis {axis}"
                    f"{' with keepdim=True' if keep else ''}; the sum must run over axis "
                    f"{where}, the axes along which the tensor was broadcast"
                )
    if a.numel() == r.numel() and _close(a.reshape(want), r, rt, scale):
        if squeezed_shape(got) == squeezed_shape(want) and a.dim() < r.dim():
            return "shape", (
                f"{head}; the values are right once reshaped to {want}: keep the "
                "dimension (keepdim=True), or it broadcasts along the wrong axis"
            )
        return "shape", f"{head}; the values are right once reshaped to {want}"
    if a.dim() == r.dim() + 1 and got[1:] == want and _close(a.sum(0), r, rt, scale):
        return "shape", (
            f"{head}, and its sum over the first dimension is right: it was not summed over "
            f"the batch (N = {got[0]}); a bias gets Σ_n dL/dy[n], one value per feature"
        )
    return "shape", f"{head}, and no reshaping of it matches"


def candidates(grad_name: str, name: str, r: Tensor, ctx: Context) -> list[d.Candidate]:
    """The classic slips' versions of the local reference ``r`` for the diagnosis."""
    found: list[d.Candidate] = []
    parts = [(desc, c) for desc, c in ctx.uses if c is not None]
    if len(parts) >= 2:
        for k in range(1, len(parts)):
            for subset in itertools.combinations(range(len(parts)), k):
                kept = sum((parts[i][1].double() for i in subset), torch.zeros_like(r))
                missing = [parts[i][0] for i in range(len(parts)) if i not in subset]
                if kept.shape != r.shape:
                    continue
                found.append(
                    d.Candidate(
                        MISSING_BRANCH,
                        f"is missing a branch: `{name}` is used {len(parts)} times, and "
                        f"{grad_name} holds only the gradient through "
                        + " and ".join(parts[i][0] for i in subset)
                        + ", not the one through "
                        + " and ".join(missing)
                        + f"; add that contribution ({grad_name} += ...)",
                        kept,
                    )
                )
    for y_name, x, y, dy in ctx.pairs:
        for act in ACTIVATIONS:
            if not _close(act.f(x), y, 1e-9, max(max_abs(y), 1.0)):
                continue
            right = act.derivative(x) * dy
            at_out = r - right + act.derivative(y) * dy
            form_in = r - right + act.output_form(x) * dy
            found.append(
                d.Candidate(
                    d.DERIVATIVE_MISSING,
                    f"leaves out the derivative of {act.name}: with {y_name} = "
                    f"{act.name}({name}), d{name} = {act.name}'({name}) · d{y_name}, not "
                    f"d{y_name} alone",
                    r - right + dy,
                )
            )
            found.append(
                d.Candidate(
                    d.AT_OUTPUT,
                    f"takes the derivative of {act.name} at the output `{y_name}` instead of "
                    f"at its input `{name}`: with {y_name} = {act.name}({name}), "
                    f"d{name} = {act.name}'({name}) · d{y_name}",
                    at_out,
                )
            )
            found.append(
                d.Candidate(
                    d.OUTPUT_FORM_AT_INPUT,
                    f"takes the derivative of {act.name} at the wrong point: "
                    f"{act.formula} is {act.name}' written with y = the output, so put "
                    f"`{y_name}` in it, not `{name}`",
                    form_in,
                )
            )
    return found


def diagnose_values(
    grad_name: str,
    name: str,
    a: Tensor,
    r: Tensor,
    tol: Tolerance,
    scale: float,
    sizes: Mapping[str, int],
    ctx: Context,
) -> tuple[str, str]:
    """(kind, sentence) for a gradient of the right shape whose values are wrong."""
    found = d.diagnose(
        grad_name,
        a,
        r,
        tol=tol,
        scale=scale,
        sizes=sizes,
        candidates=candidates(grad_name, name, r, ctx),
    )
    message = found.message.replace("the reference", "the right gradient")
    return kind_of(found.pattern), message
