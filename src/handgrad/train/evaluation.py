"""The loop's evaluation records: the model measured on whole splits at a step.

A record describes the model after ``step`` optimizer steps: ``train_loss``/``train_error``
etc. are measured on whole splits in eval mode at that point, so the step-0 record is the
initial model and the step-100 record the model after 100 updates. ``batch_loss`` is the mean
of the training losses the steps since the previous record computed on their batches (with
dropout, before their updates).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from handgrad.train import records as rec
from handgrad.train.build import TrainData
from handgrad.train.engines import Engine
from handgrad.train.metrics import evaluate_split
from handgrad.train.steps import Plan

Record = dict[str, Any]


def evaluation_record(
    engine: Engine,
    data: TrainData,
    plan: Plan,
    step: int,
    step_losses: Tensor,
    *,
    test: bool,
    test_at_end: bool,
) -> Record:
    """A record of the model now.

    Args:
        step_losses: ``(n,)`` the training losses of the steps since the previous record.
        test: evaluate the test split (else its figures are null).
        test_at_end: the run evaluates the test set once, at the end (noted in the record).
    """
    n = len(step_losses)
    batch_loss = float(step_losses.mean().item()) if n else None
    record: Record = {
        "step": step,
        "epoch": round(step / plan.steps_per_epoch, 6),
        "lr": engine.lr,
        "batch_loss": rec.jsonable(batch_loss),
    }
    splits = [("train", data.x_train, data.y_train, data.labels_train)]
    if data.x_valid is not None and data.y_valid is not None and data.labels_valid is not None:
        splits.append(("valid", data.x_valid, data.y_valid, data.labels_valid))
    splits.append(("test", data.x_test, data.y_test, data.labels_test))
    for split, x, y, labels in splits:
        if split == "test" and not test:
            record["test_loss"] = record["test_error"] = None
            continue
        figures = evaluate_split(
            engine.predict, engine.eval_loss, engine.loss_reduction, x, y, labels
        )
        record[f"{split}_loss"] = figures.loss
        record[f"{split}_error"] = figures.error
        if figures.r2 is not None:  # a table's regression: error is the RMSE
            record[f"{split}_r2"] = rec.jsonable(figures.r2)
    if data.x_valid is None:
        record["valid_loss"] = record["valid_error"] = None
    if test_at_end:
        record["test_evaluated"] = "once, at the end"
    return record


def add_test_figures(engine: Engine, data: TrainData, record: Record) -> None:
    """The one test evaluation of an ``eval_test="end"`` run, after its last step."""
    figures = evaluate_split(
        engine.predict,
        engine.eval_loss,
        engine.loss_reduction,
        data.x_test,
        data.y_test,
        data.labels_test,
    )
    record["test_loss"], record["test_error"] = figures.loss, figures.error
    if figures.r2 is not None:
        record["test_r2"] = rec.jsonable(figures.r2)
