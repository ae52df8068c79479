"""Activations: ReLU, LeakyReLU, Tanh, Sigmoid, GELU, Softmax, LogSoftmax.

Each keeps what its derivative needs: the input for LeakyReLU and GELU (the derivative is a
function of x), the output for ReLU, Tanh, Sigmoid, Softmax and LogSoftmax (theirs is cheapest
in y).
The formulas are in ``handgrad.nn.functional``, next to the code that computes them.
"""

from __future__ import annotations

from torch import Tensor

from handgrad.nn import functional as F
from handgrad.nn.checks import check_input
from handgrad.nn.module import Module


class _Elementwise(Module):
    """An activation that keeps one tensor (its input or its output) for the backward pass."""

    _saved_names = ("_saved",)

    def __init__(self) -> None:
        super().__init__()
        self._saved: Tensor | None = None

    def _check(self, x: object, expected: str = "(*)", min_ndim: int | None = None) -> Tensor:
        """Return ``x`` if it is a floating tensor; otherwise raise a clear error."""
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < (min_ndim or 0):
            check_input(self, x, expected=expected, min_ndim=min_ndim)
        return x  # type: ignore[return-value]

    def _check_grad(self, grad_output: Tensor) -> Tensor:
        saved = self._saved
        if saved is None:
            raise self._not_run()
        if not isinstance(grad_output, Tensor) or grad_output.shape != saved.shape:
            check_input(self, grad_output, expected=str(tuple(saved.shape)), what="grad_output")
            raise ValueError(
                f"{type(self).__name__}({self.extra_repr()}): expected grad_output of shape "
                f"{tuple(saved.shape)}, got {tuple(grad_output.shape)}"
            )
        return saved


class ReLU(_Elementwise):
    """y = max(x, 0); dL/dx = dL/dy · 1[x > 0]. Shape: (*) → (*).

    Keeps its output y: 1[x > 0] = sign(y) (see ``functional.relu_backward``).
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if type(x) is not Tensor or not x.is_floating_point():  # (the usual case in one test)
            self._check(x)
        y = F.relu_forward(x)
        self._saved = y
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        y = self._saved
        if y is None or type(grad_output) is not Tensor or grad_output.shape != y.shape:
            y = self._check_grad(grad_output)  # raises, or a tensor subclass that is fine
        return F.relu_backward(grad_output, y)


class LeakyReLU(_Elementwise):
    """y = x if x > 0 else a·x; dL/dx = dL/dy · (1 if x > 0 else a). Shape: (*) → (*)."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        self._saved = self._check(x)
        return F.leaky_relu_forward(x, self.negative_slope)

    def backward(self, grad_output: Tensor) -> Tensor:
        x = self._check_grad(grad_output)
        return F.leaky_relu_backward(grad_output, x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Tanh(_Elementwise):
    """y = tanh(x); dL/dx = dL/dy · (1 − y²). Shape: (*) → (*)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        self._check(x)
        y = F.tanh_forward(x)
        self._saved = y
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        return F.tanh_backward(grad_output, self._check_grad(grad_output))


class Sigmoid(_Elementwise):
    """y = σ(x); dL/dx = dL/dy · y(1 − y). Shape: (*) → (*)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        self._check(x)
        y = F.sigmoid_forward(x)
        self._saved = y
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        return F.sigmoid_backward(grad_output, self._check_grad(grad_output))


class GELU(_Elementwise):
    """y = x·Φ(x) (or its tanh approximation); dL/dx = dL/dy · (Φ(x) + x·φ(x)).

    Args:
        approximate: ``"none"`` (exact, with erf) or ``"tanh"``, as in torch.nn.GELU.
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        self._saved = self._check(x)
        return F.gelu_forward(x, self.approximate)

    def backward(self, grad_output: Tensor) -> Tensor:
        x = self._check_grad(grad_output)
        return F.gelu_backward(grad_output, x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softmax(_Elementwise):
    """y = softmax(x) along ``dim``; dL/dx = y · (dL/dy − Σ dL/dy · y). Shape: (*) → (*).

    Any ``dim`` of the input, and 0-dim inputs (dim 0 or −1), whose softmax is 1, as in torch."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        self._check(x)
        y = F.softmax_forward(x, self.dim)
        self._saved = y
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        return F.softmax_backward(grad_output, self._check_grad(grad_output), self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(_Elementwise):
    """y = log softmax(x) along ``dim`` (stable); dL/dx = dL/dy − e^y · Σ dL/dy. (*) → (*).

    Any ``dim`` of the input, and 0-dim inputs (dim 0 or −1), whose log softmax is 0."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        self._check(x)
        y = F.log_softmax_forward(x, self.dim)
        self._saved = y
        return y

    def backward(self, grad_output: Tensor) -> Tensor:
        return F.log_softmax_backward(grad_output, self._check_grad(grad_output), self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
