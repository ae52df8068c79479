"""NAdam, written out as ``torch.optim.NAdam`` computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from handgrad.optim.optimizer import (
    Optimizer,
    check_number,
    scalar_dtype,
    value,
)


class NAdam(Optimizer):
    r"""NAdam (Dozat, 2016): Adam with Nesterov momentum, as ``torch.optim.NAdam`` computes it.

    Update rule at step ``t = 1, 2, ...`` (ψ momentum_decay; ``Π_0 = 1``)::

        g_t ← -g_t                                     if maximize
        θ_{t-1} ← θ_{t-1}·(1 - lr·λ)                   if decoupled_weight_decay
        g_t ← g_t + λ·θ_{t-1}                          otherwise, if λ ≠ 0
        μ_t = β1·(1 - ½·0.96^(t·ψ)),  μ_{t+1} = β1·(1 - ½·0.96^((t+1)·ψ))
        Π_t = Π_{t-1}·μ_t                              mu_product
        m_t = β1·m_{t-1} + (1-β1)·g_t                  exp_avg (a lerp toward g_t)
        v_t = β2·v_{t-1} + (1-β2)·g_t²                 exp_avg_sq
        d_t = √(v_t / (1-β2^t)) + ε
        θ_t = θ_{t-1} - lr·(1-μ_t)/(1-Π_t) · g_t/d_t - lr·μ_{t+1}/(1-Π_t·μ_{t+1}) · m_t/d_t

    Args:
        params: tensors, or dicts of parameter groups with per-group options (as in torch).
        lr: learning rate, > 0 (a float or a one-element tensor).
        betas: ``(β1, β2)``, each in [0, 1).
        eps: ε >= 0.
        weight_decay: λ >= 0.
        momentum_decay: ψ >= 0.
        decoupled_weight_decay: shrink θ directly (as AdamW) instead of adding λ·θ to g.
        maximize: ascend the objective instead of descending it.
    """

    option_names: ClassVar[tuple[str, ...]] = (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "momentum_decay",
        "decoupled_weight_decay",
        "maximize",
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    @classmethod
    def _validate(cls, group: Mapping[str, Any], where: str) -> None:
        super()._validate(group, where)
        check_number(where, "momentum_decay", group["momentum_decay"], low=0.0)

    def _state_names(self, group: Mapping[str, Any]) -> set[str]:
        return {"step", "mu_product", "exp_avg", "exp_avg_sq"}

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": torch.tensor(0.0, dtype=scalar_dtype()),
            "mu_product": torch.tensor(1.0, dtype=scalar_dtype()),
            "exp_avg": torch.zeros_like(param),
            "exp_avg_sq": torch.zeros_like(param),
        }

    def _update(
        self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
        psi = group["momentum_decay"]
        t = value(state["step"])
        mu_product, exp_avg, exp_avg_sq = state["mu_product"], state["exp_avg"], state["exp_avg_sq"]

        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(param, alpha=weight_decay)

        mu = beta1 * (1.0 - 0.5 * (0.96 ** (t * psi)))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * psi)))
        mu_product *= mu

        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sq.div(1 - beta2**t).sqrt().add_(group["eps"])

        product = value(mu_product)
        param.addcdiv_(grad, denom, value=-lr * (1.0 - mu) / (1.0 - product))
        param.addcdiv_(exp_avg, denom, value=(-lr * mu_next) / (1.0 - product * mu_next))
