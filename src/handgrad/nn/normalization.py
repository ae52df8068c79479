"""``BatchNorm1d`` and ``LayerNorm``, with torch.nn's parameters, buffers and state-dict keys."""

from __future__ import annotations

import torch
from torch import Tensor

from handgrad.nn import functional as F
from handgrad.nn.checks import check_dtype, check_input, label
from handgrad.nn.module import Module, accumulate_grad


class BatchNorm1d(Module):
    """y = γ · x̂ + β, x̂ = (x − μ) / √(σ² + ε), per feature (channel).

    Training (or ``track_running_stats=False``, in either mode): μ, σ² are the batch's mean and
    biased variance over N (and L), and the running statistics, if tracked, move towards them:
    r ← (1 − momentum)·r + momentum·stat (the running variance takes the unbiased batch
    variance, as torch does; ``momentum=None`` averages all batches equally, momentum 1/t at
    the t-th batch). Eval with tracked statistics: μ, σ² are the running ones.

    Backward (g = dL/dy · γ = dL/dx̂, sums and means over N and L):
        batch statistics: dL/dx = (g − mean g − x̂ · mean(g·x̂)) / √(σ² + ε)
        running statistics: dL/dx = g / √(σ²_running + ε)
        dL/dγ += Σ dL/dy · x̂,  dL/dβ += Σ dL/dy.

    Args:
        affine: learn γ (``weight``) and, with ``bias``, β (``bias``).
        track_running_stats: keep ``running_mean``/``running_var``/``num_batches_tracked``.
        bias: with ``affine``, whether β exists (torch 2.x's keyword).

    Shape: (N, C) → (N, C), or (N, C, L) → (N, C, L).
    """

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor
    _saved_names = ("_x_hat", "_inv_std", "_batch_stats")

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        bias: bool = True,
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
        self.has_bias = affine and bias
        self.track_running_stats = track_running_stats
        c = num_features
        if affine:
            self.register_parameter("weight", torch.ones(c, dtype=dtype, device=device))
            if bias:
                self.register_parameter("bias", torch.zeros(c, dtype=dtype, device=device))
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(c, dtype=dtype, device=device))
            self.register_buffer("running_var", torch.ones(c, dtype=dtype, device=device))
            self.register_buffer(
                "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
            )
        self._dtype = dtype
        self._x_hat: Tensor | None = None
        self._inv_std: Tensor | None = None
        self._batch_stats = True

    def _moved(self, dtype: torch.dtype | None, device: torch.device | str | None) -> None:
        if dtype is not None:
            self._dtype = dtype

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        f = self.num_features
        if not isinstance(x, Tensor) or x.dim() not in (2, 3) or x.shape[1] != f:
            check_input(self, x, expected=f"(N, {f}) or (N, {f}, L)")
            raise ValueError(
                f"{label(self)}: expected input of shape (N, {f}) or (N, {f}, L), "
                f"got {tuple(x.shape)}"
            )
        like = self.weight if self.affine else None
        if like is None and self.track_running_stats:
            like = self.running_mean
        check_input(self, x, like=like)
        dims = (0,) if x.dim() == 2 else (0, 2)
        shape = (1, f) if x.dim() == 2 else (1, f, 1)  # (C,) statistics against x
        batch_stats = self.training or not self.track_running_stats
        if batch_stats:
            count = x.numel() // f  # N (· L) values per channel
            if self.training and count < 2:
                raise ValueError(
                    f"{label(self)}: training needs more than 1 sample (value per channel) to "
                    f"estimate the variance, got input of shape {tuple(x.shape)}; "
                    "use a larger batch or eval()"
                )
            x_hat, mean, var, inv_std = F.batch_norm_forward_train(x, self.eps, dims)
            if self.training and self.track_running_stats:
                self._update_running(mean.view(f), var.view(f), count)
        else:
            inv_std = torch.rsqrt(self.running_var + self.eps).view(shape)  # (1, C[, 1])
            x_hat = (x - self.running_mean.view(shape)) * inv_std  # like x
        self._x_hat, self._inv_std, self._batch_stats = x_hat, inv_std, batch_stats
        if not self.affine:
            return x_hat
        if self.has_bias:
            return torch.addcmul(self.bias.view(shape), x_hat, self.weight.view(shape))
        return x_hat * self.weight.view(shape)  # like x

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
        dims = (0,) if x_hat.dim() == 2 else (0, 2)
        shape = inv_std.shape
        if self.affine:
            accumulate_grad(self.weight, (grad_output * x_hat).sum(dims))  # (C,)
            if self.has_bias:
                accumulate_grad(self.bias, grad_output.sum(dims))  # (C,)
            grad_xhat = grad_output * self.weight.view(shape)  # like x
        else:
            grad_xhat = grad_output
        if self._batch_stats:
            return F.batch_norm_backward_train(grad_xhat, x_hat, inv_std, dims)  # like x
        return grad_xhat * inv_std  # like x

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class LayerNorm(Module):
    """y = γ ⊙ x̂ + β, x̂ = (x − μ) / √(σ² + ε), μ and σ² over each sample's last dimensions.

    Backward (g = dL/dy ⊙ γ, means over the normalized dimensions):
        dL/dx = (g − mean g − x̂ · mean(g ⊙ x̂)) / √(σ² + ε),
        dL/dγ += Σ_n dL/dy ⊙ x̂,  dL/dβ += Σ_n dL/dy.

    Args:
        normalized_shape: the trailing shape D to normalize over, e.g. ``50`` or ``(28, 28)``.

    Shape: (*, *D) → (*, *D), any leading dimensions or none (an input of shape D).
    """

    weight: Tensor
    bias: Tensor
    _saved_names = ("_x_hat", "_inv_std")

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
        expected = f"(*, {', '.join(map(str, shape))})"
        like = self.weight if self.elementwise_affine else None
        check_input(self, x, expected=expected, like=like)
        if x.dim() < len(shape) or tuple(x.shape[-len(shape) :]) != shape:
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
            accumulate_grad(self.weight, _sum_over(grad_output * x_hat, batch_dims))  # (*D)
            if self.has_bias:
                accumulate_grad(self.bias, _sum_over(grad_output, batch_dims))  # (*D)
            grad_xhat = grad_output * self.weight  # (N, *D)
        else:
            grad_xhat = grad_output
        return F.layer_norm_backward(grad_xhat, x_hat, inv_std, self._dims)  # (N, *D)

    def extra_repr(self) -> str:
        shape = self.normalized_shape
        shown = f"({shape[0]},)" if len(shape) == 1 else str(shape)
        return f"{shown}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


def _sum_over(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Σ over ``dims``; with no dims, ``t`` itself (torch's ``sum(())`` would sum everything)."""
    return t.sum(dims) if dims else t


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
