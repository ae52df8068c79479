"""Errors, accuracies, confusion matrices and probabilities from a model's outputs.

A model's outputs ``(N, C)`` predict the class of highest score. A regression model's outputs
``(N, 1)`` (the fastai notebooks' digit value) predict the nearest digit, clamped to 0-9.
Fleuret's rule "an error when ``target[n, argmax] < 0.5``" is the same as ``argmax != label``
for one-hot targets scaled by anything above 0.5.

A regression on a table (``handgrad.train.tabular``) has float labels, the target values
``(N,)``: its "error" is the root mean squared error ``sqrt(mean((ŷ - y)²))`` in the target's
units, and ``r2`` the coefficient of determination ``1 - Σ(y - ŷ)² / Σ(y - ȳ)²``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from handgrad.data.presets import N_CLASSES

EVAL_CHUNK = 10_000  # records per forward pass during evaluation


def predicted_classes(outputs: Tensor) -> Tensor:
    """Class indices ``(N,)`` int64 from outputs ``(N, C)`` (argmax) or ``(N, 1)`` (rounded)."""
    if outputs.dim() != 2:
        raise ValueError(f"outputs: expected shape (N, C) or (N, 1), got {tuple(outputs.shape)}")
    if outputs.shape[1] == 1:
        return outputs[:, 0].clamp(0, N_CLASSES - 1).round().long()  # (N,)
    return outputs.argmax(dim=1)  # (N,)


def regression_figures(outputs: Tensor, values: Tensor) -> tuple[float, float]:
    """``(rmse, r2)`` of outputs ``(N, 1)`` against target values ``(N,)`` (r2 nan when the
    values are constant)."""
    residual = outputs[:, 0].double() - values.double()  # (N,)
    rmse = float(residual.square().mean().sqrt().item())
    spread = float((values.double() - values.double().mean()).square().sum().item())
    r2 = 1.0 - float(residual.square().sum().item()) / spread if spread > 0 else float("nan")
    return rmse, r2


def error_rate(outputs: Tensor, labels: Tensor) -> float:
    """The fraction of records whose predicted class differs from ``labels`` ``(N,)``."""
    wrong = (predicted_classes(outputs) != labels).sum().item()
    return float(wrong) / max(len(labels), 1)


def confusion_matrix(predicted: Tensor, labels: Tensor, n_classes: int = N_CLASSES) -> Tensor:
    """``(C, C)`` int64 counts: row = true class, column = predicted class."""
    index = labels.long().cpu() * n_classes + predicted.long().cpu()  # (N,)
    return torch.bincount(index, minlength=n_classes * n_classes).view(n_classes, n_classes)


def probabilities(outputs: Tensor) -> Tensor | None:
    """Softmax of the outputs ``(N, C)`` as class probabilities, or None for a regression
    output ``(N, 1)``. For a model trained with a squared loss these are softmax-normalized
    scores, not calibrated probabilities."""
    if outputs.shape[1] == 1:
        return None
    return torch.softmax(outputs.double(), dim=1)  # (N, C)


@dataclass
class SplitMetrics:
    """A model's figures on one split: the loss as the training loss defines it (a sum over
    the records for a sum loss, a mean for a mean loss), the error rate, and the outputs."""

    loss: float
    error: float
    outputs: Tensor
    r2: float | None = None  # regression on a table only (``error`` is then the RMSE)

    @property
    def accuracy(self) -> float:
        return 1.0 - self.error


def evaluate_split(
    forward: Callable[[Tensor], Tensor],
    loss: Callable[[Tensor, Tensor], Tensor],
    reduction: str,
    x: Tensor,
    y: Tensor,
    labels: Tensor,
    chunk: int = EVAL_CHUNK,
) -> SplitMetrics:
    """Run ``forward`` over ``x`` in chunks of ``chunk`` records and measure loss and error.

    With one chunk (N <= ``chunk``) the loss is exactly ``loss(forward(x), y)``, the same
    operations as a full-batch training step; with several, the chunk values are summed
    (``reduction='sum'``) or averaged with weights by record count (``'mean'``).
    """
    n = len(x)
    if n <= chunk:
        outputs = forward(x)  # (N, C)
        value = float(loss(outputs, y).item())
    else:
        parts, total = [], 0.0
        for start in range(0, n, chunk):
            out = forward(x[start : start + chunk])
            parts.append(out)
            part = float(loss(out, y[start : start + chunk]).item())
            total += part * len(out) if reduction == "mean" else part
        outputs = torch.cat(parts)
        value = total / n if reduction == "mean" else total
    if labels.is_floating_point():  # a table's regression: labels are the target values
        rmse, r2 = regression_figures(outputs, labels)
        return SplitMetrics(loss=value, error=rmse, outputs=outputs, r2=r2)
    return SplitMetrics(loss=value, error=error_rate(outputs, labels), outputs=outputs)


def most_confident_mistakes(outputs: Tensor, labels: Tensor, k: int = 16) -> Tensor:
    """Indices ``(≤k,)`` of misclassified records, most confident first.

    Confidence is the softmax probability of the predicted class; for a regression output it
    is how far the prediction lies from the true digit.
    """
    predicted = predicted_classes(outputs)
    wrong = (predicted != labels).nonzero().flatten()  # (W,)
    if len(wrong) == 0:
        return wrong
    probs = probabilities(outputs)
    if probs is None:
        score = (outputs[wrong, 0] - labels[wrong].to(outputs.dtype)).abs()
    else:
        score = probs[wrong, predicted[wrong]]
    order = score.argsort(descending=True)[:k]
    return wrong[order]
