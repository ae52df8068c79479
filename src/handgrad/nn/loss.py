"""Losses as modules: ``loss(input, target)`` gives the loss, ``loss.backward()`` dL/dinput.

``reduction`` is ``'mean'``, ``'sum'`` or ``'none'`` as in torch. With ``'none'`` the loss is a
tensor of per-element (or per-sample) values and ``backward`` takes their gradient (ones if not
given). Otherwise ``backward()`` takes no argument, or a scalar to multiply by.
"""

from __future__ import annotations

import torch
from torch import Tensor

from handgrad.errors import did_you_mean
from handgrad.nn import functional as F
from handgrad.nn.checks import check_input, label
from handgrad.nn.module import Module

REDUCTIONS = ("mean", "sum", "none")


class Loss(Module):
    """Base class of losses: validates ``reduction`` and turns it into the backward's scale."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, "
                f"got {reduction!r}{did_you_mean(str(reduction), REDUCTIONS)}"
            )
        self.reduction = reduction
        self._count = 0  # elements (or samples) averaged over, for 'mean'
        self._out_shape: torch.Size | None = None

    def __call__(self, input: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        return self.forward(input, target)

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        """dL/d(input) of the last call; ``grad_output`` scales it (a tensor for 'none')."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def _reduce(self, values: Tensor) -> Tensor:
        self._count = values.numel()
        self._out_shape = values.shape
        if self.reduction == "mean":
            return values.mean()
        if self.reduction == "sum":
            return values.sum()
        return values

    def _upstream(self, grad_output: Tensor | float | None) -> Tensor | float:
        """dL/d(values): the reduction's scale times ``grad_output``, a number or a tensor."""
        if self._out_shape is None:
            raise self._not_run()
        if self.reduction == "none":
            if grad_output is None:
                return 1.0
            if not isinstance(grad_output, Tensor) or grad_output.shape != self._out_shape:
                got = tuple(grad_output.shape) if isinstance(grad_output, Tensor) else grad_output
                raise ValueError(
                    f"{label(self)}: with reduction='none', backward takes a gradient of shape "
                    f"{tuple(self._out_shape)}, got {got}"
                )
            return grad_output
        scale = 1.0 / self._count if self.reduction == "mean" and self._count else 1.0
        if grad_output is None:
            return scale
        if isinstance(grad_output, Tensor):
            if grad_output.numel() != 1:
                raise ValueError(
                    f"{label(self)}: backward takes a scalar gradient, got shape "
                    f"{tuple(grad_output.shape)}"
                )
            return float(grad_output.item()) * scale
        return float(grad_output) * scale

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(Loss):
    """L = mean_i (x_i − t_i)²  (or the sum, or per element).

    Backward: dL/dx = 2 (x − t) / count  ('mean'; count = number of elements), 2 (x − t) ('sum').

    Shape: input (*), target the same shape (no silent broadcasting: a (N, 1) input against a
    (N,) target is an error, not an (N, N) loss).
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self._input: Tensor | None = None
        self._target: Tensor | None = None

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        check_input(self, input, expected="(*)")
        check_input(self, target, expected=str(tuple(input.shape)), like=input, what="target")
        if target.shape != input.shape:
            hint = ""
            if input.dim() == 2 and input.shape[1] == 1 and target.shape == input.shape[:1]:
                hint = "; reshape it with target.unsqueeze(1)"
            raise ValueError(
                f"{label(self)}: target shape {tuple(target.shape)} differs from input shape "
                f"{tuple(input.shape)}{hint}"
            )
        self._input, self._target = input, target
        return self._reduce(F.squared_error_forward(input, target))

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        if self._input is None or self._target is None:
            raise self._not_run()
        upstream = self._upstream(grad_output)
        return F.squared_error_backward(self._input, self._target, upstream)  # like input


class SumSquaredLoss(MSELoss):
    """The seeds' sum of squares over all elements: L = Σ_i (x_i − t_i)²; dL/dx = 2 (x − t).

    The same as ``MSELoss(reduction="sum")``; its torch twin is exactly that.
    """

    def __init__(self) -> None:
        super().__init__("sum")

    def extra_repr(self) -> str:
        return ""


class CrossEntropyLoss(Loss):
    """L = mean_n ℓ_n,  ℓ_n = −Σ_c q_nc · log softmax(x_n)_c, computed fused and stable.

    q is the one-hot of the class index (or the given probabilities), smoothed as
    q = (1 − ε)·q + ε/C with ``label_smoothing`` ε.

    Backward (fused): dL/dx = (softmax(x) − q) / N  ('mean'), (softmax(x) − q) ('sum').

    Shape: input (N, C) logits; target (N,) int64 class indices in [0, C), or (N, C)
    probabilities. Exact at logits of ±1e4: the max is subtracted before any exponent.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}"
            )
        self.label_smoothing = float(label_smoothing)
        self._log_p: Tensor | None = None
        self._target: Tensor | None = None
        # g = dL/dℓ for a scalar upstream, as a 0-d tensor and as an (N, 1) column of −g, kept
        # between calls: making a tensor from a Python number costs more than the arithmetic.
        self._kept_grad: tuple[tuple[object, ...], Tensor, Tensor] | None = None

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        if not isinstance(input, Tensor) or input.dim() != 2 or not isinstance(target, Tensor):
            check_input(self, input, ndim=2, expected="(N, C)")
            _check_class_target(self, input, target)
        if target.dtype != torch.int64 or target.shape != input.shape[:1]:
            _check_class_target(self, input, target)
            target = target if target.is_floating_point() else target.long()
        try:
            losses, log_p = F.cross_entropy_forward(input, target, self.label_smoothing)
        except RuntimeError:
            _check_class_target(self, input, target)  # class index out of range, in words
            raise
        self._log_p, self._target = log_p, target
        return self._reduce(losses)

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        if self._log_p is None or self._target is None:
            raise self._not_run()
        upstream = self._upstream(grad_output)
        minus = None
        if not isinstance(upstream, Tensor):
            upstream, minus = self._grad_tensors(upstream)
        return F.cross_entropy_backward(
            self._log_p, self._target, upstream, self.label_smoothing, minus
        )  # (N, C)

    def _grad_tensors(self, value: float) -> tuple[Tensor, Tensor]:
        """g as a 0-d tensor and −g as an (N, 1) column, made once per batch size and value."""
        log_p = self._log_p
        assert log_p is not None
        key = (value, log_p.shape[0], log_p.dtype, log_p.device)
        if self._kept_grad is None or self._kept_grad[0] != key:
            g = torch.tensor(value, dtype=log_p.dtype, device=log_p.device)
            self._kept_grad = (key, g, g.neg().expand(log_p.shape[0], 1).contiguous())
        return self._kept_grad[1], self._kept_grad[2]

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class NLLLoss(Loss):
    """L = mean_n −x[n, t_n], for log-probabilities x (e.g. LogSoftmax's output).

    Backward: dL/dx[n, c] = −1/N if c = t_n else 0  ('mean'; −1 for 'sum').

    Shape: input (N, C); target (N,) int64 class indices in [0, C).
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self._input: Tensor | None = None
        self._target: Tensor | None = None

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        check_input(self, input, ndim=2, expected="(N, C)")
        _check_class_target(self, input, target, probabilities=False)
        self._input, self._target = input, target
        return self._reduce(F.nll_forward(input, target))

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        if self._input is None or self._target is None:
            raise self._not_run()
        return F.nll_backward(self._input, self._target, self._upstream(grad_output))  # (N, C)


def _check_class_target(
    loss: Module, input: Tensor, target: object, probabilities: bool = True
) -> None:
    """Class indices (N,) in [0, C), or (if allowed) probabilities (N, C) of the input's dtype."""
    n, c = input.shape
    if not isinstance(target, Tensor):
        raise TypeError(f"{label(loss)}: expected a tensor target, got {type(target).__name__}")
    if target.is_floating_point():
        if not probabilities:
            raise TypeError(
                f"{label(loss)}: expected class indices of dtype int64, got {target.dtype}; "
                "convert with target.long()"
            )
        if target.shape != input.shape:
            raise ValueError(
                f"{label(loss)}: expected target class indices of shape ({n},) or "
                f"probabilities of shape ({n}, {c}), got {tuple(target.shape)}"
            )
        if target.dtype != input.dtype:
            raise TypeError(
                f"{label(loss)}: probability target is {target.dtype} but input is {input.dtype}"
            )
        return
    if target.dtype not in (torch.int64, torch.int32, torch.uint8):
        raise TypeError(f"{label(loss)}: expected int64 class indices, got {target.dtype}")
    if target.shape != (n,):
        raise ValueError(
            f"{label(loss)}: expected target class indices of shape ({n},), "
            f"got {tuple(target.shape)}"
        )
    if n and (int(target.min()) < 0 or int(target.max()) >= c):
        raise ValueError(
            f"{label(loss)}: target class indices must be in [0, {c - 1}], got values from "
            f"{int(target.min())} to {int(target.max())}"
        )
