"""Rprop, written out as ``torch.optim.Rprop`` computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from handgrad.optim.optimizer import Optimizer, check_number, scalar_dtype


class Rprop(Optimizer):
    r"""Resilient backpropagation (Riedmiller & Braun, 1993), as ``torch.optim.Rprop``.

    Each element moves by its own step size Δ against the sign of its gradient; Δ grows by
    η+ while the gradient keeps its sign and shrinks by η- when it flips (``Δ_0 = lr``,
    ``g_prev_0 = 0``)::

        g_t ← -g_t                                  if maximize
        s   = sign(g_t · g_prev)                    +1, -1 or 0
        Δ_t = clamp(Δ_{t-1} · (η+ if s > 0, η- if s < 0, 1 if s = 0), Δ_min, Δ_max)
        g_t ← 0 where s < 0                         (no move, and no flip next step)
        θ_t = θ_{t-1} - sign(g_t) · Δ_t
        g_prev = g_t                                prev

    Args:
        params: tensors, or dicts of parameter groups with per-group options (as in torch).
        lr: the initial step size Δ_0, > 0 (a float or a one-element tensor).
        etas: ``(η-, η+)`` with 0 < η- < 1 < η+.
        step_sizes: ``(Δ_min, Δ_max)``.
        maximize: ascend the objective instead of descending it.
    """

    option_names: ClassVar[tuple[str, ...]] = ("lr", "etas", "step_sizes", "maximize")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "etas": tuple(etas),
            "step_sizes": tuple(step_sizes),
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    @classmethod
    def _validate(cls, group: Mapping[str, Any], where: str) -> None:
        super()._validate(group, where)
        etas, sizes = group["etas"], group["step_sizes"]
        for name, pair in (("etas", etas), ("step_sizes", sizes)):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ValueError(f"{where}: {name} must be a pair, got {pair!r}")
            for i, x in enumerate(pair):
                check_number(where, f"{name}[{i}]", x, low=0.0)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"{where}: etas must satisfy 0 < η- < 1 < η+, got {tuple(etas)}")

    def _state_names(self, group: Mapping[str, Any]) -> set[str]:
        return {"step", "prev", "step_size"}

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": torch.tensor(0.0, dtype=scalar_dtype()),
            "prev": torch.zeros_like(param),
            "step_size": torch.full_like(param, group["lr"]),
        }

    def _update(
        self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        prev, step_size = state["prev"], state["step_size"]

        if group["maximize"]:
            grad = -grad

        sign = grad.mul(prev).sign()
        sign[sign.gt(0)] = etaplus
        sign[sign.lt(0)] = etaminus
        sign[sign.eq(0)] = 1
        step_size.mul_(sign).clamp_(step_size_min, step_size_max)

        grad = grad.clone()
        grad[sign.eq(etaminus)] = 0
        param.addcmul_(grad.sign(), step_size, value=-1)
        prev.copy_(grad)
