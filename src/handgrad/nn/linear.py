"""``Linear`` (y = x Wᵀ + b) and ``Flatten``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from handgrad.nn import functional as F
from handgrad.nn.checks import check_dtype, check_input
from handgrad.nn.init import init_bias, init_weight
from handgrad.nn.module import Module, fresh_grad


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
        input (*, D_in) → output (*, D_out): any leading dimensions, or none (a 1-D input).

    Backward computes dL/dx only when the input requires grad (see ``handgrad.nn.module``) or
    when asked with ``backward(g, input_grad=True)``; for data it skips those D_out·D_in·N
    multiply-adds and returns None, as torch does.

    Attributes:
        input_grad: set it to False to skip dL/dx even when the input requires grad.

    Example:
        >>> layer = Linear(784, 50)
        >>> y = layer(torch.randn(32, 784))          # (32, 50)
        >>> layer.backward(torch.ones(32, 50))       # None (the input is data); weight.grad set
        >>> y = layer(torch.randn(32, 784))
        >>> grad_x = layer.backward(torch.ones(32, 50), input_grad=True)  # (32, 784)
    """

    weight: Tensor
    bias: Tensor | None
    _saved_names = ("_x", "_lead", "_n")

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
        self._x: Tensor | None = None  # the input as (N, D_in)
        self._lead: torch.Size | None = None  # the input's leading shape (*) if not (N,)
        self._n = 0  # N, the rows of _x
        # False: skip dL/dx even when the input requires grad.
        self.input_grad = True

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        lead = None
        if type(x) is not Tensor and not isinstance(x, Tensor):
            self._check(x)
        shape = x.shape
        if len(shape) != 2 or shape[1] != self.in_features:
            self._check(x)
            lead = shape[:-1]  # (*): the rows are all leading positions, flattened
            x = x.reshape(-1, self.in_features)  # (N, D_in), N = prod(*)
            n = x.shape[0]
        else:
            n = shape[0]
        try:
            if n < F.ROW_BLOCKS_FROM:  # functional.linear_forward's first case, in one call
                y = F.linear_small(x, self.weight, self.bias)  # (N, D_out)
            else:
                y = F.linear_forward(x, self.weight, self.bias)  # (N, D_out)
        except RuntimeError:
            self._check(x)  # a dtype or device mismatch: say so in words
            raise
        self._x, self._lead, self._n = x, lead, n
        return y if lead is None else y.view(*lead, self.out_features)  # (*, D_out)

    def _check(self, x: object) -> None:
        d = self.in_features
        check_input(self, x, min_ndim=1, features=d, expected=f"(*, {d})", like=self.weight)

    def backward(self, grad_output: Tensor) -> Tensor | None:
        x, lead, n = self._x, self._lead, self._n
        if x is None:
            raise self._not_run()
        expected = (n, self.out_features) if lead is None else (*lead, self.out_features)
        if (
            type(grad_output) is not Tensor and not isinstance(grad_output, Tensor)
        ) or grad_output.shape != expected:
            self._bad_grad(grad_output, expected)
        if lead is not None:
            grad_output = grad_output.reshape(-1, self.out_features)  # (N, D_out)
        weight, bias = self.weight, self.bias
        grad_w = weight.grad
        write_w = grad_w is None
        if write_w:
            grad_w = fresh_grad(weight)
        grad_b, write_b = None, False
        if bias is not None:
            grad_b = bias.grad
            write_b = grad_b is None
            if write_b:
                grad_b = fresh_grad(bias)
        grad_x, _, _ = F.linear_backward(
            grad_output,
            x,
            weight,
            grad_w,
            grad_b,
            bias is not None,
            self.__dict__["_hg_needs"] and self.input_grad,
            (write_w, write_b),
            n,
        )
        if grad_x is None or lead is None:
            return grad_x  # (N, D_in), or None when nothing needs it
        return grad_x.view(*lead, self.in_features)  # (*, D_in)

    def _bad_grad(self, grad_output: object, expected: tuple[int, ...]) -> None:
        check_input(self, grad_output, like=self.weight, what="grad_output")
        assert isinstance(grad_output, Tensor)
        raise ValueError(
            f"Linear({self.extra_repr()}): expected grad_output of shape {expected}, "
            f"got {tuple(grad_output.shape)}"
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.has_bias}"
        )


class Flatten(Module):
    """Flatten dimensions ``start_dim..end_dim`` into one: (N, 28, 28) → (N, 784).

    Backward: dL/dx is dL/dy reshaped back to the input's shape (flattening moves no values).
    """

    _saved_names = ("_shape",)

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
