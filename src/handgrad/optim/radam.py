"""RAdam, written out as ``torch.optim.RAdam`` computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from handgrad.optim.optimizer import (
    Optimizer,
    scalar_dtype,
    value,
)


class RAdam(Optimizer):
    r"""RAdam (Liu et al., 2020): Adam with its variance rectified, as ``torch.optim.RAdam``.

    Update rule at step ``t = 1, 2, ...``::

        g_t ← -g_t                                     if maximize
        θ_{t-1} ← θ_{t-1}·(1 - lr·λ)                   if decoupled_weight_decay
        g_t ← g_t + λ·θ_{t-1}                          otherwise, if λ ≠ 0
        m_t = β1·m_{t-1} + (1-β1)·g_t                  exp_avg (a lerp toward g_t)
        v_t = β2·v_{t-1} + (1-β2)·g_t²                 exp_avg_sq
        m̂_t = m_t / (1-β1^t)
        ρ_∞ = 2/(1-β2) - 1,   ρ_t = ρ_∞ - 2t·β2^t/(1-β2^t)
        r_t = √((ρ_t-4)(ρ_t-2)ρ_∞ / ((ρ_∞-4)(ρ_∞-2)ρ_t))
        θ_t = θ_{t-1} - lr · m̂_t · r_t · √(1-β2^t)/(√v_t + ε)     if ρ_t > 5
        θ_t = θ_{t-1} - lr · m̂_t                                  otherwise

    Args:
        params: tensors, or dicts of parameter groups with per-group options (as in torch).
        lr: learning rate, > 0 (a float or a one-element tensor).
        betas: ``(β1, β2)``, each in [0, 1).
        eps: ε >= 0.
        weight_decay: λ >= 0.
        decoupled_weight_decay: shrink θ directly (as AdamW) instead of adding λ·θ to g.
        maximize: ascend the objective instead of descending it.
    """

    option_names: ClassVar[tuple[str, ...]] = (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "decoupled_weight_decay",
        "maximize",
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _state_names(self, group: Mapping[str, Any]) -> set[str]:
        return {"step", "exp_avg", "exp_avg_sq"}

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": torch.tensor(0.0, dtype=scalar_dtype()),
            "exp_avg": torch.zeros_like(param),
            "exp_avg_sq": torch.zeros_like(param),
        }

    def _update(
        self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
        t = value(state["step"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(param, alpha=weight_decay)

        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        bias_corrected_exp_avg = exp_avg / bias_correction1

        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * (beta2**t) / bias_correction2
        if rho_t > 5.0:
            rect = (
                (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            ) ** 0.5
            adaptive_lr = (bias_correction2**0.5) / exp_avg_sq.sqrt().add_(group["eps"])
            param.add_(bias_corrected_exp_avg * lr * adaptive_lr * rect, alpha=-1.0)
        else:
            param.add_(bias_corrected_exp_avg * lr, alpha=-1.0)
