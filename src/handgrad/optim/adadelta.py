"""Adadelta, written out as ``torch.optim.Adadelta`` computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from handgrad.optim.optimizer import Optimizer, check_number, scalar_dtype


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012), as ``torch.optim.Adadelta`` computes it.

    Update rule at step ``t = 1, 2, ...`` (ρ the decay, ``v_0 = u_0 = 0``)::

        g_t ← -g_t                                     if maximize
        g_t ← g_t + λ·θ_{t-1}                          if λ ≠ 0
        v_t  = ρ·v_{t-1} + (1-ρ)·g_t²                  square_avg
        Δθ_t = √(u_{t-1} + ε) / √(v_t + ε) · g_t
        u_t  = ρ·u_{t-1} + (1-ρ)·Δθ_t²                 acc_delta
        θ_t  = θ_{t-1} - lr·Δθ_t

    Args:
        params: tensors, or dicts of parameter groups with per-group options (as in torch).
        lr: scales the step, > 0 (a float or a one-element tensor; 1.0 as in the paper).
        rho: ρ in [0, 1].
        eps: ε >= 0.
        weight_decay: λ >= 0.
        maximize: ascend the objective instead of descending it.
    """

    option_names: ClassVar[tuple[str, ...]] = ("lr", "rho", "eps", "weight_decay", "maximize")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    @classmethod
    def _validate(cls, group: Mapping[str, Any], where: str) -> None:
        super()._validate(group, where)
        check_number(where, "rho", group["rho"], low=0.0, high=1.0)

    def _state_names(self, group: Mapping[str, Any]) -> set[str]:
        return {"step", "square_avg", "acc_delta"}

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": torch.tensor(0.0, dtype=scalar_dtype()),
            "square_avg": torch.zeros_like(param),
            "acc_delta": torch.zeros_like(param),
        }

    def _update(
        self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        rho, eps = group["rho"], group["eps"]
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]

        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])

        square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
        std = square_avg.add(eps).sqrt_()
        delta = acc_delta.add(eps).sqrt_().div_(std).mul_(grad)
        acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        param.add_(delta, alpha=-group["lr"])
