"""``handgrad.train.run_text``: the lines ``handgrad train`` prints, made from plain records."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from handgrad.cli import train_output
from handgrad.train import run_text
from handgrad.train.config import TrainConfig
from handgrad.train.recipes import Figure, Recipe


def result_of(final: dict[str, Any], **kw: Any) -> Any:
    """The fields of a RunResult that ``summary`` reads."""
    fields = {
        "final": final,
        "run_dir": None,
        "config": SimpleNamespace(engine="handgrad"),
        "status": "completed",
        "steps": 30,
        "plan": SimpleNamespace(total_steps=40),
        "seconds": 1.25,
    }
    return SimpleNamespace(**{**fields, **kw})


def test_the_printing_module_re_exports_the_words() -> None:
    for name in ("summary", "timing_line", "figures_table", "regression_line"):
        assert getattr(train_output, name) is getattr(run_text, name)


def test_summary_of_a_classification() -> None:
    final = {"train_loss": 0.5, "train_error": 0.1, "test_error": 0.125, "test_evaluated": 2}
    text = run_text.summary(result_of(final, run_dir=Path("runs/a")))
    head, figures = text.split("\n")
    assert head == "handgrad: completed, 30 of 40 steps in 1.2 s -> runs/a"
    assert figures == (
        "  train loss 0.5  train error 10.00%  test error 12.50%  (test accuracy 87.50%)"
        "  [test set evaluated 2]"
    )


def test_summary_of_a_regression_gives_rmse_and_r2() -> None:
    final = {"train_loss": 2.0, "train_error": 1.5, "train_r2": 0.75, "valid_error": 2.5}
    figures = run_text.summary(result_of(final)).split("\n")[1]
    assert figures == "  train loss 2  train RMSE 1.5 R² 0.7500  valid RMSE 2.5"
    assert "accuracy" not in figures


def test_regression_line_shows_a_dash_for_what_was_not_measured() -> None:
    record = {"step": 12, "epoch": 0.5, "train_loss": 0.25, "train_error": 0.5, "train_r2": 0.9}
    line = run_text.regression_line(record)
    assert line.startswith("step     12  epoch    0.50  train loss 0.2500")
    assert "train rmse 0.5 r2 0.9000" in line and line.endswith("test rmse - r2 -")


def test_timing_line() -> None:
    line = run_text.timing_line(60000, {"forward_ms": 12.34, "backward_ms": 56.78})
    assert line.startswith("  forward + loss on 60,000 images: 12.3 ms (notebook 124 ms)")
    assert "backward: 56.8 ms (notebook 279 ms)" in line


def test_figures_table_sets_expected_beside_each_engine_and_skips_other_runs() -> None:
    figures = (
        Figure("test_accuracy", "test accuracy", 0.9, "seed cell 4", ".2%"),
        Figure("train_loss@10", "loss at step 10", None, "not given", ".3f"),
        Figure("test_loss", "scaled test loss", 0.5, "other run", when=(("input_scale", 0.9),)),
    )
    recipe = Recipe("demo", "t", "s", "d", TrainConfig(), figures, "{step}")
    records = [{"step": 10, "train_loss": 0.75, "test_error": 0.2}]
    measured = {"handgrad": (records, {}), "autograd": ([{"step": 10, "test_error": 0.1}], {})}
    lines = run_text.figures_table(recipe, measured, TrainConfig()).split("\n")
    assert lines[0] == "demo: expected vs measured"
    assert lines[1].split() == ["figure", "expected", "handgrad", "autograd", "source"]
    assert lines[2].split() == [
        "test",
        "accuracy",
        "90.00%",
        "80.00%",
        "90.00%",
        "seed",
        "cell",
        "4",
    ]
    assert lines[3].split()[4:7] == ["-", "0.750", "-"]
    assert len(lines) == 4  # the input_scale figure is for another run
    assert len(run_text.figures_table(recipe, measured).split("\n")) == 5
