"""Stochastic gradient descent with momentum, written out as ``torch.optim.SGD`` computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from handgrad.optim.optimizer import Optimizer, check_number


class SGD(Optimizer):
    r"""Stochastic gradient descent, with optional momentum, Nesterov momentum and L2 decay.

    Update rule at step ``t = 1, 2, ...`` for each parameter ``θ`` with gradient ``g_t``
    (μ momentum, τ dampening, λ weight_decay)::

        g_t ← g_t + λ·θ_{t-1}                   if λ ≠ 0 (into scratch; .grad kept)
        b_1 = g_1                               if μ ≠ 0   momentum_buffer, first step
        b_t = μ·b_{t-1} + (1-τ)·g_t             if μ ≠ 0   later steps
        d_t = g_t + μ·b_t                       if nesterov
        d_t = b_t                               if μ ≠ 0 and not nesterov
        d_t = g_t                               if μ = 0
        θ_t = θ_{t-1} - lr·d_t

    With μ = 0 and λ = 0 this is the ninja notebook's ``w += -lr * dw``.

    Args:
        params: tensors with a preallocated ``.grad`` each (flatten the model first for the
            fast path).
        lr: learning rate, > 0.
        momentum: μ >= 0.
        dampening: τ in [0, 1].
        nesterov: use Nesterov momentum (needs μ > 0 and τ = 0).
        weight_decay: λ >= 0.

    Examples:
        >>> opt = SGD(model.parameters(), lr=0.1 / 1000)
    """

    hyper_names: ClassVar[tuple[str, ...]] = (
        "lr",
        "momentum",
        "dampening",
        "nesterov",
        "weight_decay",
    )
    momentum: float
    dampening: float
    nesterov: bool
    weight_decay: float

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        hyper = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
        }
        super().__init__(params, hyper)

    @classmethod
    def _validate(cls, hyper: Mapping[str, Any], where: str) -> None:
        super()._validate(hyper, where)
        check_number(where, "momentum", hyper["momentum"], low=0.0)
        check_number(where, "dampening", hyper["dampening"], low=0.0, high=1.0)
        check_number(where, "weight_decay", hyper["weight_decay"], low=0.0)
        nesterov = hyper["nesterov"]
        if not isinstance(nesterov, bool):
            raise TypeError(f"{where}: nesterov must be a bool, got {nesterov!r}")
        if nesterov and hyper["momentum"] == 0:
            raise ValueError(f"{where}: nesterov needs momentum > 0, got {hyper['momentum']}")
        if nesterov and hyper["dampening"] != 0:
            raise ValueError(f"{where}: nesterov needs dampening = 0, got {hyper['dampening']}")

    @classmethod
    def _layout(cls, hyper: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        state = ["momentum_buffer"] if hyper["momentum"] != 0 else []
        scratch = ["direction"] if hyper["weight_decay"] != 0 or hyper["nesterov"] else []
        return state, scratch

    def _update(self, chunk: dict[str, Tensor]) -> None:
        param, grad = chunk["param"], chunk["grad"]

        if self.weight_decay != 0:
            grad = torch.add(grad, param, alpha=self.weight_decay, out=chunk["direction"])

        if self.momentum != 0:
            buf = chunk["momentum_buffer"]
            if self.step_count == 1:
                buf.copy_(grad)
            else:
                buf.mul_(self._scalar("momentum", self.momentum))
                buf.add_(grad, alpha=1 - self.dampening)
            if self.nesterov:
                grad = torch.add(grad, buf, alpha=self.momentum, out=chunk["direction"])
            else:
                grad = buf

        param.add_(grad, alpha=-self.lr)
