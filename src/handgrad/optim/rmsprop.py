"""RMSprop, written out with ``torch.optim.RMSprop``'s exact operations in its exact order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from handgrad.optim.optimizer import Optimizer, check_number, sqrt_into


class RMSprop(Optimizer):
    r"""RMSprop (Hinton, 2012), as ``torch.optim.RMSprop`` computes it.

    Update rule at step ``t = 1, 2, ...`` for each parameter ``θ`` with gradient ``g_t``
    (α smoothing, μ momentum, λ weight_decay; ``v_0 = ḡ_0 = b_0 = 0``)::

        g_t ← g_t + λ·θ_{t-1}                    if λ ≠ 0 (into scratch; .grad kept)
        v_t = α·v_{t-1} + (1-α)·g_t²             square_avg
        ḡ_t = α·ḡ_{t-1} + (1-α)·g_t              grad_avg, if centered (lerp toward g_t)
        s_t = sqrt(v_t - ḡ_t²) + ε               if centered
        s_t = sqrt(v_t) + ε                      otherwise
        b_t = μ·b_{t-1} + g_t / s_t              momentum_buffer, if μ > 0
        θ_t = θ_{t-1} - lr·b_t                   if μ > 0
        θ_t = θ_{t-1} - lr·g_t / s_t             otherwise

    Args:
        params: tensors with a preallocated ``.grad`` each (flatten the model first for the
            fast path).
        lr: learning rate, > 0.
        alpha: α in [0, 1).
        eps: ε >= 0.
        weight_decay: λ >= 0.
        momentum: μ >= 0.
        centered: normalise by an estimate of the gradient's variance instead of its
            second moment.
    """

    hyper_names: ClassVar[tuple[str, ...]] = (
        "lr",
        "alpha",
        "eps",
        "weight_decay",
        "momentum",
        "centered",
    )
    alpha: float
    eps: float
    weight_decay: float
    momentum: float
    centered: bool

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        fused: bool | None = None,
    ) -> None:
        hyper = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
        }
        super().__init__(params, hyper, fused)

    @classmethod
    def _validate(cls, hyper: Mapping[str, Any], where: str) -> None:
        super()._validate(hyper, where)
        check_number(where, "alpha", hyper["alpha"], low=0.0, high=1.0, high_open=True)
        check_number(where, "eps", hyper["eps"], low=0.0)
        check_number(where, "weight_decay", hyper["weight_decay"], low=0.0)
        check_number(where, "momentum", hyper["momentum"], low=0.0)
        if not isinstance(hyper["centered"], bool):
            raise TypeError(f"{where}: centered must be a bool, got {hyper['centered']!r}")

    @classmethod
    def _layout(cls, hyper: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        state = ["square_avg"]
        if hyper["momentum"] > 0:
            state.append("momentum_buffer")
        if hyper["centered"]:
            state.append("grad_avg")
        scratch = ["avg"] + (["decayed_grad"] if hyper["weight_decay"] != 0 else [])
        return state, scratch

    def _update(self, chunk: dict[str, Tensor]) -> None:
        param, grad = chunk["param"], chunk["grad"]
        square_avg, avg = chunk["square_avg"], chunk["avg"]
        alpha = self.alpha

        if self.weight_decay != 0:
            grad = torch.add(grad, param, alpha=self.weight_decay, out=chunk["decayed_grad"])

        square_avg.mul_(self._scalar("alpha", alpha)).addcmul_(grad, grad, value=1 - alpha)

        if self.centered:
            grad_avg = chunk["grad_avg"]
            grad_avg.lerp_(grad, 1 - alpha)
            sqrt_into(torch.addcmul(square_avg, grad_avg, grad_avg, value=-1, out=avg), avg)
        else:
            sqrt_into(square_avg, avg)
        avg.add_(self._scalar("eps", self.eps))

        if self.momentum > 0:
            buf = chunk["momentum_buffer"]
            buf.mul_(self._scalar("momentum", self.momentum)).addcdiv_(grad, avg)
            param.add_(buf, alpha=-self.lr)
        else:
            param.addcdiv_(grad, avg, value=-self.lr)
