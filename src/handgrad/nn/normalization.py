"""``BatchNorm1d`` and ``LayerNorm``, with torch.nn's parameters, buffers and state-dict keys."""

from __future__ import annotations

import torch
from torch import Tensor

from handgrad.nn import functional as F
from handgrad.nn.checks import check_dtype, check_input, label
from handgrad.nn.module import Module, grad_of


class BatchNorm1d(Module):
    """y = γ · x̂ + β, x̂ = (x − μ) / √(σ² + ε), per feature.

    Training: μ, σ² are the batch's mean and biased variance, and the running statistics move
    towards them: r ← (1 − momentum)·r + momentum·stat (the running variance takes the unbiased
    batch variance, as torch does; ``momentum=None`` averages all batches equally).
    Eval: μ, σ² are the running statistics.

    Backward (g = dL/dy · γ = dL/dx̂):
        train: dL/dx = (g − mean_n g − x̂ · mean_n(g·x̂)) / √(σ² + ε)
        eval:  dL/dx = g / √(σ²_running + ε)
        dL/dγ += Σ_n dL/dy · x̂,  dL/dβ += Σ_n dL/dy.

    Shape: (N, C) → (N, C).
    """

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_features, int) or num_features <= 0:
            raise ValueError(
                f"BatchNorm1d: num_features must be a positive integer, got {num_features!r}"
            )
        if eps <= 0:
            raise ValueError(f"BatchNorm1d: eps must be > 0, got {eps}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm1d: momentum must be in [0, 1] or None, got {momentum}")
        dtype = check_dtype(dtype)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        if affine:
            self.register_parameter("weight", torch.ones(num_features, dtype=dtype, device=device))
            self.register_parameter("bias", torch.zeros(num_features, dtype=dtype, device=device))
        self.register_buffer("running_mean", torch.zeros(num_features, dtype=dtype, device=device))
        self.register_buffer("running_var", torch.ones(num_features, dtype=dtype, device=device))
        self.register_buffer(
            "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
        )
        self._x_hat: Tensor | None = None
        self._inv_std: Tensor | None = None
        self._batch_stats = True

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        f = self.num_features
        check_input(self, x, ndim=2, features=f, expected=f"(N, {f})", like=self.running_mean)
        if self.training:
            if x.shape[0] < 2:
                raise ValueError(
                    f"{label(self)}: training needs more than 1 sample per batch to estimate "
                    f"the variance, got input of shape {tuple(x.shape)}; "
                    "use a larger batch or eval()"
                )
            x_hat, mean, var, inv_std = F.batch_norm_forward_train(x, self.eps)
            self._update_running(mean, var, x.shape[0])
            self._batch_stats = True
        else:
            inv_std = torch.rsqrt(self.running_var + self.eps)  # (C,)
            x_hat = (x - self.running_mean) * inv_std  # (N, C)
            self._batch_stats = False
        self._x_hat, self._inv_std = x_hat, inv_std
        if not self.affine:
            return x_hat
        return torch.addcmul(self.bias, x_hat, self.weight)  # (N, C)

    def _update_running(self, mean: Tensor, var: Tensor, n: int) -> None:
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked.item())
        else:
            factor = self.momentum
        unbiased = var * (n / (n - 1))  # (C,)
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)

    def backward(self, grad_output: Tensor) -> Tensor:
        x_hat, inv_std = _saved(self, grad_output)
        if self.affine:
            grad_of(self.weight).add_((grad_output * x_hat).sum(0))  # (C,)
            grad_of(self.bias).add_(grad_output.sum(0))  # (C,)
            grad_xhat = grad_output * self.weight  # (N, C)
        else:
            grad_xhat = grad_output
        if self._batch_stats:
            return F.batch_norm_backward_train(grad_xhat, x_hat, inv_std)  # (N, C)
        return grad_xhat * inv_std  # (N, C)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        )


class LayerNorm(Module):
    """y = γ ⊙ x̂ + β, x̂ = (x − μ) / √(σ² + ε), μ and σ² over each sample's last dimensions.

    Backward (g = dL/dy ⊙ γ, means over the normalized dimensions):
        dL/dx = (g − mean g − x̂ · mean(g ⊙ x̂)) / √(σ² + ε),
        dL/dγ += Σ_n dL/dy ⊙ x̂,  dL/dβ += Σ_n dL/dy.

    Args:
        normalized_shape: the trailing shape D to normalize over, e.g. ``50`` or ``(28, 28)``.

    Shape: (N, *D) → (N, *D).
    """

    weight: Tensor
    bias: Tensor

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        shape = tuple(normalized_shape)
        if not shape or any(not isinstance(d, int) or d <= 0 for d in shape):
            raise ValueError(
                f"LayerNorm: normalized_shape must be positive integers, got {normalized_shape!r}"
            )
        if eps <= 0:
            raise ValueError(f"LayerNorm: eps must be > 0, got {eps}")
        dtype = check_dtype(dtype)
        self.normalized_shape = shape
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.has_bias = bias and elementwise_affine
        self._dims = tuple(range(-len(shape), 0))
        if elementwise_affine:
            self.register_parameter("weight", torch.ones(shape, dtype=dtype, device=device))
            if bias:
                self.register_parameter("bias", torch.zeros(shape, dtype=dtype, device=device))
        self._dtype = dtype
        self._x_hat: Tensor | None = None
        self._inv_std: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        shape = self.normalized_shape
        expected = f"(N, {', '.join(map(str, shape))})"
        like = self.weight if self.elementwise_affine else None
        check_input(self, x, expected=expected, like=like)
        if x.dim() <= len(shape) or tuple(x.shape[-len(shape) :]) != shape:
            raise ValueError(
                f"{label(self)}: expected input of shape {expected}, got {tuple(x.shape)}"
            )
        x_hat, inv_std = F.layer_norm_forward(x, self._dims, self.eps)
        self._x_hat, self._inv_std = x_hat, inv_std
        if not self.elementwise_affine:
            return x_hat
        if self.has_bias:
            return torch.addcmul(self.bias, x_hat, self.weight)  # (N, *D)
        return x_hat * self.weight  # (N, *D)

    def backward(self, grad_output: Tensor) -> Tensor:
        x_hat, inv_std = _saved(self, grad_output)
        batch_dims = tuple(range(grad_output.dim() - len(self.normalized_shape)))
        if self.elementwise_affine:
            grad_of(self.weight).add_((grad_output * x_hat).sum(batch_dims))  # (*D)
            if self.has_bias:
                grad_of(self.bias).add_(grad_output.sum(batch_dims))  # (*D)
            grad_xhat = grad_output * self.weight  # (N, *D)
        else:
            grad_xhat = grad_output
        return F.layer_norm_backward(grad_xhat, x_hat, inv_std, self._dims)  # (N, *D)

    def extra_repr(self) -> str:
        shape = self.normalized_shape
        shown = f"({shape[0]},)" if len(shape) == 1 else str(shape)
        return f"{shown}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


def _saved(norm: BatchNorm1d | LayerNorm, grad_output: Tensor) -> tuple[Tensor, Tensor]:
    """What the last forward kept for ``backward``, x̂ (like the input) and 1/σ; raises if
    there was no forward or ``grad_output`` is not shaped like the input."""
    x_hat, inv_std = norm._x_hat, norm._inv_std
    if x_hat is None or inv_std is None:
        raise norm._not_run()
    if grad_output.shape != x_hat.shape:
        raise ValueError(
            f"{label(norm)}: expected grad_output of shape {tuple(x_hat.shape)}, "
            f"got {tuple(grad_output.shape)}"
        )
    return x_hat, inv_std
