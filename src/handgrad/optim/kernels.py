"""One-pass update loops for the optimizers on the CPU, compiled by numba.

Written with torch operations, an Adam step is six passes over the parameters (``lerp_``,
``mul_``, ``addcmul_``, a square root, ``add_``, ``addcdiv_``), each reading and writing whole
buffers. The loops below do the same arithmetic element by element in a single pass, which
numba compiles to vectorised machine code (timings: ``bench/README.md``, optimizer section).
They are the separate fast implementation behind ``fused``; each optimizer's ``_update`` is
the plain one they are tested equal to.

Each loop is the update rule of its optimizer, term for term; the docstrings of ``Adam``,
``SGD`` and ``RMSprop`` give the formulas; ``maximize`` enters as ``sign`` (-1 or 1, exact).
The loops have no branches inside (a branch stops numba from vectorising): options enter as
coefficients that make a term vanish exactly, e.g. Adam's L2 term ``g + λ·θ`` with λ = 0, or
AdamW's ``θ·(1 - lr·λ)`` with a factor of 1. Every scalar comes in the arrays' own dtype, so
float32 buffers are updated in float32 arithmetic as torch updates them. Results agree with
the torch-operation path to rounding: one rounding per operation in a different order or with
fused multiply-adds where torch uses them, about 1e-16 relative per step in float64.

One deliberate difference: a running average (Adam's m and v, SGD's momentum) that falls
below the smallest normal number (``tiny``: 1.2e-38 in float32, 2.2e-308 in float64) is
stored as 0. Weights fed by pixels that are rarely lit see long runs of zero gradients, and
m then decays by β1 each step into the subnormal range; the CPU handles subnormal operands
in microcode, many times slower, and 12-16% of m is subnormal after one epoch of 784-800-10
at batch 16 (the cost: ``bench/README.md``, optimizer section). The update such a value
makes is below 1e-38 · lr / ε-scale, far under a float32 weight's rounding.

numba is imported, and each loop compiled, on first use only (then cached on disk), so that
``import handgrad`` stays fast; ``available()`` says whether numba can be used at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np


@functools.cache
def available() -> bool:
    """Whether numba can be imported (it is a dependency; a broken install falls back)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _compile(fn: Callable[..., None]) -> Callable[..., None]:
    import numba

    # error_model="numpy": a division by zero gives inf as in torch, with no check per element
    # (the check would stop vectorisation); boundscheck off: the callers pass equal lengths.
    def jit(cache: bool) -> Callable[..., None]:
        compiled: Callable[..., None] = numba.njit(
            nogil=True, boundscheck=False, error_model="numpy", cache=cache
        )(fn)
        return compiled

    try:  # cached on disk beside this file, or in the user's cache folder
        return jit(cache=True)
    except RuntimeError:  # neither is writable: compile in each process
        return jit(cache=False)


def _adam(
    params: tuple[np.ndarray, ...],
    grads: tuple[np.ndarray, ...],
    exp_avgs: tuple[np.ndarray, ...],
    exp_avg_sqs: tuple[np.ndarray, ...],
    decay: Any,
    weight_decay: Any,
    lerp_weight: Any,
    beta2: Any,
    one_minus_beta2: Any,
    eps: Any,
    neg_step_size: Any,
    tiny: Any,
    sign: Any,
) -> None:
    """Adam/AdamW in place, over parameters j given as tuples of 1-D arrays (θ_j, g_j, m_j and
    v_j of one length each): one call for a whole group, a microsecond a call saved.

    θ ← θ·decay (AdamW: 1 - lr·λ; Adam: 1)      g ← sign·g + λ·θ (Adam: λ; AdamW: 0)
    m ← m + (1-β1)·(g - m)                       (torch's lerp for a weight below 0.5)
    v ← v·β2 + (1-β2)·g·g
    θ ← θ - step·m / (√v + ε')                   (step, ε' with the bias corrections folded in)
    m, v below ``tiny`` (subnormal) are stored as 0 (see the module's docstring).
    """
    zero = tiny - tiny
    for j in range(len(params)):
        param, grad, exp_avg, exp_avg_sq = params[j], grads[j], exp_avgs[j], exp_avg_sqs[j]
        for i in range(param.shape[0]):
            p = param[i] * decay
            g = sign * grad[i] + weight_decay * p
            m = exp_avg[i]
            m = m + lerp_weight * (g - m)
            m = zero if abs(m) < tiny else m  # NaN stays NaN
            v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g
            v = zero if v < tiny else v
            exp_avg[i] = m
            exp_avg_sq[i] = v
            param[i] = p + neg_step_size * (m / (np.sqrt(v) + eps))


def _adam_amsgrad(
    params: tuple[np.ndarray, ...],
    grads: tuple[np.ndarray, ...],
    exp_avgs: tuple[np.ndarray, ...],
    exp_avg_sqs: tuple[np.ndarray, ...],
    max_exp_avg_sqs: tuple[np.ndarray, ...],
    decay: Any,
    weight_decay: Any,
    lerp_weight: Any,
    beta2: Any,
    one_minus_beta2: Any,
    eps: Any,
    neg_step_size: Any,
    tiny: Any,
    sign: Any,
) -> None:
    """``_adam`` normalised by the running maximum of v: v^max ← max(v^max, v) (NaN wins).

    A loop of its own rather than a flag in ``_adam``: a branch inside the loop, or a helper
    that numba would have to compile first at import, costs more than these repeated lines.
    """
    zero = tiny - tiny
    for j in range(len(params)):
        param, grad, exp_avg, exp_avg_sq = params[j], grads[j], exp_avgs[j], exp_avg_sqs[j]
        max_exp_avg_sq = max_exp_avg_sqs[j]
        for i in range(param.shape[0]):
            p = param[i] * decay
            g = sign * grad[i] + weight_decay * p
            m = exp_avg[i]
            m = m + lerp_weight * (g - m)
            m = zero if abs(m) < tiny else m  # NaN stays NaN
            v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g
            v = zero if v < tiny else v
            exp_avg[i] = m
            exp_avg_sq[i] = v
            v_max = max_exp_avg_sq[i]
            if v > v_max or v != v:
                v_max = v
            max_exp_avg_sq[i] = v_max
            param[i] = p + neg_step_size * (m / (np.sqrt(v_max) + eps))


def _sgd(param: np.ndarray, grad: np.ndarray, weight_decay: Any, neg_lr: Any, sign: Any) -> None:
    """Plain SGD in place: θ ← θ - lr·(sign·g + λ·θ)."""
    for i in range(param.shape[0]):
        p = param[i]
        param[i] = p + neg_lr * (sign * grad[i] + weight_decay * p)


def _sgd_momentum(
    param: np.ndarray,
    grad: np.ndarray,
    buffer: np.ndarray,
    weight_decay: Any,
    keep: Any,
    take: Any,
    grad_share: Any,
    buffer_share: Any,
    neg_lr: Any,
    tiny: Any,
    sign: Any,
) -> None:
    """SGD with momentum in place.

    g ← sign·g + λ·θ;   b ← keep·b + take·g   (first step: keep 0, take 1; then μ and 1 - τ)
    d ← grad_share·g + buffer_share·b      (Nesterov: 1 and μ; otherwise 0 and 1)
    θ ← θ - lr·d
    b below ``tiny`` in magnitude (subnormal) is stored as 0 (see the module's docstring).
    """
    zero = tiny - tiny
    for i in range(param.shape[0]):
        p = param[i]
        g = sign * grad[i] + weight_decay * p
        b = keep * buffer[i] + take * g
        b = zero if abs(b) < tiny else b  # NaN stays NaN
        buffer[i] = b
        param[i] = p + neg_lr * (grad_share * g + buffer_share * b)


def _rmsprop(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    weight_decay: Any,
    alpha: Any,
    one_minus_alpha: Any,
    eps: Any,
    neg_lr: Any,
    tiny: Any,
    sign: Any,
) -> None:
    """RMSprop without momentum, not centered, in place.

    g ← sign·g + λ·θ;   v ← α·v + (1-α)·g·g;   θ ← θ - lr·g / (√v + ε)
    v below ``tiny`` is stored as 0 (see the module's docstring).
    """
    zero = tiny - tiny
    for i in range(param.shape[0]):
        p = param[i]
        g = sign * grad[i] + weight_decay * p
        v = square_avg[i] * alpha + one_minus_alpha * g * g
        v = zero if v < tiny else v
        square_avg[i] = v
        param[i] = p + neg_lr * (g / (np.sqrt(v) + eps))


def _rmsprop_momentum(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    momentum_buffer: np.ndarray,
    weight_decay: Any,
    alpha: Any,
    one_minus_alpha: Any,
    eps: Any,
    momentum: Any,
    neg_lr: Any,
    tiny: Any,
    sign: Any,
) -> None:
    """RMSprop with momentum, not centered: ``_rmsprop`` with b ← μ·b + g/(√v + ε); θ ← θ - lr·b."""
    zero = tiny - tiny
    for i in range(param.shape[0]):
        p = param[i]
        g = sign * grad[i] + weight_decay * p
        v = square_avg[i] * alpha + one_minus_alpha * g * g
        v = zero if v < tiny else v
        square_avg[i] = v
        b = momentum_buffer[i] * momentum + g / (np.sqrt(v) + eps)
        b = zero if abs(b) < tiny else b
        momentum_buffer[i] = b
        param[i] = p + neg_lr * b


def _rmsprop_centered(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    grad_avg: np.ndarray,
    momentum_buffer: np.ndarray,
    weight_decay: Any,
    alpha: Any,
    one_minus_alpha: Any,
    eps: Any,
    momentum: Any,
    neg_lr: Any,
    tiny: Any,
    sign: Any,
) -> None:
    """Centered RMSprop (with momentum μ, which may be 0: then b = g/s and θ ← θ - lr·g/s).

    ḡ ← ḡ + (1-α)·(g - ḡ);   s = √(v - ḡ·ḡ) + ε;   b ← μ·b + g/s;   θ ← θ - lr·b
    (with μ = 0, ``momentum_buffer`` is scratch: b = g/s exactly, as 0·b = 0 for finite b).
    """
    zero = tiny - tiny
    for i in range(param.shape[0]):
        p = param[i]
        g = sign * grad[i] + weight_decay * p
        v = square_avg[i] * alpha + one_minus_alpha * g * g
        v = zero if v < tiny else v
        square_avg[i] = v
        m = grad_avg[i]
        m = m + one_minus_alpha * (g - m)
        m = zero if abs(m) < tiny else m
        grad_avg[i] = m
        b = momentum_buffer[i] * momentum + g / (np.sqrt(v - m * m) + eps)
        b = zero if abs(b) < tiny else b
        momentum_buffer[i] = b
        param[i] = p + neg_lr * b


@functools.cache
def kernel(name: str) -> Callable[..., None]:
    """The compiled loop called ``name``: "adam", "adam_amsgrad", "sgd", "sgd_momentum",
    "rmsprop", "rmsprop_momentum" or "rmsprop_centered"."""
    loops: dict[str, Callable[..., None]] = {
        "adam": _adam,
        "adam_amsgrad": _adam_amsgrad,
        "sgd": _sgd,
        "sgd_momentum": _sgd_momentum,
        "rmsprop": _rmsprop,
        "rmsprop_momentum": _rmsprop_momentum,
        "rmsprop_centered": _rmsprop_centered,
    }
    return _compile(loops[name])
