"""Weight initializations: torch's default and the ones the seed notebooks use.

Each function fills a new ``(D_out, D_in)`` weight. ``draw_order="in_out"`` draws the numbers as
a ``(D_in, D_out)`` matrix and transposes it, which reproduces notebooks that store weights that
way (``w1 = torch.randn(784, 50)``) value for value from the same seed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from handgrad.errors import did_you_mean as closest

INITS = ("torch", "normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")


def _empty(
    d_out: int, d_in: int, draw_order: str, dtype: torch.dtype, device: torch.device | str | None
) -> Tensor:
    if draw_order == "out_in":
        return torch.empty(d_out, d_in, dtype=dtype, device=device)
    if draw_order == "in_out":
        return torch.empty(d_in, d_out, dtype=dtype, device=device)
    raise ValueError(f"draw_order must be 'out_in' or 'in_out', got {draw_order!r}")


def init_weight(
    d_out: int,
    d_in: int,
    init: str = "torch",
    *,
    std: float | None = None,
    draw_order: str = "out_in",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """A new weight ``(D_out, D_in)`` drawn from torch's global generator.

    Inits (fan_in = D_in, fan_out = D_out):
        torch            U(−1/√fan_in, 1/√fan_in)  (torch.nn.Linear's kaiming_uniform with a=√5)
        normal           N(0, std²), std = 1 unless given (the seeds' ``torch.randn``)
        xavier_uniform   U(−a, a), a = √(6 / (fan_in + fan_out))
        xavier_normal    N(0, 2 / (fan_in + fan_out))
        kaiming_uniform  U(−a, a), a = √(6 / fan_in)      (for ReLU)
        kaiming_normal   N(0, 2 / fan_in)                 (for ReLU)
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}{closest(init, INITS)}; choose from {INITS}")
    if std is not None and std < 0:
        raise ValueError(f"init std must be >= 0, got {std}")
    w = _empty(d_out, d_in, draw_order, dtype, device)
    with torch.no_grad():
        if init == "torch":
            bound = 1 / math.sqrt(d_in) if d_in > 0 else 0.0
            w.uniform_(-bound, bound)
        elif init == "normal":
            w.normal_(0.0, 1.0 if std is None else std)
        elif init == "xavier_uniform":
            a = math.sqrt(6.0 / (d_in + d_out))
            w.uniform_(-a, a)
        elif init == "xavier_normal":
            w.normal_(0.0, math.sqrt(2.0 / (d_in + d_out)))
        elif init == "kaiming_uniform":
            a = math.sqrt(6.0 / d_in)
            w.uniform_(-a, a)
        else:
            w.normal_(0.0, math.sqrt(2.0 / d_in))
    return w.t().contiguous() if draw_order == "in_out" else w


def init_bias(
    d_out: int,
    d_in: int,
    init: str = "torch",
    *,
    bias_std: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """A new bias ``(D_out,)``: torch's U(−1/√fan_in, 1/√fan_in) for ``init="torch"``; otherwise
    N(0, bias_std²) when ``bias_std`` is given, else zeros."""
    b = torch.empty(d_out, dtype=dtype, device=device)
    if bias_std is not None:
        return b.normal_(0.0, bias_std)
    if init == "torch":
        bound = 1 / math.sqrt(d_in) if d_in > 0 else 0.0
        return b.uniform_(-bound, bound)
    return b.zero_()
