"""ASGD, written out as ``torch.optim.ASGD`` computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from handgrad.optim.optimizer import Optimizer, check_number, scalar_dtype, value


class ASGD(Optimizer):
    r"""Averaged SGD (Polyak & Juditsky, 1992), as ``torch.optim.ASGD`` computes it.

    SGD with a decaying step η and a running average θ̄ of the iterates (``η_0 = lr``,
    ``μ_0 = 1``; λ weight_decay, ϑ lambd)::

        g_t ← -g_t                                  if maximize
        g_t ← g_t + λ·θ_{t-1}                       if λ ≠ 0
        θ_t = θ_{t-1}·(1 - ϑ·η_{t-1}) - η_{t-1}·g_t
        θ̄_t = θ̄_{t-1} + μ_{t-1}·(θ_t - θ̄_{t-1})     ax (θ̄_t = θ_t while μ = 1)
        η_t = lr / (1 + ϑ·lr·t)^α                   eta
        μ_t = 1 / max(1, t - t0)                    mu

    η and μ are kept as 0-d tensors in torch's scalar dtype (float32 unless the default
    dtype is float64), rounded as torch rounds them. The average is ``state[p]["ax"]``.

    Args:
        params: tensors, or dicts of parameter groups with per-group options (as in torch).
        lr: learning rate, > 0 (a float or a one-element tensor).
        lambd: ϑ, the decay term.
        alpha: α, the power of η's decay.
        t0: the step at which averaging starts.
        weight_decay: λ >= 0.
        maximize: ascend the objective instead of descending it.
    """

    option_names: ClassVar[tuple[str, ...]] = (
        "lr",
        "lambd",
        "alpha",
        "t0",
        "weight_decay",
        "maximize",
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "lambd": lambd,
            "alpha": alpha,
            "t0": t0,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    @classmethod
    def _validate(cls, group: Mapping[str, Any], where: str) -> None:
        super()._validate(group, where)
        check_number(where, "lambd", group["lambd"])
        check_number(where, "alpha", group["alpha"])
        check_number(where, "t0", group["t0"])

    def _state_names(self, group: Mapping[str, Any]) -> set[str]:
        return {"step", "eta", "mu", "ax"}

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": torch.zeros((), dtype=scalar_dtype()),
            "eta": torch.as_tensor(group["lr"], dtype=scalar_dtype()).clone(),
            "mu": torch.ones((), dtype=scalar_dtype()),
            "ax": torch.zeros_like(param),
        }

    def _update(
        self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        lr, lambd, alpha = group["lr"], group["lambd"], group["alpha"]
        t = value(state["step"])
        eta, mu, ax = state["eta"], state["mu"], state["ax"]

        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])

        eta_value = value(eta)
        param.mul_(1 - lambd * eta_value)
        param.add_(grad, alpha=-eta_value)

        if value(mu) != 1:
            ax.add_(param.sub(ax).mul_(mu))
        else:
            ax.copy_(param)

        eta.copy_(torch.as_tensor(lr / ((1 + lambd * lr * t) ** alpha)))
        mu.copy_(torch.as_tensor(1 / max(1, t - group["t0"])))
