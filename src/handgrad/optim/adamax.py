"""Adamax, written out as ``torch.optim.Adamax`` computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from handgrad.optim.optimizer import Optimizer, scalar_dtype, value


class Adamax(Optimizer):
    r"""Adamax (Kingma & Ba, 2015, section 7), as ``torch.optim.Adamax`` computes it.

    Adam with the infinity norm in place of the second moment, at step ``t = 1, 2, ...``::

        g_t ← -g_t                                   if maximize
        g_t ← g_t + λ·θ_{t-1}                        if λ ≠ 0
        m_t = β1·m_{t-1} + (1-β1)·g_t                exp_avg (a lerp toward g_t)
        u_t = max(β2·u_{t-1}, |g_t| + ε)             exp_inf
        θ_t = θ_{t-1} - lr/(1-β1^t) · m_t / u_t

    Args:
        params: tensors, or dicts of parameter groups with per-group options (as in torch).
        lr: learning rate, > 0 (a float or a one-element tensor).
        betas: ``(β1, β2)``, each in [0, 1).
        eps: ε >= 0.
        weight_decay: λ >= 0.
        maximize: ascend the objective instead of descending it.
    """

    option_names: ClassVar[tuple[str, ...]] = ("lr", "betas", "eps", "weight_decay", "maximize")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _state_names(self, group: Mapping[str, Any]) -> set[str]:
        return {"step", "exp_avg", "exp_inf"}

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": torch.tensor(0.0, dtype=scalar_dtype()),
            "exp_avg": torch.zeros_like(param),
            "exp_inf": torch.zeros_like(param),
        }

    def _update(
        self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        beta1, beta2 = group["betas"]
        t = value(state["step"])
        exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]

        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])

        exp_avg.lerp_(grad, 1 - beta1)
        torch.maximum(exp_inf.mul_(beta2), grad.abs().add_(group["eps"]), out=exp_inf)
        clr = group["lr"] / (1 - beta1**t)
        param.addcdiv_(exp_avg, exp_inf, value=-clr)
