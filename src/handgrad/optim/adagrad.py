"""Adagrad, written out as ``torch.optim.Adagrad`` computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from handgrad.optim.optimizer import Optimizer, check_number, scalar_dtype, value


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011), as ``torch.optim.Adagrad`` computes it.

    Update rule at step ``t = 1, 2, ...`` (λ weight_decay, η lr_decay, ``S_0`` =
    initial_accumulator_value)::

        g_t ← -g_t                              if maximize
        g_t ← g_t + λ·θ_{t-1}                   if λ ≠ 0
        lr_t = lr / (1 + (t-1)·η)
        S_t  = S_{t-1} + g_t²                   sum
        θ_t  = θ_{t-1} - lr_t · g_t / (√S_t + ε)

    Args:
        params: tensors, or dicts of parameter groups with per-group options (as in torch).
        lr: learning rate, > 0 (a float or a one-element tensor).
        lr_decay: η >= 0.
        weight_decay: λ >= 0.
        initial_accumulator_value: ``S_0`` >= 0.
        eps: ε >= 0.
        maximize: ascend the objective instead of descending it.
    """

    option_names: ClassVar[tuple[str, ...]] = (
        "lr",
        "lr_decay",
        "weight_decay",
        "initial_accumulator_value",
        "eps",
        "maximize",
    )
    group_extras: ClassVar[dict[str, Any]] = {
        "foreach": None,
        "differentiable": False,
        "fused": None,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    @classmethod
    def _validate(cls, group: Mapping[str, Any], where: str) -> None:
        super()._validate(group, where)
        for name in ("lr_decay", "initial_accumulator_value"):
            check_number(where, name, group[name], low=0.0)

    def _state_names(self, group: Mapping[str, Any]) -> set[str]:
        return {"step", "sum"}

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": torch.tensor(0.0, dtype=scalar_dtype()),
            "sum": torch.full_like(param, group["initial_accumulator_value"]),
        }

    def _update(
        self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        t = value(state["step"])
        state_sum = state["sum"]

        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])

        clr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
        state_sum.addcmul_(grad, grad, value=1)
        std = state_sum.sqrt().add_(group["eps"])
        param.addcdiv_(grad, std, value=-clr)
