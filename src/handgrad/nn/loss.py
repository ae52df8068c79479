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
    """Base class of losses: validates ``reduction`` and turns it into the backward's scale.

    ``backward`` always returns dL/d(input) (whatever the input), and one backward per call.
    """

    _always_input_grad = True

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, "
                f"got {reduction!r}{did_you_mean(str(reduction), REDUCTIONS)}"
            )
        self.reduction = reduction
        self._count: float = 0  # elements (or samples, or Σ weights) averaged over, for 'mean'
        self._out_shape: torch.Size | None = None

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        """dL/d(input) of the last call; ``grad_output`` scales it (a tensor for 'none')."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def _reduce(self, values: Tensor, shape: torch.Size | None = None) -> Tensor:
        """'mean', 'sum' or 'none' of the per-element losses ``values``, given in ``shape``
        if they come in another (CrossEntropyLoss's (N, 1) column for shape (N,))."""
        self._count = values.numel()
        self._out_shape = values.shape if shape is None else shape
        if self.reduction == "mean":
            return values.mean()
        if self.reduction == "sum":
            return values.sum()
        return values if shape is None else values.view(shape)

    def _scale(self) -> float:
        """dL/d(value) of a 'mean' (1 / count) or a 'sum' (1), for a scalar upstream of 1."""
        return 1.0 / self._count if self.reduction == "mean" and self._count else 1.0

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
        scale = self._scale()
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

    _saved_names = ("_input", "_target", "_count", "_out_shape")

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


class _ClassLoss(Loss):
    """What CrossEntropyLoss and NLLLoss share: class weights, an ignored index, any shape."""

    def __init__(
        self,
        weight: Tensor | str | None,
        size_average: object,
        ignore_index: int,
        reduce: object,
        reduction: str,
    ) -> None:
        name = type(self).__name__
        if isinstance(weight, str):  # handgrad's older order: the reduction first
            reduction, weight = weight, None
        if size_average is not None or reduce is not None:
            raise TypeError(
                f"{name}: size_average and reduce are deprecated in torch; use reduction="
            )
        super().__init__(reduction)
        if weight is not None:
            if not isinstance(weight, Tensor) or weight.dim() != 1:
                raise ValueError(f"{name}: weight must be a 1-D tensor of class weights (C,)")
            if not weight.is_floating_point():
                raise TypeError(f"{name}: weight must be floating point, got {weight.dtype}")
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise TypeError(f"{name}: ignore_index must be an int, got {ignore_index!r}")
        self.weight: Tensor | None = weight
        self.ignore_index = ignore_index
        # The general path's saved rows: log p (M, C), coefficients A (M, C), input shape.
        self._rows: tuple[Tensor, Tensor, torch.Size] | None = None

    def _moved(self, dtype: torch.dtype | None, device: torch.device | str | None) -> None:
        if self.weight is not None:
            self.weight = self.weight.to(dtype=dtype, device=device)

    def _fast(self, input: Tensor, target: Tensor) -> bool:
        """Whether the (N, C) path with plain class indices applies (no weight, no index in
        range ignored); an ignored index out of range makes that path raise, then the general
        one runs."""
        if self.weight is not None or target.dtype is not torch.int64:
            return False
        shape, n = input.shape, target.shape
        if len(shape) != 2 or len(n) != 1 or n[0] != shape[0]:
            return False
        return self.ignore_index < 0 or self.ignore_index >= shape[1]

    def _general(self, input: Tensor, target: Tensor, log_softmax: bool) -> Tensor:
        """ℓ by ``functional.class_loss_rows`` on (M, C) rows, reduced; saves for backward."""
        _check_targets(self, input, target, probabilities=log_softmax)
        rows = F.classes_last(input)  # (M, C)
        log_p = torch.log_softmax(rows, 1) if log_softmax else rows  # (M, C)
        weight = None if self.weight is None else self.weight.to(input.dtype)
        tgt = F.classes_last(target) if target.is_floating_point() else target.reshape(-1).long()
        losses, denom, a = F.class_loss_rows(
            log_p, tgt, weight, self.ignore_index, getattr(self, "label_smoothing", 0.0)
        )
        self._rows = (log_p, a, input.shape)
        out_shape = target.shape if not target.is_floating_point() else _batch_shape(input)
        self._out_shape = out_shape
        self._count = 1
        if self.reduction == "none":
            return losses.reshape(out_shape)
        total = losses.sum()
        if self.reduction == "sum":
            return total
        self._count = float(denom)  # the mean's divisor: Σ w_t (or the number of rows)
        return total / denom

    def _general_backward(self, grad_output: Tensor | float | None, log_softmax: bool) -> Tensor:
        assert self._rows is not None
        log_p, a, shape = self._rows
        upstream = self._upstream(grad_output)
        if isinstance(upstream, Tensor):
            upstream = upstream.reshape(-1)  # (M,)
        grad = F.class_loss_backward(a, upstream)  # (M, C), dL/dlog p
        if log_softmax:
            grad = F.log_softmax_rows_backward(grad, log_p)  # (M, C), dL/dx
        return F.classes_back(grad, shape)  # like the input

    def _upstream(self, grad_output: Tensor | float | None) -> Tensor | float:
        if self.reduction == "mean" and self._rows is not None and self._count == 0:
            return float("nan")  # every target ignored: torch's mean is 0/0 too
        return super()._upstream(grad_output)


class CrossEntropyLoss(_ClassLoss):
    """ℓ_m = −Σ_c q_mc · log softmax(x_m)_c, computed fused and stable, as torch.nn's.

    q is the one-hot of the class index (or the given probabilities), smoothed as
    q = (1 − ε)·q + ε/C with ``label_smoothing`` ε; with class ``weight`` w and
    ``ignore_index``, ℓ and the mean's divisor are those of ``functional.class_loss_rows``
    ('mean' divides by Σ w_t over the rows not ignored, for index targets).

    Backward: dL/dx = (softmax(x) − q) · dL/dℓ for plain index or probability targets (fused);
    in general dL/dx = G − softmax(x) · Σ_c G_c with G = dL/dlog p = −A · dL/dℓ.

    Shape: input (N, C), (N, C, d1, ..., dk) or (C,) logits; target (N[, d1..dk]) int64 class
    indices in [0, C) (or ``ignore_index``), or probabilities shaped like the input. Output: a
    number, or (N[, d1..dk]) for reduction='none'. Exact at logits of ±1e4: the max is
    subtracted before any exponent.
    """

    _saved_names = ("_log_p", "_target", "_rows", "_count", "_out_shape")

    def __init__(
        self,
        weight: Tensor | str | None = None,
        size_average: object = None,
        ignore_index: int = -100,
        reduce: object = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}"
            )
        self.label_smoothing = float(label_smoothing)
        self._log_p: Tensor | None = None
        self._target: Tensor | None = None
        # g = dL/dℓ for a scalar upstream, as a 0-d tensor and as an (N, 1) column of −g, kept
        # between calls: making a tensor from a Python number costs more than the arithmetic.
        self._kept_grad: tuple[tuple[float, float], Tensor, Tensor] | None = None

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        if type(input) is not Tensor or type(target) is not Tensor:
            check_input(self, input, expected="(N, C)")
            _check_targets(self, input, target)
        if self._fast(input, target):
            column = target.unsqueeze(1)  # (N, 1), as gather and scatter_add_ take it
            try:
                losses, log_p = F.cross_entropy_forward(input, column, self.label_smoothing)
            except RuntimeError:
                pass  # an ignored or an out-of-range index: the general path says which
            else:
                self._log_p, self._target, self._rows = log_p, column, None
                return self._reduce(losses, target.shape)  # losses (N, 1)
        check_input(self, input, min_ndim=1, expected="(N, C), (N, C, d1, ...) or (C,)")
        self._log_p = self._target = None
        return self._general(input, target, log_softmax=True)

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        log_p, target = self._log_p, self._target
        if log_p is None or target is None:
            if self._rows is not None:
                return self._general_backward(grad_output, log_softmax=True)
            raise self._not_run()
        # loss.backward() of a mean or a sum: g is the reduction's scale (1/N or 1).
        if grad_output is None and self.reduction != "none":
            upstream: Tensor | float = self._scale()
        else:
            upstream = self._upstream(grad_output)
        minus = None
        if not isinstance(upstream, Tensor):
            upstream, minus = self._grad_tensors(upstream, log_p)
        return F.cross_entropy_backward(
            log_p, target, upstream, self.label_smoothing, minus
        )  # (N, C)

    def _grad_tensors(self, value: float, log_p: Tensor) -> tuple[Tensor, Tensor]:
        """g as a 0-d tensor and −g as an (N, 1) column, made once per batch size and value."""
        n, dtype, kept = self._count, log_p.dtype, self._kept_grad
        if kept is not None and kept[0] == (value, n) and kept[1].dtype is dtype:
            g = kept[1]
            if (g.is_cpu and log_p.is_cpu) or g.device == log_p.device:
                return g, kept[2]
        g = torch.tensor(value, dtype=dtype, device=log_p.device)
        self._kept_grad = ((value, n), g, g.neg().expand(log_p.shape[0], 1).contiguous())
        return g, self._kept_grad[2]

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class NLLLoss(_ClassLoss):
    """ℓ_m = −w_{t_m} · x[m, t_m] for log-probabilities x (e.g. LogSoftmax's output), torch's.

    'mean' divides Σ ℓ by Σ w_{t_m} over the rows whose target is not ``ignore_index`` (by the
    number of rows without weights). Backward: dL/dx[m, c] = −w_c · dL/dℓ_m if c = t_m, else 0.

    Shape: input (N, C), (N, C, d1, ..., dk) or (C,); target (N[, d1..dk]) int64 class indices
    in [0, C) or ``ignore_index``.
    """

    _saved_names = ("_input", "_target", "_rows", "_count", "_out_shape")

    def __init__(
        self,
        weight: Tensor | str | None = None,
        size_average: object = None,
        ignore_index: int = -100,
        reduce: object = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction)
        self._input: Tensor | None = None
        self._target: Tensor | None = None

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        check_input(self, input, min_ndim=1, expected="(N, C), (N, C, d1, ...) or (C,)")
        if self._fast(input, target):
            try:
                values = F.nll_forward(input, target)
            except RuntimeError:
                pass
            else:
                self._input, self._target, self._rows = input, target, None
                return self._reduce(values)
        self._input = self._target = None
        return self._general(input, target, log_softmax=False)

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        if self._rows is not None:
            return self._general_backward(grad_output, log_softmax=False)
        if self._input is None or self._target is None:
            raise self._not_run()
        return F.nll_backward(self._input, self._target, self._upstream(grad_output))  # (N, C)


def _batch_shape(input: Tensor) -> torch.Size:
    """The shape of the per-position losses: (N, d1..dk), (N,), or () for an input (C,)."""
    if input.dim() == 1:
        return torch.Size(())
    return torch.Size((input.shape[0], *input.shape[2:]))


def _check_targets(
    loss: _ClassLoss, input: Tensor, target: object, probabilities: bool = True
) -> None:
    """Class indices shaped like the input without its class dimension, each in [0, C) or
    ``ignore_index``; or (if allowed) probabilities shaped like the input, of its dtype."""
    c = input.shape[1] if input.dim() >= 2 else input.shape[0]
    shape = tuple(_batch_shape(input))
    if not isinstance(target, Tensor):
        raise TypeError(f"{label(loss)}: expected a tensor target, got {type(target).__name__}")
    if loss.weight is not None and loss.weight.shape != (c,):
        raise ValueError(f"{label(loss)}: weight has {loss.weight.numel()} entries for {c} classes")
    if target.is_floating_point():
        if not probabilities:
            raise TypeError(
                f"{label(loss)}: expected class indices of dtype int64, got {target.dtype}; "
                "convert with target.long()"
            )
        if target.shape != input.shape:
            raise ValueError(
                f"{label(loss)}: expected target class indices of shape {shape} or "
                f"probabilities of shape {tuple(input.shape)}, got {tuple(target.shape)}"
            )
        if target.dtype != input.dtype:
            raise TypeError(
                f"{label(loss)}: probability target is {target.dtype} but input is {input.dtype}"
            )
        return
    if target.dtype not in (torch.int64, torch.int32, torch.uint8):
        raise TypeError(f"{label(loss)}: expected int64 class indices, got {target.dtype}")
    if tuple(target.shape) != shape:
        raise ValueError(
            f"{label(loss)}: expected target class indices of shape {shape}, "
            f"got {tuple(target.shape)}"
        )
    kept = target[target != loss.ignore_index]
    if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= c):
        raise ValueError(
            f"{label(loss)}: target class indices must be in [0, {c - 1}] (or ignore_index="
            f"{loss.ignore_index}), got values from {int(kept.min())} to {int(kept.max())}"
        )
