"""The math: a pure forward and a hand-written backward for every operation.

Each ``*_backward`` takes dL/d(output) (``grad_out``) and what the forward kept, and returns
dL/d(input) (and parameter gradients). Its docstring states the derivative; the code under it is
that formula. Letters for shapes: ``N`` batch, ``D_in``/``D_out`` features, ``C`` classes,
``D`` normalized features.

Backward functions that produce parameter gradients accept optional ``grad_*`` tensors: when
given, the gradient is accumulated into them in place (``+=``, as torch's autograd does) and
returned; when not, new tensors are returned. Nothing here touches autograd.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

# --------------------------------------------------------------------------------------------
# Linear: y = x Wᵀ + b
# --------------------------------------------------------------------------------------------


_ROW_BLOCK = 1024  # rows per product in linear_forward for large batches
ROW_BLOCKS_FROM = _ROW_BLOCK * 4  # linear_forward goes in row blocks from this many rows
# y = x Wᵀ + b for fewer rows: torch's ``linear`` is ``addmm(b, x, Wᵀ)`` (``mm`` without b),
# bit for bit, in one call from Python where ``weight.t()`` and the product are two.
# Shapes: x (N, D_in), weight (D_out, D_in), bias (D_out,) or None → y (N, D_out).
linear_small = torch.nn.functional.linear


def linear_forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """y = x Wᵀ + b.

    Shapes: x (N, D_in), weight (D_out, D_in), bias (D_out,) → y (N, D_out).
    """
    n = x.shape[0]
    if n < ROW_BLOCKS_FROM or weight.shape[0] > 256:
        return linear_small(x, weight, bias)  # (N, D_out)
    # Large batches into a narrow layer go in blocks of rows: the same products, bit for bit,
    # but BLAS runs such a tall, thin product about 25% faster in row blocks that stay in cache
    # (bench/limit.py, 60,000 x 784 into 100; into 800 it is a little slower, so not there).
    y = x.new_empty(n, weight.shape[0])  # (N, D_out)
    w_t = weight.t()  # (D_in, D_out)
    for start in range(0, n, _ROW_BLOCK):
        rows = slice(start, start + _ROW_BLOCK)
        if bias is None:
            torch.mm(x[rows], w_t, out=y[rows])
        else:
            torch.addmm(bias, x[rows], w_t, out=y[rows])
    return y


def linear_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    grad_weight: Tensor | None = None,
    grad_bias: Tensor | None = None,
    has_bias: bool = True,
    need_input_grad: bool = True,
    write: tuple[bool, bool] = (False, False),
    rows: int | None = None,
) -> tuple[Tensor | None, Tensor, Tensor | None]:
    """dL/dx = dL/dy · W,  dL/dW = (dL/dy)ᵀ · x,  dL/db = Σ_n dL/dy[n] = (dL/dy)ᵀ · 1.

    Shapes: grad_out (N, D_out), x (N, D_in), weight (D_out, D_in)
    → (grad_x (N, D_in) or None, grad_weight (D_out, D_in), grad_bias (D_out,) or None).
    Given ``grad_weight``/``grad_bias``, the gradients are added into them in place, or written
    into them (their old contents ignored: a fresh ``.grad``) where ``write`` says so for
    (weight, bias). The bias gradient is a matrix-vector product with a kept vector of ones,
    one call where ``sum`` then ``add_`` is two. With ``need_input_grad=False`` grad_x is not
    computed (None). ``rows``: N, if the caller knows it (one shape read fewer).
    """
    grad_out_t = grad_out.t()  # (D_out, N)
    grad_x = torch.mm(grad_out, weight) if need_input_grad else None  # (N, D_in)
    if grad_weight is None:
        grad_weight = torch.mm(grad_out_t, x)  # (D_out, D_in)
    elif write[0]:
        try:
            torch.mm(grad_out_t, x, out=grad_weight)  # (D_out, D_in), = (old values unread)
        except RuntimeError:
            _write_without_grad(torch.mm, grad_out_t, x, grad_weight)
    else:
        try:  # (D_out, D_in), += in place
            torch.addmm(grad_weight, grad_out_t, x, out=grad_weight)
        except RuntimeError:
            _write_without_grad(torch.addmm, grad_out_t, x, grad_weight, grad_weight)
    if not has_bias:
        return grad_x, grad_weight, None
    n = grad_out.shape[0] if rows is None else rows
    ones = _ones(n, grad_out.dtype, grad_out.device)  # (N,)
    if grad_bias is None:
        grad_bias = torch.mv(grad_out_t, ones)  # (D_out,)
    elif write[1]:
        try:
            torch.mv(grad_out_t, ones, out=grad_bias)  # (D_out,), =
        except RuntimeError:
            _write_without_grad(torch.mv, grad_out_t, ones, grad_bias)
    else:
        try:  # (D_out,), += in place
            torch.addmv(grad_bias, grad_out_t, ones, out=grad_bias)
        except RuntimeError:
            _write_without_grad(torch.addmv, grad_out_t, ones, grad_bias, grad_bias)
    return grad_x, grad_weight, grad_bias


def _write_without_grad(
    product: Callable[..., Tensor], a: Tensor, b: Tensor, out: Tensor, add_to: Tensor | None = None
) -> None:
    """``product([add_to,] a, b, out=out)`` that failed: again with autograd off if an input
    requires grad (torch refuses ``out=`` there). A ``.grad`` is data, as torch's own are: an
    in-place ``addmm_`` would record the graph into it and keep it alive from step to step."""
    operands = (a, b) if add_to is None else (add_to, a, b)
    if not any(t.requires_grad for t in operands):
        product(*operands, out=out)  # the error was another: raise it
    with torch.no_grad():
        product(*operands, out=out)


@functools.lru_cache(maxsize=32)
def _zero(dtype: torch.dtype, device: torch.device) -> Tensor:
    """A 0-d zero, made once per (dtype, device) and never written to."""
    return torch.zeros((), dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _ones(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A vector of n ones, made once per (n, dtype, device) and never written to."""
    return torch.ones(n, dtype=dtype, device=device)  # (n,)


# --------------------------------------------------------------------------------------------
# Element-wise activations
# --------------------------------------------------------------------------------------------


def relu_forward(x: Tensor) -> Tensor:
    """y = max(x, 0). Shapes: x (*) → y (*).

    ``torch.maximum`` with a kept zero: on a (60000, 100) batch ``torch.relu`` takes 13 ms on
    this CPU, ``maximum`` 1.6 ms, and at small batches they cost the same. NaN stays NaN.
    """
    return torch.maximum(x, _zero(x.dtype, x.device))


def relu_backward(grad_out: Tensor, y: Tensor) -> Tensor:
    """dL/dx = dL/dy · 1[x > 0]  (the subgradient 0 is taken at x = 0, as torch does).

    Computed from the output y = max(x, 0): 1[x > 0] = sign(y), since y is 0 or positive.
    (``sign`` avoids comparing with a Python number, which costs more than the multiply.)
    """
    return torch.sign(y).mul_(grad_out)  # (*), one new tensor instead of two


def leaky_relu_forward(x: Tensor, negative_slope: float) -> Tensor:
    """y = x if x > 0 else a·x. Shapes: (*) → (*)."""
    return torch.where(x > 0, x, x * negative_slope)


def leaky_relu_backward(grad_out: Tensor, x: Tensor, negative_slope: float) -> Tensor:
    """dL/dx = dL/dy · (1 if x > 0 else a)."""
    return torch.where(x > 0, grad_out, grad_out * negative_slope)  # (*)


def tanh_forward(x: Tensor) -> Tensor:
    """y = tanh(x). Shapes: (*) → (*)."""
    return torch.tanh(x)


def tanh_backward(grad_out: Tensor, y: Tensor) -> Tensor:
    """dL/dx = dL/dy · (1 − y²), with y = tanh(x) (the derivative at the input, via the output).

    Written as g − g·y² (one fused multiply-add) rather than g·(1 − y²).
    """
    return torch.addcmul(grad_out, grad_out, y * y, value=-1)  # (*)


def sigmoid_forward(x: Tensor) -> Tensor:
    """y = σ(x) = 1 / (1 + e^(−x)). Shapes: (*) → (*)."""
    return torch.sigmoid(x)


def sigmoid_backward(grad_out: Tensor, y: Tensor) -> Tensor:
    """dL/dx = dL/dy · y · (1 − y), with y = σ(x), written as g·y − (g·y)·y."""
    gy = grad_out * y  # (*)
    return torch.addcmul(gy, gy, y, value=-1)  # (*)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


def gelu_forward(x: Tensor, approximate: str = "none") -> Tensor:
    """Exact: y = x·Φ(x), Φ the standard normal CDF.  Tanh: y = ½x(1 + tanh(√(2/π)(x + c x³))).

    Shapes: (*) → (*).
    """
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + _GELU_C * x * x * x)
        return 0.5 * x * (1 + torch.tanh(inner))
    return 0.5 * x * (1 + torch.erf(x * (1 / math.sqrt(2.0))))


def gelu_backward(grad_out: Tensor, x: Tensor, approximate: str = "none") -> Tensor:
    """Exact: dL/dx = dL/dy · (Φ(x) + x·φ(x)), φ the standard normal density.

    Tanh: with u = √(2/π)(x + c x³), t = tanh(u):
    dL/dx = dL/dy · (½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3c x²)).
    """
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + _GELU_C * x * x * x)  # (*)
        t = torch.tanh(inner)  # (*)
        d_inner = _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x * x)  # (*)
        return grad_out * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * d_inner)  # (*)
    cdf = 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2.0))))  # (*)
    pdf = torch.exp(-0.5 * x * x) * (1 / math.sqrt(2.0 * math.pi))  # (*)
    return grad_out * (cdf + x * pdf)  # (*)


# --------------------------------------------------------------------------------------------
# Softmax and log-softmax
# --------------------------------------------------------------------------------------------


def softmax_forward(x: Tensor, dim: int = -1) -> Tensor:
    """y_i = e^(x_i − max x) / Σ_j e^(x_j − max x)  (shifted by the max, so it never overflows)."""
    shifted = x - x.amax(dim, keepdim=True)
    e = torch.exp(shifted)
    return e / e.sum(dim, keepdim=True)


def softmax_backward(grad_out: Tensor, y: Tensor, dim: int = -1) -> Tensor:
    """dL/dx_i = y_i · (dL/dy_i − Σ_j dL/dy_j · y_j)  (the Jacobian diag(y) − y yᵀ applied)."""
    return y * (grad_out - (grad_out * y).sum(dim, keepdim=True))  # like x


def log_softmax_forward(x: Tensor, dim: int = -1) -> Tensor:
    """y_i = x_i − m − log Σ_j e^(x_j − m), m = max x: the stable form of log(softmax(x)).

    The naive ``log(exp(x) / exp(x).sum())`` overflows to inf/nan for logits near 100 in
    float32; subtracting the max first keeps every exponent ≤ 0.
    """
    shifted = x - x.amax(dim, keepdim=True)
    return shifted - torch.log(torch.exp(shifted).sum(dim, keepdim=True))


def log_softmax_backward(grad_out: Tensor, y: Tensor, dim: int = -1) -> Tensor:
    """dL/dx_i = dL/dy_i − e^(y_i) · Σ_j dL/dy_j  (e^y is the softmax)."""
    return grad_out - torch.exp(y) * grad_out.sum(dim, keepdim=True)  # like x


# --------------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------------


def dropout_mask(x: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """A mask m with m = 1/(1−p) with probability 1−p, else 0; shape of x.

    Drawn as torch's own dropout draws it (``bernoulli_(1 − p)`` on a tensor like x), so that
    with the same seed handgrad and ``torch.nn.Dropout`` drop the same units.
    """
    if p >= 1.0:
        return torch.zeros_like(x)
    mask = torch.empty_like(x).bernoulli_(1 - p, generator=generator)
    return mask.div_(1 - p)


def dropout_forward(x: Tensor, mask: Tensor) -> Tensor:
    """y = x · m. Shapes: (*) → (*)."""
    return x * mask


def dropout_backward(grad_out: Tensor, mask: Tensor) -> Tensor:
    """dL/dx = dL/dy · m, with the forward's own mask m."""
    return grad_out * mask  # (*)


# --------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------


def batch_norm_forward_train(
    x: Tensor, eps: float, dims: tuple[int, ...] = (0,)
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Normalize each feature (channel) with its batch statistics.

    μ = mean x,  σ² = mean (x − μ)²  (biased),  x̂ = (x − μ) / √(σ² + ε), the means over
    ``dims``: the batch (0,) for (N, C), the batch and length (0, 2) for (N, C, L).

    Shapes: x (N, C) or (N, C, L) → (x̂ like x, μ, σ², 1/√(σ² + ε)), the three statistics
    kept in x's dimensions ((1, C) or (1, C, 1)) so that they broadcast against it.
    """
    mean = x.mean(dims, keepdim=True)  # (1, C[, 1])
    var = x.var(dims, unbiased=False, keepdim=True)  # (1, C[, 1])
    inv_std = torch.rsqrt(var + eps)  # (1, C[, 1])
    x_hat = (x - mean) * inv_std  # like x
    return x_hat, mean, var, inv_std


def batch_norm_backward_train(
    grad_xhat: Tensor, x_hat: Tensor, inv_std: Tensor, dims: tuple[int, ...] = (0,)
) -> Tensor:
    """Gradient through batch statistics, with g = dL/dx̂ and means over ``dims``:

    dL/dx = (1/√(σ² + ε)) · (g − mean g − x̂ · mean(g · x̂)).

    The two mean terms are the paths through μ and σ²; dropping either is a classic bug.
    Shapes: grad_xhat like x, x_hat like x, inv_std (1, C[, 1]) → like x.
    """
    mean_g = grad_xhat.mean(dims, keepdim=True)  # (1, C[, 1])
    mean_gx = (grad_xhat * x_hat).mean(dims, keepdim=True)  # (1, C[, 1])
    return (grad_xhat - mean_g - x_hat * mean_gx) * inv_std  # like x


def layer_norm_forward(x: Tensor, dims: tuple[int, ...], eps: float) -> tuple[Tensor, Tensor]:
    """Normalize each sample over its last ``len(dims)`` dimensions.

    μ = mean x,  σ² = mean (x − μ)²,  x̂ = (x − μ) / √(σ² + ε), over ``dims``.
    Shapes: x (N, *D) → (x̂ (N, *D), 1/√(σ² + ε) (N, *1)).
    """
    mean = x.mean(dims, keepdim=True)  # (N, *1)
    var = x.var(dims, unbiased=False, keepdim=True)  # (N, *1)
    inv_std = torch.rsqrt(var + eps)  # (N, *1)
    return (x - mean) * inv_std, inv_std


def layer_norm_backward(
    grad_xhat: Tensor, x_hat: Tensor, inv_std: Tensor, dims: tuple[int, ...]
) -> Tensor:
    """With g = dL/dx̂ and means over the normalized dims:

    dL/dx = (1/√(σ² + ε)) · (g − mean g − x̂ · mean(g · x̂)).
    """
    mean_g = grad_xhat.mean(dims, keepdim=True)  # (N, *1)
    mean_gx = (grad_xhat * x_hat).mean(dims, keepdim=True)  # (N, *1)
    return (grad_xhat - mean_g - x_hat * mean_gx) * inv_std  # (N, *D)


# --------------------------------------------------------------------------------------------
# Losses. ``scale`` is 1 for reduction='sum' and 1/count for 'mean'.
# --------------------------------------------------------------------------------------------


def squared_error_forward(x: Tensor, target: Tensor) -> Tensor:
    """e = (x − t)², element-wise. Shapes: (*) → (*)."""
    diff = x - target
    return diff * diff


def squared_error_backward(x: Tensor, target: Tensor, grad_out: Tensor | float) -> Tensor:
    """dL/dx = 2 (x − t) · dL/de  (dL/de is the reduction's scale, or a tensor for 'none')."""
    return (x - target) * (2 * grad_out)  # (*)


def soft_targets(
    target: Tensor, num_classes: int, label_smoothing: float, dtype: torch.dtype
) -> Tensor:
    """q = (1 − ε)·t + ε/C, with t one-hot of class indices (N,) or (N, 1), or probabilities
    (N, C)."""
    if target.dtype in (torch.int64, torch.int32, torch.uint8):
        q = torch.zeros(target.shape[0], num_classes, dtype=dtype, device=target.device)
        q.scatter_(1, target.long().reshape(-1, 1), 1.0)  # (N, C)
    else:
        q = target.to(dtype)  # (N, C)
    if label_smoothing > 0:
        q = q * (1 - label_smoothing) + label_smoothing / num_classes  # (N, C)
    return q


def _log_softmax_rows(x: Tensor) -> Tensor:
    """``torch.log_softmax(x, 1)`` for x (N, C), the same values, computed down the columns of
    xᵀ from 32 rows on: with few classes torch's kernel along the rows is several times
    slower (MNIST's 10 classes: 155 us at N = 1000 against 20 us). The result is then a
    column-major (N, C) view, which every later operation takes as it is."""
    if x.shape[0] < 32:
        return torch.log_softmax(x, 1)  # (N, C)
    return torch.log_softmax(x.t(), 0).t()  # (N, C), strides (1, N)


def cross_entropy_forward(
    logits: Tensor, target: Tensor, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Per-sample loss ℓ_n = −Σ_c q_nc · log softmax(x_n)_c, fused and stable.

    log softmax(x)_c = x'_c − log Σ_j e^(x'_j) with x' = x − max_c x, so every exponent is
    ≤ 0 (``log_softmax_forward`` writes it out; here torch's ``log_softmax`` computes the
    same stable form in one call, which matters at small batches); for a class index t,
    ℓ = −log softmax(x)_t.

    Shapes: logits (N, C), target (N, 1) int64 class indices (``target.unsqueeze(1)``) or
    (N, C) probabilities → (ℓ (N, 1), log softmax (N, C), kept for the backward pass). The
    column shapes save a reshape each way at small batches, where each costs as much as the
    math.
    """
    # torch.log_softmax(x, 1), down the columns of xᵀ from 32 rows on (see _log_softmax_rows)
    log_p = torch.log_softmax(logits, 1) if logits.shape[0] < 32 else _log_softmax_rows(logits)
    if label_smoothing == 0.0 and not target.is_floating_point():
        return log_p.gather(1, target).neg_(), log_p  # (N, 1)
    q = soft_targets(target, logits.shape[1], label_smoothing, logits.dtype)  # (N, C)
    return (q * log_p).sum(1, keepdim=True).neg_(), log_p  # (N, 1)


def cross_entropy_backward(
    log_p: Tensor,
    target: Tensor,
    grad_out: Tensor | float,
    label_smoothing: float = 0.0,
    minus_grad_out: Tensor | None = None,
) -> Tensor:
    """dL/dx = (softmax(x) − q) · dL/dℓ: softmax minus the (smoothed) one-hot, scaled once.

    softmax = e^(log softmax); computed as softmax · g, then −g added at each target class
    (the order in which torch's own backward rounds).

    Shapes: log_p (N, C), target (N, 1) class indices (``target.unsqueeze(1)``) or (N, C)
    probabilities; grad_out g a number or 0-d tensor (one for every sample) or (N,);
    ``minus_grad_out`` an optional (N, 1) tensor of −g that a caller may keep between calls
    (a scalar's negation, made here otherwise) → (N, C).
    """
    if isinstance(grad_out, Tensor) and grad_out.dim() == 1:
        grad_out = grad_out.unsqueeze(1)  # (N, 1)
    grad = torch.exp(log_p)  # (N, C), the softmax
    if not grad.is_contiguous():  # column-major from _log_softmax_rows: hand back row-major
        grad = grad.contiguous()
    grad.mul_(grad_out)  # (N, C), softmax · g
    if label_smoothing == 0.0 and not target.is_floating_point():
        if minus_grad_out is None:
            g = torch.as_tensor(grad_out, dtype=log_p.dtype, device=log_p.device)
            minus_grad_out = g.neg().expand(log_p.shape[0], 1)  # (N, 1)
        return grad.scatter_add_(1, target, minus_grad_out)  # (N, C)
    q = soft_targets(target, log_p.shape[1], label_smoothing, log_p.dtype)  # (N, C)
    return grad.sub_(q * grad_out)  # (N, C)


def nll_forward(log_p: Tensor, target: Tensor) -> Tensor:
    """ℓ_n = −x[n, t_n]. Shapes: log_p (N, C), target (N,) int64 → (N,)."""
    return -log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)


def nll_backward(log_p: Tensor, target: Tensor, grad_out: Tensor | float) -> Tensor:
    """dL/dx[n, c] = −dL/dℓ_n if c = t_n else 0. Shapes → (N, C)."""
    grad = torch.zeros_like(log_p)  # (N, C)
    if isinstance(grad_out, Tensor) and grad_out.dim() == 1:
        values = -grad_out.unsqueeze(1).to(log_p.dtype)  # (N, 1)
    else:
        values = torch.full_like(log_p[:, :1], -float(grad_out))  # (N, 1)
    return grad.scatter_(1, target.long().unsqueeze(1), values)  # (N, C)


# --------------------------------------------------------------------------------------------
# Class losses in full generality: class weights w, an ignored index, label smoothing ε,
# inputs (C,), (N, C) or (N, C, d1, ..., dk), index or probability targets. Each position m of
# the batch (and of d1..dk) is one row of an (M, C) matrix, the class dimension last.
# --------------------------------------------------------------------------------------------


def classes_last(x: Tensor) -> Tensor:
    """(N, C, d1..dk) → (N·d1⋯dk, C) with the class dimension last; (C,) → (1, C)."""
    if x.dim() == 1:
        return x.unsqueeze(0)  # (1, C)
    if x.dim() == 2:
        return x  # (N, C)
    return x.movedim(1, -1).reshape(-1, x.shape[1])  # (M, C)


def classes_back(rows: Tensor, shape: torch.Size) -> Tensor:
    """The inverse of ``classes_last``: (M, C) back to the input's ``shape``."""
    if len(shape) <= 2:
        return rows.reshape(shape)
    n, c, *rest = shape
    return rows.reshape(n, *rest, c).movedim(-1, 1)  # (N, C, d1..dk)


def class_loss_rows(
    log_p: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    label_smoothing: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row losses ℓ_m of log-probabilities against targets, torch's definition.

    Index targets t_m (rows with t_m = ignore_index count 0 and weigh 0), with v_m = 1[t_m ≠ ii]:
        ℓ_m = (1 − ε) · w_{t_m} · (−log p_{m,t_m}) · v_m + (ε/C) · Σ_c w_c · (−log p_{m,c}) · v_m
        'mean' divides Σ_m ℓ_m by Σ_m w_{t_m} v_m.
    Probability targets q_m (shape (M, C)), smoothed q' = (1 − ε)·q + ε/C:
        ℓ_m = −Σ_c w_c · q'_{m,c} · log p_{m,c};  'mean' divides by M.
    (w = 1 when not given; ε = 0 for NLLLoss.)

    Returns (ℓ (M,), the mean's denominator (0-dim), the coefficient matrix A (M, C) with
    ℓ_m = −Σ_c A_{m,c} · log p_{m,c}, which the backward reuses: dL/dlog p = −A · dL/dℓ).
    """
    m, c = log_p.shape
    if target.is_floating_point():
        a = target.to(log_p.dtype)  # (M, C)
        if label_smoothing > 0:
            a = a * (1 - label_smoothing) + label_smoothing / c
        if weight is not None:
            a = a * weight  # (M, C)
        denom = torch.tensor(float(m), dtype=log_p.dtype, device=log_p.device)
    else:
        valid = target != ignore_index  # (M,)
        safe = torch.where(valid, target, 0)  # (M,) an index in range for every row
        v = valid.to(log_p.dtype)  # (M,)
        w_t = v if weight is None else weight[safe] * v  # (M,), w_{t_m} v_m
        a = torch.zeros_like(log_p)  # (M, C)
        a.scatter_(1, safe.unsqueeze(1), ((1 - label_smoothing) * w_t).unsqueeze(1))
        if label_smoothing > 0:
            spread = torch.ones(c, dtype=log_p.dtype, device=log_p.device)
            if weight is not None:
                spread = weight.to(log_p.dtype)
            a = a + (label_smoothing / c) * v.unsqueeze(1) * spread  # (M, C)
        denom = w_t.sum()  # 0-dim
    losses = -(a * log_p).sum(1)  # (M,)
    return losses, denom, a


def class_loss_backward(a: Tensor, grad_rows: Tensor | float) -> Tensor:
    """dL/dlog p_{m,c} = −A_{m,c} · dL/dℓ_m. Shapes: A (M, C), grad_rows (M,) or a number."""
    if isinstance(grad_rows, Tensor) and grad_rows.dim() == 1:
        return a * grad_rows.neg().unsqueeze(1)  # (M, C)
    return a * (-grad_rows)  # (M, C)


def log_softmax_rows_backward(grad_log_p: Tensor, log_p: Tensor) -> Tensor:
    """dL/dx = G − softmax(x) · Σ_c G_c for G = dL/dlog softmax(x), along the rows (M, C)."""
    return grad_log_p - torch.exp(log_p) * grad_log_p.sum(1, keepdim=True)  # (M, C)
