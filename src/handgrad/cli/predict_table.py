"""``handgrad predict RUN --rows FILE``: a table run's predictions for a file of rows.

The rows are a ``.csv`` whose header names the run's features (any order; the target column
may be there too, and is then shown beside each prediction), an ``.npy`` ``(N, D)`` or an
``.npz`` with ``x``. They are standardized with the mean and std the run recorded from its
training split (``config.json``'s ``table``), exactly as its training rows were.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from handgrad import nn
from handgrad.errors import HandgradError
from handgrad.train import tabular
from handgrad.train.config import TrainConfig


def predict_rows(config: TrainConfig, model: nn.Module, path: str) -> list[str]:
    """One line per row: the predicted class with its probability and every class's (a
    classification), or the predicted value (a regression); ``(true ...)`` when the file
    has the target."""
    if not tabular.is_table(config):
        raise HandgradError(
            f"--rows: run {config.name} trained on the {config.preset} images, not a table; "
            "give image files or --index"
        )
    info = tabular.table_info(config)
    x, truth = tabular.read_rows(path, info)
    inputs = torch.from_numpy(tabular.standardize(x, info)).to(
        dtype=config.torch_dtype(), device=config.device
    )  # (N, D)
    with torch.no_grad():
        outputs = model(inputs).double().cpu()  # (N, C) or (N, 1)
    where = Path(path).name
    csv = Path(path).suffix.lower() == ".csv"
    lines = []
    if info["task"] == "regression":
        for i, value in enumerate(outputs[:, 0].tolist()):
            true = "" if truth is None else f"  (true {truth[i]})"
            lines.append(f"{_name(where, i, csv)}: predicted {value:.6g}{true}")
        return lines
    classes = info["classes"]
    probs = torch.softmax(outputs, dim=1).numpy()  # (N, C)
    for i, row in enumerate(probs):
        k = int(np.argmax(row))
        true = ""
        if truth is not None:
            right = _same_label(truth[i], classes[k])
            true = f"  (true {truth[i]}{'' if right else ', wrong'})"
        table = "  ".join(f"{c}:{p:.3f}" for c, p in zip(classes, row, strict=True))
        lines.append(
            f"{_name(where, i, csv)}: predicted {classes[k]} (probability {row[k]:.3f}){true}\n"
            f"  {table}"
        )
    return lines


def _name(where: str, i: int, csv: bool) -> str:
    """A row's name: its line in a CSV (the header is line 1), else its index."""
    return f"{where} row {i + 2}" if csv else f"{where}[{i}]"


def _same_label(text: object, label: object) -> bool:
    """A rows file's target cell against a class label (``1.0`` is the class ``1``)."""
    if isinstance(label, int | float):
        try:
            return float(str(text)) == float(label)
        except ValueError:
            return False
    return str(text).strip() == str(label)
