"""``Linear`` (y = x Wᵀ + b) and ``Flatten``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from handgrad.nn import functional as F
from handgrad.nn.checks import check_dtype, check_input
from handgrad.nn.init import init_bias, init_weight
from handgrad.nn.module import Module


class Linear(Module):
    """Fully connected layer: y = x Wᵀ + b, with W of shape ``(out_features, in_features)``.

    Backward: dL/dx = dL/dy · W,  dL/dW += (dL/dy)ᵀ · x,  dL/db += Σ_n dL/dy[n]
    (see ``functional.linear_backward``).

    Args:
        in_features: D_in.
        out_features: D_out.
        bias: whether to add a learned bias.
        init: ``"torch"`` (torch.nn.Linear's default, value for value from the same seed),
            ``"normal"`` (N(0, std²), std 1 unless given), ``"xavier_uniform"``,
            ``"xavier_normal"``, ``"kaiming_uniform"``, ``"kaiming_normal"``.
        std: the standard deviation for ``init="normal"``.
        bias_std: draw the bias from N(0, bias_std²) (Fleuret's practical) instead of the init's
            default (torch: uniform; others: zeros).
        draw_order: ``"in_out"`` draws W as ``(D_in, D_out)`` and transposes it, as notebooks
            that write ``x @ w`` do.

    Shape:
        input (N, D_in) → output (N, D_out).

    Attributes:
        input_grad: set it to False on a first layer fed with data: backward then skips the
            D_out·D_in·N multiply-adds of dL/dx, which nothing uses, and returns ``torch.empty(0)``.

    Example:
        >>> layer = Linear(784, 50)
        >>> y = layer(torch.randn(32, 784))          # (32, 50)
        >>> grad_x = layer.backward(torch.ones(32, 50))  # (32, 784); layer.weight.grad filled
    """

    weight: Tensor
    bias: Tensor | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        init: str = "torch",
        std: float | None = None,
        bias_std: float | None = None,
        draw_order: str = "out_in",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Linear: {name} must be a positive integer, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features
        dtype = check_dtype(dtype)
        weight = init_weight(
            out_features,
            in_features,
            init,
            std=std,
            draw_order=draw_order,
            dtype=dtype,
            device=device,
        )
        self.register_parameter("weight", weight)
        self.has_bias = bias
        if bias:
            b = init_bias(
                out_features, in_features, init, bias_std=bias_std, dtype=dtype, device=device
            )
            self.register_parameter("bias", b)
        else:
            self.bias = None
        self._x: Tensor | None = None
        # False when nothing needs dL/dx (the first layer, fed data): backward then skips the
        # (N, D_out)·(D_out, D_in) product and returns an empty tensor.
        self.input_grad = True

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        weight = self.weight
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.in_features:
            self._check(x)
        try:
            y = F.linear_forward(x, weight, self.bias)  # (N, D_out)
        except RuntimeError:
            self._check(x)  # a dtype or device mismatch: say so in words
            raise
        self._x = x
        return y

    def _check(self, x: object) -> None:
        d = self.in_features
        check_input(self, x, ndim=2, features=d, expected=f"(N, {d})", like=self.weight)

    def backward(self, grad_output: Tensor) -> Tensor:
        x = self._x
        if x is None:
            raise self._not_run()
        if grad_output.shape != (x.shape[0], self.out_features):
            check_input(self, grad_output, like=self.weight, what="grad_output")
            raise ValueError(
                f"Linear({self.extra_repr()}): expected grad_output of shape "
                f"({x.shape[0]}, {self.out_features}), got {tuple(grad_output.shape)}"
            )
        bias = self.bias
        grad_x, _, _ = F.linear_backward(
            grad_output,
            x,
            self.weight,
            self.weight.grad,
            None if bias is None else bias.grad,
            has_bias=bias is not None,
            need_input_grad=self.input_grad,
        )
        return grad_x  # (N, D_in), or (0,) when input_grad is False

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.has_bias}"
        )


class Flatten(Module):
    """Flatten dimensions ``start_dim..end_dim`` into one: (N, 28, 28) → (N, 784).

    Backward: dL/dx is dL/dy reshaped back to the input's shape (flattening moves no values).
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim
        self._shape: torch.Size | None = None

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if not isinstance(x, Tensor):
            raise TypeError(f"Flatten: expected a tensor input, got {type(x).__name__}")
        self._shape = x.shape
        return torch.flatten(x, self.start_dim, self.end_dim)

    def backward(self, grad_output: Tensor) -> Tensor:
        if self._shape is None:
            raise self._not_run()
        if grad_output.numel() != math.prod(self._shape):
            raise ValueError(
                f"Flatten({self.extra_repr()}): grad_output of shape {tuple(grad_output.shape)} "
                f"does not match the input's {tuple(self._shape)}"
            )
        return grad_output.reshape(self._shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
