"""Adam and AdamW, written out with ``torch.optim.Adam``'s formulas and operations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from handgrad.optim import kernels
from handgrad.optim.optimizer import Optimizer, check_number, sqrt_into


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), as ``torch.optim.Adam`` computes it.

    Update rule at step ``t = 1, 2, ...`` for each parameter ``θ`` with gradient ``g_t``
    (``m_0 = v_0 = v^max_0 = 0``; λ is ``weight_decay``, added to the gradient as an L2 penalty)::

        g_t    ← g_t + λ·θ_{t-1}                            if λ ≠ 0 (into scratch; .grad kept)
        m_t    = β1·m_{t-1} + (1-β1)·g_t                    exp_avg     (lerp toward g_t)
        v_t    = β2·v_{t-1} + (1-β2)·g_t²                   exp_avg_sq
        v^max_t = max(v^max_{t-1}, v_t), v_t ← v^max_t      if amsgrad  max_exp_avg_sq
        denom  = sqrt(v_t) / sqrt(1-β2^t) + ε
        θ_t    = θ_{t-1} - lr/(1-β1^t) · m_t / denom

    (computed as lr·√(1-β2^t)/(1-β1^t) · m_t / (√v_t + ε·√(1-β2^t)), one pass fewer. On the
    CPU all of it runs as one compiled loop, ``kernels._adam``, which also stores an m or v
    that decays below the smallest normal float as 0: subnormals are ~100x slower to compute.)

    Args:
        params: tensors with a preallocated ``.grad`` each (flatten the model first for the
            fast path).
        lr: learning rate, > 0.
        betas: ``(β1, β2)``, each in [0, 1).
        eps: ε >= 0, added to the denominator.
        weight_decay: λ >= 0.
        amsgrad: normalise by the running maximum of ``v_t`` (Reddi et al., 2018).
        fused: run the compiled one-pass loop (None: wherever it can, i.e. on the CPU).

    Examples:
        >>> opt = Adam(model.parameters(), lr=1e-3)
        >>> model.backward(loss.backward()); opt.step(); opt.zero_grad()
    """

    hyper_names: ClassVar[tuple[str, ...]] = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    has_fused_loop: ClassVar[bool] = True
    decoupled_weight_decay: ClassVar[bool] = False
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    amsgrad: bool

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        fused: bool | None = None,
    ) -> None:
        hyper = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
        }
        super().__init__(params, hyper, fused)

    @classmethod
    def _validate(cls, hyper: Mapping[str, Any], where: str) -> None:
        super()._validate(hyper, where)
        betas = hyper["betas"]
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise ValueError(f"{where}: betas must be a pair (β1, β2), got {betas!r}")
        for i, beta in enumerate(betas):
            check_number(where, f"betas[{i}]", beta, low=0.0, high=1.0, high_open=True)
        check_number(where, "eps", hyper["eps"], low=0.0)
        check_number(where, "weight_decay", hyper["weight_decay"], low=0.0)
        if not isinstance(hyper["amsgrad"], bool):
            raise TypeError(f"{where}: amsgrad must be a bool, got {hyper['amsgrad']!r}")

    @classmethod
    def _layout(cls, hyper: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        state = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if hyper["amsgrad"] else [])
        scratch = ["denom"]
        if hyper["weight_decay"] != 0 and not cls.decoupled_weight_decay:
            scratch.append("decayed_grad")
        return state, scratch

    def _update(self, chunk: dict[str, Tensor]) -> None:
        param, grad = chunk["param"], chunk["grad"]
        exp_avg, exp_avg_sq, denom = chunk["exp_avg"], chunk["exp_avg_sq"], chunk["denom"]
        beta1, beta2 = self.betas
        t = self.step_count

        if self.weight_decay != 0:
            if self.decoupled_weight_decay:
                param.mul_(self._scalar("decay", 1 - self.lr * self.weight_decay))
            else:
                grad = torch.add(grad, param, alpha=self.weight_decay, out=chunk["decayed_grad"])

        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(self._scalar("beta2", beta2)).addcmul_(grad, grad, value=1 - beta2)

        bias_correction1 = 1 - beta1**t
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        second_moment = exp_avg_sq
        if self.amsgrad:
            second_moment = chunk["max_exp_avg_sq"]
            torch.maximum(second_moment, exp_avg_sq, out=second_moment)

        # denom = √v/√(1-β2^t) + ε, folded into one pass as (√v + ε·√(1-β2^t)) / √(1-β2^t),
        # the division moving into the step size; equal up to rounding (~1e-16 relative).
        sqrt_into(second_moment, denom)
        denom.add_(self._scalar("eps_scaled", self.eps * bias_correction2_sqrt))
        step_size = self.lr * bias_correction2_sqrt / bias_correction1
        param.addcdiv_(exp_avg, denom, value=-step_size)

    def _update_fused(self, arrays: dict[str, np.ndarray]) -> None:
        beta1, beta2 = self.betas
        t = self.step_count
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        step_size = self.lr * bias_correction2_sqrt / (1 - beta1**t)
        if self.decoupled_weight_decay:  # θ·(1 - lr·λ), no L2 term
            decay, l2 = 1 - self.lr * self.weight_decay, 0.0
        else:  # θ·1, g + λ·θ
            decay, l2 = 1.0, self.weight_decay
        s = self._np_scalar
        hyper = (
            s(decay),
            s(l2),
            s(1 - beta1),
            s(beta2),
            s(1 - beta2),
            s(self.eps * bias_correction2_sqrt),
            s(-step_size),
            self._np_tiny,
        )
        moments = (arrays["param"], arrays["grad"], arrays["exp_avg"], arrays["exp_avg_sq"])
        if self.amsgrad:
            kernels.kernel("adam_amsgrad")(*moments, arrays["max_exp_avg_sq"], *hyper)
        else:
            kernels.kernel("adam")(*moments, *hyper)


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with weight decay decoupled from the gradient.

    As ``torch.optim.AdamW`` computes it: the same rule as :class:`Adam` except that λ
    shrinks the parameter directly instead of entering the gradient (and so the moments)::

        θ_{t-1} ← θ_{t-1}·(1 - lr·λ)
        m_t    = β1·m_{t-1} + (1-β1)·g_t
        v_t    = β2·v_{t-1} + (1-β2)·g_t²
        v^max_t = max(v^max_{t-1}, v_t), v_t ← v^max_t      if amsgrad
        θ_t    = θ_{t-1} - lr/(1-β1^t) · m_t / (sqrt(v_t) / sqrt(1-β2^t) + ε)

    Args: as :class:`Adam`, with ``weight_decay`` defaulting to 0.01 as in torch.
    """

    decoupled_weight_decay: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        fused: bool | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, fused=fused)
