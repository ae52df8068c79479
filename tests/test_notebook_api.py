"""handgrad.notebook.api: what the CLI does, called from a cell, returning objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from handgrad.notebook import api


def test_quick_and_the_mnist_folder_follow_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(api.QUICK_ENV, "1")
    assert api.quick()
    monkeypatch.setenv(api.QUICK_ENV, "0")
    assert not api.quick()
    monkeypatch.setenv(api.DATA_ENV, str(tmp_path))
    assert api.mnist_dir() is None  # no MNIST files there: the notebooks fall back
    for name in api.MNIST_FILES:
        (tmp_path / f"{name}.gz").write_bytes(b"")
    assert api.mnist_dir() == tmp_path
    monkeypatch.delenv(api.DATA_ENV)
    assert api.mnist_dir() is None


def test_train_recipe_returns_the_run_and_its_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(api.QUICK_ENV, "1")
    run = api.train_recipe("ninja-gd", quick_overrides={"steps": 3}, progress=False)
    assert run.shortened == {"steps": 3} and run.result.steps == 3
    assert f"{run.measured('train_loss@0'):.4f}" == "809.9498"
    step0 = next(f for f in run.figures if f.label.startswith("step-0"))
    assert step0.expected_text == step0.measured_text == "809.9498"
    assert "809.9498" in str(run) and "<table>" in run._repr_html_()
    final = run.records[-1]
    test = api.evaluate(run)
    assert test.error == pytest.approx(final["test_error"])
    assert test.loss == pytest.approx(final["test_loss"], rel=1e-5)
    assert len(run.plot().axes) == 2
    monkeypatch.setenv(api.QUICK_ENV, "0")
    with pytest.raises(ValueError, match="unknown config field"):
        api.train_recipe("ninja-gd", stepz=3)
    with pytest.raises(ValueError, match="unknown recipe"):
        api.train_recipe("ninja-gdd")
    with pytest.raises(ValueError, match="split"):
        api.evaluate(run, "dev")


def test_check_model_returns_the_gradcheck_report() -> None:
    report = api.check_model("6-5-3", "tanh", "mse", batch=4)
    assert report.ok and "OK" in str(report)
    with pytest.raises(ValueError, match="loss must be"):
        api.check_model("6-5-3", "tanh", "hinge")
