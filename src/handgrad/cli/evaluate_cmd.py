"""``handgrad evaluate RUN``: a run's model on a split: accuracy, loss, confusion matrix."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from handgrad.errors import HandgradError
from handgrad.train import records as rec
from handgrad.train.build import (
    TrainData,
    build_loss,
    check_run_weights,
    load_data,
    model_from_state,
)
from handgrad.train.config import TrainConfig
from handgrad.train.metrics import (
    SplitMetrics,
    confusion_matrix,
    evaluate_split,
    predicted_classes,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="a run's test accuracy, loss and confusion matrix",
        description=(
            "Load a run's model (model.safetensors, else its checkpoint) and data as its "
            "config.json says, and report accuracy, loss and the confusion matrix."
        ),
    )
    p.add_argument("run", metavar="RUN", help="a run directory (or a name under --out)")
    p.add_argument("--split", choices=("test", "valid", "train"), default="test")
    p.add_argument("--out", default="runs", metavar="DIR", help="where runs are (default ./runs)")
    p.add_argument("--data", dest="data_dir", metavar="DIR", help="folder with the MNIST files")
    p.add_argument(
        "--weights",
        choices=("last", "best"),
        default="last",
        help="last: the final model (default); best: best.safetensors (--keep-best)",
    )
    p.set_defaults(func=run)


def format_confusion(matrix: torch.Tensor) -> str:
    """The matrix as text, rows true class, columns predicted, with per-class accuracy."""
    c = matrix.shape[0]
    width = max(4, len(str(int(matrix.max()))) + 1)
    lines = ["true\\pred " + "".join(f"{j:>{width}d}" for j in range(c)) + "   accuracy"]
    for i in range(c):
        row_total = int(matrix[i].sum())
        accuracy = f"{int(matrix[i, i]) / row_total:9.1%}" if row_total else f"{'-':>9s}"
        cells = "".join(f"{int(v):>{width}d}" for v in matrix[i])
        lines.append(f"{i:>9d} {cells}  {accuracy}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    run_dir = rec.find_run(args.run, args.out)
    config = TrainConfig.load(run_dir / rec.CONFIG).validate()
    if args.data_dir is not None:
        config = config.replace(data_dir=args.data_dir)
    load = rec.load_best_state if args.weights == "best" else rec.load_model_state
    state, source = load(run_dir)
    check_run_weights(run_dir, config, state, source)  # the weights fit the config
    model = model_from_state(config, state)
    data = load_data(config)
    splits = {
        "train": (data.x_train, data.y_train, data.labels_train),
        "valid": (data.x_valid, data.y_valid, data.labels_valid),
        "test": (data.x_test, data.y_test, data.labels_test),
    }
    x, y, labels = splits[args.split]
    if x is None or y is None or labels is None:
        raise HandgradError(f"{run_dir}: the run has no validation split (its config has valid 0)")
    loss = build_loss(config)
    model.eval()
    with torch.no_grad():
        figures = evaluate_split(model, loss, loss.reduction, x, y, labels)
    if data.table is not None:  # the user's own table (handgrad.train.tabular)
        return _report_table(run_dir, config, source.name, args.split, data, figures, labels)
    matrix = confusion_matrix(predicted_classes(figures.outputs), labels, data.n_classes)
    name = (
        "valid (the fastai validation set)"
        if config.preset == "fastai" and args.split == "test"
        else args.split
    )
    print(
        f"run {run_dir}: model {config.model}, preset {config.preset}, weights from {source.name}"
    )
    print(
        f"{name}: {len(x):,} records  accuracy {figures.accuracy:.2%}  "
        f"error {figures.error:.2%}  {config.loss} loss {figures.loss:.6g}"
    )
    print("confusion matrix (rows: true class, columns: predicted class)")
    print(format_confusion(matrix))
    return 0


def _report_table(
    run_dir: Path,
    config: TrainConfig,
    weights: str,
    split: str,
    data: TrainData,
    figures: SplitMetrics,
    labels: torch.Tensor,
) -> int:
    """A table run's figures: RMSE and R² (regression) or accuracy and the confusion matrix
    with the class names (classification)."""
    info = data.table
    assert info is not None
    print(
        f"run {run_dir}: model {config.model}, data {config.data_file} ({info['task']}), "
        f"weights from {weights}"
    )
    n = len(labels)
    if info["task"] == "regression":
        r2 = "-" if figures.r2 is None else f"{figures.r2:.4f}"
        print(
            f"{split}: {n:,} rows  RMSE {figures.error:.6g}  R² {r2}  "
            f"{config.loss} loss {figures.loss:.6g}"
        )
        return 0
    print(
        f"{split}: {n:,} rows  accuracy {figures.accuracy:.2%}  error {figures.error:.2%}  "
        f"{config.loss} loss {figures.loss:.6g}"
    )
    matrix = confusion_matrix(predicted_classes(figures.outputs), labels, data.n_classes)
    print("classes: " + "  ".join(f"{i}={c}" for i, c in enumerate(info["classes"])))
    print("confusion matrix (rows: true class, columns: predicted class)")
    print(format_confusion(matrix))
    return 0
