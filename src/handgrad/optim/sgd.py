"""Stochastic gradient descent with momentum, written out as ``torch.optim.SGD`` computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from handgrad.optim import kernels
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
        fused: run the compiled one-pass loop (None: wherever it can, i.e. on the CPU).

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
    has_fused_loop: ClassVar[bool] = True
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
        *,
        fused: bool | None = None,
    ) -> None:
        hyper = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
        }
        super().__init__(params, hyper, fused)

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

    def _update_fused(self, arrays: dict[str, np.ndarray]) -> None:
        s = self._np_scalar
        param, grad = arrays["param"], arrays["grad"]
        if self.momentum == 0:
            kernels.kernel("sgd")(param, grad, s(self.weight_decay), s(-self.lr))
            return
        first = self.step_count == 1  # b_1 = g_1: keep none of b, take all of g
        keep, take = (0.0, 1.0) if first else (self.momentum, 1 - self.dampening)
        grad_share, buffer_share = (1.0, self.momentum) if self.nesterov else (0.0, 1.0)
        kernels.kernel("sgd_momentum")(
            param,
            grad,
            arrays["momentum_buffer"],
            s(self.weight_decay),
            s(keep),
            s(take),
            s(grad_share),
            s(buffer_share),
            s(-self.lr),
            self._np_tiny,
        )
