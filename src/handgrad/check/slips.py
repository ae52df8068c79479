"""The classic slips of each layer's backward, as the gradients they would produce.

``diagnose`` tries these before the generic patterns: when a wrong gradient equals one of them,
the diagnosis names the slip (the activation derivative taken at the output, a normalization's
mean term dropped, cross-entropy without its softmax term, ...).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from handgrad import nn
from handgrad.check.diagnose import (
    AT_OUTPUT,
    BIAS_NOT_SUMMED,
    DERIVATIVE_MISSING,
    JACOBIAN_DIAGONAL,
    MASK_FROM_GRADIENT,
    MEAN_TERM_DROPPED,
    ONE_HOT_TERM_MISSING,
    OUTPUT_FORM_AT_INPUT,
    SOFTMAX_TERM_MISSING,
    STATS_AS_CONSTANTS,
    TRANSPOSE,
    VARIANCE_TERM_DROPPED,
    Candidate,
)
from handgrad.nn.functional import soft_targets


def _elementwise_kind(module: nn.Module) -> type | None:
    for kind in (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU):
        if isinstance(module, kind):
            return kind
    return None


def layer_candidates(
    module: nn.Module,
    kind: str,
    local_name: str,
    x: Tensor,
    upstream: Tensor,
    output: Tensor | None = None,
    derivative_at: Callable[[Tensor], Tensor] | None = None,
) -> list[Candidate]:
    """The classic slips of ``module``'s backward, as the gradients they would produce.

    Args:
        module: the layer (its class decides which slips are plausible).
        kind: ``"input"`` or ``"param"``.
        local_name: the parameter's name within the layer (``"bias"``), or ``""``.
        x: the layer's input; upstream: dL/d(output); output: the layer's output.
        derivative_at: for element-wise layers, f'(p) at any point p (by the layer's forward).
    """
    x, u = x.detach().double(), upstream.detach().double()
    out: list[Candidate] = []
    if isinstance(module, nn.Linear):
        if kind == "param" and local_name == "bias" and u.dim() == 2 and u.shape[0] > 1:
            out.append(
                Candidate(
                    BIAS_NOT_SUMMED,
                    "is the last sample's dL/dy only: a bias gets the sum over the batch, "
                    "Σ_n dL/dy[n]",
                    u[-1],
                )
            )
            out.append(
                Candidate(
                    BIAS_NOT_SUMMED,
                    "is the first sample's dL/dy only: a bias gets the sum over the batch, "
                    "Σ_n dL/dy[n]",
                    u[0],
                )
            )
        w = module.weight.detach().double()
        if kind == "input" and w.shape[0] == w.shape[1]:
            out.append(
                Candidate(
                    TRANSPOSE,
                    "is dL/dy · Wᵀ: the weight is transposed, dL/dx = dL/dy · W",
                    u @ w.t(),
                )
            )
        return out
    act = _elementwise_kind(module)
    if act is not None and kind == "input":
        out.append(
            Candidate(
                DERIVATIVE_MISSING,
                "is dL/dy passed through unchanged: the activation's derivative f'(x) is missing",
                u,
            )
        )
        if derivative_at is not None and output is not None:
            y = output.detach().double()
            out.append(
                Candidate(
                    AT_OUTPUT,
                    "is dL/dy · f'(y): the activation's derivative taken at its output y = f(x) "
                    "instead of at its input x",
                    u * derivative_at(y),
                )
            )
        if act is nn.Tanh:
            out.append(
                Candidate(
                    OUTPUT_FORM_AT_INPUT,
                    "is dL/dy · (1 − x²): tanh' = 1 − y² is written with the output y, but was fed "
                    "the input x",
                    u * (1 - x * x),
                )
            )
        if act is nn.Sigmoid:
            out.append(
                Candidate(
                    OUTPUT_FORM_AT_INPUT,
                    "is dL/dy · x(1 − x): σ' = y(1 − y) is written with the output y, but was fed "
                    "the input x",
                    u * x * (1 - x),
                )
            )
        if act in (nn.ReLU, nn.LeakyReLU):
            slope = module.negative_slope if isinstance(module, nn.LeakyReLU) else 0.0
            out.append(
                Candidate(
                    MASK_FROM_GRADIENT,
                    "is masked where dL/dy ≤ 0 instead of where x ≤ 0: the mask must come from the "
                    "input, 1[x > 0]",
                    torch.where(u > 0, u, u * slope),
                )
            )
        return out
    if kind != "input":
        return out
    if isinstance(module, nn.Softmax):
        y = torch.softmax(x, module.dim)
        out.append(
            Candidate(
                JACOBIAN_DIAGONAL,
                "is y · dL/dy, only the diagonal of the softmax Jacobian: the −y · Σ_j dL/dy_j y_j "
                "term is missing",
                y * u,
            )
        )
    elif isinstance(module, nn.LogSoftmax):
        out.append(
            Candidate(
                SOFTMAX_TERM_MISSING,
                "is dL/dy passed through unchanged: the −softmax(x) · Σ_j dL/dy_j term is missing",
                u,
            )
        )
    elif isinstance(module, nn.BatchNorm1d) and module.training:
        out += _norm_candidates(module, x, u, dims=(0,), what="batch")
    elif isinstance(module, nn.LayerNorm):
        dims = tuple(range(-len(module.normalized_shape), 0))
        out += _norm_candidates(module, x, u, dims=dims, what="sample")
    return out


def _norm_candidates(
    module: nn.BatchNorm1d | nn.LayerNorm, x: Tensor, u: Tensor, dims: tuple[int, ...], what: str
) -> list[Candidate]:
    """The normalization backward with one or both statistics terms left out.

    dL/dx = (g − mean g − x̂ · mean(g · x̂)) / √(σ² + ε), g = dL/dy · γ.
    """
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, unbiased=False, keepdim=True)
    inv_std = torch.rsqrt(var + module.eps)
    x_hat = (x - mean) * inv_std
    weight = getattr(module, "weight", None)
    g = u * weight.detach().double() if weight is not None else u
    whole = g * inv_std
    mean_term = g.mean(dims, keepdim=True) * inv_std
    var_term = x_hat * (g * x_hat).mean(dims, keepdim=True) * inv_std
    return [
        Candidate(
            MEAN_TERM_DROPPED,
            f"lacks the −mean(g) term (g = dL/dy · γ): the path through the {what} mean μ was "
            "dropped; dL/dx = (g − mean g − x̂ · mean(g·x̂)) / √(σ² + ε)",
            whole - var_term,
        ),
        Candidate(
            VARIANCE_TERM_DROPPED,
            f"lacks the −x̂ · mean(g·x̂) term: the path through the {what} variance σ² was "
            "dropped; dL/dx = (g − mean g − x̂ · mean(g·x̂)) / √(σ² + ε)",
            whole - mean_term,
        ),
        Candidate(
            STATS_AS_CONSTANTS,
            f"is g / √(σ² + ε): the {what} mean and variance were treated as constants (both "
            "their terms dropped); that is the gradient of normalization with fixed statistics",
            whole,
        ),
    ]


def loss_candidates(
    loss: nn.Loss, x: Tensor, target: Tensor, upstream: Tensor | None
) -> list[Candidate]:
    """The classic slips of a loss's backward (cross-entropy: a missing softmax or one-hot)."""
    if not isinstance(loss, nn.CrossEntropyLoss) or x.dim() != 2:
        return []
    x64 = x.detach().double()
    n, c = x64.shape
    p = torch.softmax(x64, 1)
    q = soft_targets(target, c, loss.label_smoothing, torch.float64)
    if loss.reduction == "none":
        if upstream is None:
            return []
        scale: Tensor | float = upstream.detach().double().unsqueeze(1)
    else:
        scale = 1.0 / n if loss.reduction == "mean" else 1.0
    return [
        Candidate(
            SOFTMAX_TERM_MISSING,
            "is −y_onehot (scaled): the softmax term is missing; for cross-entropy on logits "
            "dL/dx = (softmax(x) − y_onehot) / N",
            -q * scale,
        ),
        Candidate(
            ONE_HOT_TERM_MISSING,
            "is softmax(x) (scaled): the −y_onehot term is missing; for cross-entropy on logits "
            "dL/dx = (softmax(x) − y_onehot) / N",
            p * scale,
        ),
    ]
