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


def test_reports_and_findings_show_as_html_tables() -> None:
    import json

    from handgrad.train import doctor
    from handgrad.train.recipes import get_recipe

    report = api.check_model("6-5-3", "relu", "cross_entropy", batch=4)
    page = report._repr_html_()
    assert page.count("<tr>") == len(report.rows) + 1  # the header and one row per gradient
    for row in report.rows:
        assert f"<td>{row.name}</td>" in page
    assert report.verdict_line() in page
    assert repr(report) == str(report)
    config = json.loads(get_recipe("fleuret-practical3").config.replace(target_scale=1.0).to_json())
    step0 = {"step": 0, "train_loss": 1000.0, "train_error": 0.9}
    found = doctor.diagnose_records(config, [step0], [])
    assert "targets_out_of_range" in found._repr_html_()
