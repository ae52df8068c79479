"""``Dropout``: zero each unit with probability p in training, identity in eval."""

from __future__ import annotations

from torch import Tensor

from handgrad.nn import functional as F
from handgrad.nn.checks import check_input
from handgrad.nn.module import Module


class Dropout(Module):
    """y = x · m, m = 1/(1−p) with probability 1−p else 0, drawn anew each training forward.

    Backward: dL/dx = dL/dy · m, with the forward's own mask. In eval mode y = x and
    dL/dx = dL/dy. The mask is drawn from torch's global generator exactly as torch.nn.Dropout
    draws it, so the same seed drops the same units in both.

    Shape: (*) → (*).
    """

    _saved_names = ("_mask", "_ran")

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = float(p)
        self._mask: Tensor | None = None
        self._ran = False

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        check_input(self, x, expected="(*)")
        self._ran = True
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        self._mask = F.dropout_mask(x, self.p)
        return F.dropout_forward(x, self._mask)

    def backward(self, grad_output: Tensor) -> Tensor:
        if not self._ran:
            raise self._not_run()
        if self._mask is None:
            return grad_output
        if grad_output.shape != self._mask.shape:
            raise ValueError(
                f"Dropout(p={self.p}): expected grad_output of shape {tuple(self._mask.shape)}, "
                f"got {tuple(grad_output.shape)}"
            )
        return F.dropout_backward(grad_output, self._mask)

    def extra_repr(self) -> str:
        return f"p={self.p}"
