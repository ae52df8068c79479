"""Stochastic gradient descent with momentum, written out as ``torch.optim.SGD`` computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
from torch import Tensor

from handgrad.optim import kernels
from handgrad.optim.optimizer import Optimizer, check_bool, check_number


class SGD(Optimizer):
    r"""Stochastic gradient descent, with optional momentum, Nesterov momentum and L2 decay.

    Update rule at step ``t = 1, 2, ...`` for each parameter ``θ`` with gradient ``g_t``
    (μ momentum, τ dampening, λ weight_decay)::

        g_t ← -g_t                              if maximize
        g_t ← g_t + λ·θ_{t-1}                   if λ ≠ 0
        b_1 = g_1                               if μ ≠ 0   momentum_buffer, first step
        b_t = μ·b_{t-1} + (1-τ)·g_t             if μ ≠ 0   later steps
        d_t = g_t + μ·b_t                       if nesterov
        d_t = b_t                               if μ ≠ 0 and not nesterov
        d_t = g_t                               if μ = 0
        θ_t = θ_{t-1} - lr·d_t

    With μ = 0 and λ = 0 this is the ninja notebook's ``w += -lr * dw``. SGD keeps no step
    count (as in torch): a parameter's first step is the one that finds no momentum buffer.

    Args:
        params: tensors, or dicts of parameter groups with per-group options (as in torch).
        lr: learning rate, > 0 (a float or a one-element tensor).
        momentum: μ >= 0.
        dampening: τ in [0, 1].
        weight_decay: λ >= 0.
        nesterov: use Nesterov momentum (needs μ > 0 and τ = 0).
        maximize: ascend the objective instead of descending it.
        fused: run the compiled one-pass loop where it can (None: on the CPU in
            float32/float64; False: always the torch operations of ``_update``).

    Examples:
        >>> opt = SGD(model.parameters(), lr=0.1 / 1000)
    """

    option_names: ClassVar[tuple[str, ...]] = (
        "lr",
        "momentum",
        "dampening",
        "weight_decay",
        "nesterov",
        "maximize",
    )
    group_extras: ClassVar[dict[str, Any]] = {
        "foreach": None,
        "differentiable": False,
        "fused": None,
    }
    has_step: ClassVar[bool] = False
    has_fused_loop: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults, fused)

    @classmethod
    def _validate(cls, group: Mapping[str, Any], where: str) -> None:
        super()._validate(group, where)
        check_number(where, "momentum", group["momentum"], low=0.0)
        check_number(where, "dampening", group["dampening"], low=0.0, high=1.0)
        check_bool(where, "nesterov", group["nesterov"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"{where}: nesterov needs momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )

    def _state_names(self, group: Mapping[str, Any]) -> set[str]:
        return {"momentum_buffer"} if group["momentum"] != 0 else set()

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {}  # the momentum buffer is the first step's gradient, made in _update

    def _update(
        self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]

        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)

        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.clone()
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            if group["nesterov"]:
                grad = grad.add(buf, alpha=momentum)
            else:
                grad = buf

        param.add_(grad, alpha=-lr)

    def _update_fused(self, arrays: dict[str, np.ndarray], t: float, group: dict[str, Any]) -> None:
        # Runs only on later steps (every parameter has its buffer): b = μ·b + (1-τ)·g.
        s = arrays["param"].dtype.type
        lr, momentum = float(group["lr"]), group["momentum"]
        sign = s(-1.0 if group["maximize"] else 1.0)
        param, grad = arrays["param"], arrays["grad"]
        if momentum == 0:
            kernels.kernel("sgd")(param, grad, s(group["weight_decay"]), s(-lr), sign)
            return
        grad_share, buffer_share = (1.0, momentum) if group["nesterov"] else (0.0, 1.0)
        kernels.kernel("sgd_momentum")(
            param,
            grad,
            arrays["momentum_buffer"],
            s(group["weight_decay"]),
            s(momentum),
            s(1 - group["dampening"]),
            s(grad_share),
            s(buffer_share),
            s(-lr),
            np.finfo(s).tiny,
            sign,
        )
