"""RMSprop, written out as ``torch.optim.RMSprop`` computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from handgrad.optim import kernels
from handgrad.optim.optimizer import Optimizer, check_bool, check_number, scalar_dtype


class RMSprop(Optimizer):
    r"""RMSprop (Hinton, 2012), as ``torch.optim.RMSprop`` computes it.

    Update rule at step ``t = 1, 2, ...`` for each parameter ``θ`` with gradient ``g_t``
    (α smoothing, μ momentum, λ weight_decay; ``v_0 = ḡ_0 = b_0 = 0``)::

        g_t ← -g_t                               if maximize
        g_t ← g_t + λ·θ_{t-1}                    if λ ≠ 0
        v_t = α·v_{t-1} + (1-α)·g_t²             square_avg
        ḡ_t = α·ḡ_{t-1} + (1-α)·g_t              grad_avg, if centered (a lerp toward g_t)
        s_t = √(v_t - ḡ_t²) + ε                  if centered
        s_t = √v_t + ε                           otherwise
        b_t = μ·b_{t-1} + g_t / s_t              momentum_buffer, if μ > 0
        θ_t = θ_{t-1} - lr·b_t                   if μ > 0
        θ_t = θ_{t-1} - lr·g_t / s_t             otherwise

    Args:
        params: tensors, or dicts of parameter groups with per-group options (as in torch).
        lr: learning rate, > 0 (a float or a one-element tensor).
        alpha: α in [0, 1).
        eps: ε >= 0.
        weight_decay: λ >= 0.
        momentum: μ >= 0.
        centered: normalise by an estimate of the gradient's variance instead of its
            second moment.
        maximize: ascend the objective instead of descending it.
        fused: run the compiled one-pass loop where it can (None: on the CPU in
            float32/float64; False: always the torch operations of ``_update``).
    """

    option_names: ClassVar[tuple[str, ...]] = (
        "lr",
        "alpha",
        "eps",
        "weight_decay",
        "momentum",
        "centered",
        "maximize",
    )
    has_fused_loop: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
            "maximize": maximize,
        }
        super().__init__(params, defaults, fused)

    def _init_caches(self) -> None:
        self._scratch: dict[tuple[int, str], np.ndarray] = {}

    @classmethod
    def _validate(cls, group: Mapping[str, Any], where: str) -> None:
        super()._validate(group, where)
        check_number(where, "alpha", group["alpha"], low=0.0, high=1.0, high_open=True)
        check_number(where, "momentum", group["momentum"], low=0.0)
        check_bool(where, "centered", group["centered"])

    def _state_names(self, group: Mapping[str, Any]) -> set[str]:
        names = {"step", "square_avg"}
        if group["momentum"] > 0:
            names.add("momentum_buffer")
        if group["centered"]:
            names.add("grad_avg")
        return names

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = {"step": torch.tensor(0.0, dtype=scalar_dtype())}
        state["square_avg"] = torch.zeros_like(param)
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(param)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(param)
        return state

    def _update(
        self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        lr, alpha, eps, momentum = group["lr"], group["alpha"], group["eps"], group["momentum"]
        square_avg = state["square_avg"]

        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])

        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg.lerp_(grad, 1 - alpha)
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_().add_(eps)
        else:
            avg = square_avg.sqrt().add_(eps)

        if momentum > 0:
            buf = state["momentum_buffer"]
            buf.mul_(momentum).addcdiv_(grad, avg)
            param.add_(buf, alpha=-lr)
        else:
            param.addcdiv_(grad, avg, value=-lr)

    def _update_fused(self, arrays: dict[str, np.ndarray], t: float, group: dict[str, Any]) -> None:
        s = arrays["param"].dtype.type
        alpha, momentum = group["alpha"], group["momentum"]
        head = (arrays["param"], arrays["grad"], arrays["square_avg"])
        common = (s(group["weight_decay"]), s(alpha), s(1 - alpha), s(group["eps"]))
        tail = (s(-float(group["lr"])), np.finfo(s).tiny, s(-1.0 if group["maximize"] else 1.0))
        if group["centered"]:
            if momentum > 0:
                buffer = arrays["momentum_buffer"]
            else:  # scratch for b = 0·b + g/s, zeroed so that 0·b is exactly 0
                key = (head[0].shape[0], head[0].dtype.str)
                kept = self._scratch.get(key)
                if kept is None:
                    kept = self._scratch[key] = np.zeros_like(head[0])
                buffer = kept
                buffer.fill(0)
            kernels.kernel("rmsprop_centered")(
                *head, arrays["grad_avg"], buffer, *common, s(momentum), *tail
            )
        elif momentum > 0:
            kernels.kernel("rmsprop_momentum")(
                *head, arrays["momentum_buffer"], *common, s(momentum), *tail
            )
        else:
            kernels.kernel("rmsprop")(*head, *common, *tail)
