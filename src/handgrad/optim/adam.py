"""Adam and AdamW, written out as ``torch.optim.Adam`` computes them."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from handgrad.optim import kernels
from handgrad.optim.optimizer import (
    TORCH_EXTRAS,
    Optimizer,
    check_bool,
    scalar_dtype,
    value,
)


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), as ``torch.optim.Adam`` computes it.

    Update rule at step ``t = 1, 2, ...`` for each parameter ``θ`` with gradient ``g_t``
    (``m_0 = v_0 = v^max_0 = 0``; λ is ``weight_decay``)::

        g_t    ← -g_t                                   if maximize
        θ_{t-1} ← θ_{t-1}·(1 - lr·λ)                    if decoupled_weight_decay (AdamW)
        g_t    ← g_t + λ·θ_{t-1}                        otherwise (an L2 penalty)
        m_t    = β1·m_{t-1} + (1-β1)·g_t                exp_avg (a lerp toward g_t)
        v_t    = β2·v_{t-1} + (1-β2)·g_t²               exp_avg_sq
        v^max_t = max(v^max_{t-1}, v_t), v_t ← v^max_t  if amsgrad (max_exp_avg_sq)
        θ_t    = θ_{t-1} - lr/(1-β1^t) · m_t / (√v_t / √(1-β2^t) + ε)

    Args:
        params: tensors, or dicts of parameter groups with per-group options (as in torch).
        lr: learning rate, > 0 (a float or a one-element tensor).
        betas: ``(β1, β2)``, each in [0, 1).
        eps: ε >= 0, added to the denominator.
        weight_decay: λ >= 0.
        amsgrad: normalise by the running maximum of ``v_t`` (Reddi et al., 2018).
        maximize: ascend the objective instead of descending it.
        decoupled_weight_decay: shrink θ directly (AdamW) instead of adding λ·θ to g.
        fused: run the compiled one-pass loop ``kernels._adam`` where it can (None: on the
            CPU in float32/float64; False: always the torch operations of ``_update``).

    Examples:
        >>> opt = Adam(model.parameters(), lr=1e-3)
        >>> opt.zero_grad(); model.backward(loss.backward()); opt.step()
    """

    option_names: ClassVar[tuple[str, ...]] = (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "amsgrad",
        "maximize",
        "decoupled_weight_decay",
    )
    group_extras: ClassVar[dict[str, Any]] = {**TORCH_EXTRAS, "fused": None}
    has_fused_loop: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        fused: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, list) else betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults, fused)

    def _init_caches(self) -> None:
        # The compiled loop's arrays per plan (see ``_columns``), by the plan's id.
        self._kept_columns: dict[int, tuple[object, tuple[tuple[np.ndarray, ...], ...]]] = {}

    @classmethod
    def _validate(cls, group: Mapping[str, Any], where: str) -> None:
        super()._validate(group, where)
        check_bool(where, "amsgrad", group["amsgrad"])

    def _state_names(self, group: Mapping[str, Any]) -> set[str]:
        names = {"step", "exp_avg", "exp_avg_sq"}
        return names | {"max_exp_avg_sq"} if group["amsgrad"] else names

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = {
            "step": torch.tensor(0.0, dtype=scalar_dtype()),
            "exp_avg": torch.zeros_like(param),
            "exp_avg_sq": torch.zeros_like(param),
        }
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(param)
        return state

    def _update(
        self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay = group["weight_decay"]
        t = value(state["step"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(param, alpha=weight_decay)

        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

        bias_correction1 = 1 - beta1**t
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        if group["amsgrad"]:
            max_exp_avg_sq = state["max_exp_avg_sq"]
            torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
            exp_avg_sq = max_exp_avg_sq
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        param.addcdiv_(exp_avg, denom, value=-(lr / bias_correction1))

    def _update_fused(self, arrays: dict[str, np.ndarray], t: float, group: dict[str, Any]) -> None:
        self._update_fused_each([arrays], t, group, key=arrays)

    def _update_fused_each(
        self,
        plan: list[dict[str, np.ndarray]],
        t: float,
        group: dict[str, Any],
        key: object = None,
    ) -> None:
        # The loop folds the bias correction of v into the step: θ - s·√b2 · m / (√v + ε·√b2).
        # Its coefficients are made once for all the parameters in ``plan`` (one dtype).
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        step_size = float(lr / (1 - beta1**t))
        s = plan[0]["param"].dtype.type
        constant = _constant_coefficients(s, float(lr), beta1, beta2, group)
        bias_corrected = (s(eps * bias_correction2_sqrt), s(-step_size * bias_correction2_sqrt))
        amsgrad = group["amsgrad"]
        columns = self._columns(plan if key is None else key, plan, amsgrad)
        loop = kernels.kernel("adam_amsgrad" if amsgrad else "adam")
        loop(*columns, *constant[:5], *bias_corrected, *constant[5:])

    def _columns(
        self, key: object, plan: list[dict[str, np.ndarray]], amsgrad: bool
    ) -> tuple[tuple[np.ndarray, ...], ...]:
        """The loop's arrays of every parameter in ``plan``, as (θ_j...), (g_j...), (m_j...),
        (v_j...)[, (v^max_j...)]: made once per plan (``key``, kept alive while it is kept)."""
        kept = self._kept_columns.get(id(key))
        if kept is None or kept[0] is not key:
            names = _AMSGRAD_ARRAYS if amsgrad else _ARRAYS
            columns = tuple(tuple(a[name] for a in plan) for name in names)
            if len(self._kept_columns) > 2 * len(self.param_groups):
                self._kept_columns.clear()  # plans made again (moved, re-flattened): the old go
            kept = self._kept_columns[id(key)] = (key, columns)
        return kept[1]


_ARRAYS = ("param", "grad", "exp_avg", "exp_avg_sq")
_AMSGRAD_ARRAYS = (*_ARRAYS, "max_exp_avg_sq")


@functools.lru_cache(maxsize=64)
def _coefficients(
    s: type,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    decoupled: bool,
    sign: float,
) -> tuple[Any, ...]:
    """The loop's coefficients that do not change with t, in the arrays' dtype ``s``."""
    if decoupled:  # θ·(1 - lr·λ), no L2 term
        decay, l2 = 1 - lr * weight_decay, 0.0
    else:  # θ·1, g + λ·θ
        decay, l2 = 1.0, weight_decay
    tiny = np.finfo(s).tiny
    return (s(decay), s(l2), s(1 - beta1), s(beta2), s(1 - beta2), tiny, s(sign))


def _constant_coefficients(
    s: type, lr: float, beta1: float, beta2: float, group: dict[str, Any]
) -> tuple[Any, ...]:
    sign = -1.0 if group["maximize"] else 1.0
    decoupled = group["decoupled_weight_decay"]
    if decoupled and isinstance(group["lr"], Tensor):  # 1 - lr·λ rounded as torch rounds it
        decay = float(1 - group["lr"] * group["weight_decay"])
        row = _coefficients(s, lr, beta1, beta2, group["weight_decay"], decoupled, sign)
        return (s(decay), *row[1:])
    return _coefficients(s, lr, beta1, beta2, group["weight_decay"], decoupled, sign)


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with weight decay decoupled from the gradient.

    As ``torch.optim.AdamW`` computes it: :class:`Adam` with ``decoupled_weight_decay=True``,
    λ shrinking the parameter directly instead of entering the gradient::

        θ_{t-1} ← θ_{t-1}·(1 - lr·λ)
        m_t    = β1·m_{t-1} + (1-β1)·g_t
        v_t    = β2·v_{t-1} + (1-β2)·g_t²
        v^max_t = max(v^max_{t-1}, v_t), v_t ← v^max_t      if amsgrad
        θ_t    = θ_{t-1} - lr/(1-β1^t) · m_t / (√v_t / √(1-β2^t) + ε)

    Args: as :class:`Adam`, with ``weight_decay`` defaulting to 0.01 as in torch.
    """

    option_names: ClassVar[tuple[str, ...]] = (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "amsgrad",
        "maximize",
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
            fused=fused,
        )
