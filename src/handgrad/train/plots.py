"""PNG plots of a run, drawn with matplotlib's Agg backend (no display needed).

``write_plots(run_dir, records, model, data)`` writes:

- ``curves.png``: loss and error against the step, for every split the records hold;
- ``confusion.png``: the test confusion matrix (rows true, columns predicted);
- ``mistakes.png``: the most confidently misclassified test digits (image inputs only);
- ``predictions.png``: a table's regression: test predictions against the true values (in
  place of the confusion matrix and the mistakes);
- ``first_layer.png``: the first layer's weight rows as 28x28 images.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from handgrad import nn
from handgrad.train.build import TrainData
from handgrad.train.metrics import (
    confusion_matrix,
    most_confident_mistakes,
    predicted_classes,
    probabilities,
)
from handgrad.train.records import atomic_write

SPLIT_COLORS = {"train": "tab:blue", "valid": "tab:orange", "test": "tab:green"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """Render ``fig`` as PNG in memory, then write it atomically (a full disk leaves no
    half-written plot, and says so in one line naming the file)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100)
        atomic_write(path, buffer.getvalue())
    except BaseException:
        _pyplot().close(fig)
        raise


def plot_curves(records: list[dict[str, Any]], path: Path) -> Path:
    """Loss (log scale when positive) and error (%) against the step."""
    plt = _pyplot()
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in records]
    batch = [(r["step"], r["batch_loss"]) for r in records if r.get("batch_loss") is not None]
    if batch:
        ax_loss.plot(*zip(*batch, strict=True), color="0.6", lw=1, label="batch loss (running)")
    positive = True
    # A table's regression records its RMSE as the error (and an r2): drawn as it is, not in %.
    regression = any("train_r2" in r for r in records)
    scale = 1 if regression else 100
    for split, color in SPLIT_COLORS.items():
        losses = [r.get(f"{split}_loss") for r in records]
        errors = [r.get(f"{split}_error") for r in records]
        if any(v is not None for v in losses):
            ax_loss.plot(steps, losses, color=color, label=f"{split} loss")
            positive = positive and all(v is None or v > 0 for v in losses)
        if any(v is not None for v in errors):
            ax_err.plot(
                steps, [None if e is None else scale * e for e in errors], color=color, label=split
            )
    if positive:
        ax_loss.set_yscale("log")
    ax_loss.set(xlabel="step", ylabel="loss", title="loss")
    if regression:
        ax_err.set(xlabel="step", ylabel="RMSE", title="root mean squared error")
    else:
        ax_err.set(xlabel="step", ylabel="error (%)", title="classification error")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_confusion(matrix: Tensor, path: Path, title: str = "test confusion matrix") -> Path:
    plt = _pyplot()
    c = matrix.shape[0]
    fig, ax = plt.subplots(figsize=(6, 5.4))
    image = ax.imshow(matrix.numpy(), cmap="Blues")
    threshold = matrix.max().item() / 2
    for i in range(c):
        for j in range(c):
            value = int(matrix[i, j])
            color = "white" if value > threshold else "black"
            ax.text(j, i, str(value), ha="center", va="center", fontsize=8, color=color)
    ax.set(xticks=range(c), yticks=range(c), xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_mistakes(x: Tensor, labels: Tensor, outputs: Tensor, path: Path, k: int = 16) -> Path:
    """The ``k`` most confidently misclassified records, with true and predicted class."""
    plt = _pyplot()
    index = most_confident_mistakes(outputs, labels, k)
    predicted = predicted_classes(outputs)
    probs = probabilities(outputs)
    cols = 8
    rows = max(1, -(-len(index) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.4, rows * 1.7 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, index.tolist(), strict=False):
        ax.imshow(x[i].reshape(28, 28).float().cpu().numpy(), cmap="gray")
        note = "" if probs is None else f" {probs[i, predicted[i]].item():.0%}"
        if probs is None:
            note = f" ({outputs[i, 0].item():.1f})"
        ax.set_title(f"#{i}: {int(labels[i])}→{int(predicted[i])}{note}", fontsize=8)
    if len(index) == 0:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center")
    fig.suptitle("most confident test mistakes (true→predicted)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def first_linear(model: nn.Module) -> nn.Linear | None:
    return next((m for m in model.modules() if isinstance(m, nn.Linear)), None)


def plot_first_layer(weight: Tensor, path: Path, max_units: int = 64) -> Path:
    """Each hidden unit's incoming weights ``(D_out, 784)`` as a 28x28 image."""
    plt = _pyplot()
    units = min(weight.shape[0], max_units)
    cols = min(units, 10)
    rows = -(-units // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    w = weight.detach().float().cpu()
    for u, ax in zip(range(units), axes.flat, strict=False):
        image = w[u].reshape(28, 28)
        bound = image.abs().max().item() or 1.0
        ax.imshow(image.numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound)
    shown = f"first {units} of {weight.shape[0]}" if units < weight.shape[0] else f"{units}"
    fig.suptitle(f"first-layer weights ({shown} units; red +, blue −)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_predictions(outputs: Tensor, values: Tensor, path: Path) -> Path:
    """A regression's test predictions ``(N, 1)`` against the true values ``(N,)``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    truth, predicted = values.double().cpu().numpy(), outputs[:, 0].double().cpu().numpy()
    ax.scatter(truth, predicted, s=8, alpha=0.6)
    low, high = min(truth.min(), predicted.min()), max(truth.max(), predicted.max())
    ax.plot([low, high], [low, high], color="0.5", lw=1, label="predicted = true")
    ax.set(xlabel="true value", ylabel="predicted value", title="test predictions")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def write_plots(
    run_dir: Path, records: list[dict[str, Any]], model: nn.Module, data: TrainData
) -> list[Path]:
    """Write the four plots into ``run_dir``; return their paths."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(data.x_test)  # (N, C)
    finally:
        model.train(was_training)
    paths = [plot_curves(records, run_dir / "curves.png")]
    if data.task == "regression":
        paths.append(plot_predictions(outputs, data.labels_test, run_dir / "predictions.png"))
        return paths
    matrix = confusion_matrix(predicted_classes(outputs), data.labels_test, data.n_classes)
    paths.append(plot_confusion(matrix, run_dir / "confusion.png"))
    if data.x_test.shape[1] == 784:  # images: the most confident mistakes as digits
        paths.append(
            plot_mistakes(data.x_test, data.labels_test, outputs, run_dir / "mistakes.png")
        )
    layer = first_linear(model)
    if layer is not None and layer.in_features == 784:
        paths.append(plot_first_layer(layer.weight, run_dir / "first_layer.png"))
    return paths
