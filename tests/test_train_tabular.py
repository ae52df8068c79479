"""The user's own table in the CLI: handgrad train --data-file (CSV, NPZ, NPY), evaluate,
predict --rows, export, resume, the errors; and the new image presets through the CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from handgrad.cli import train_cmd, train_output
from handgrad.cli.main import main
from handgrad.export import numpy_predictor
from handgrad.train import records as rec
from handgrad.train.build import load_data
from handgrad.train.config import LATER_FIELDS, TrainConfig
from tests.test_data_sets import two_sets  # noqa: F401  (fixture)
from tests.train_fixtures import one_thread  # noqa: F401  (autouse)

QUIET = ["--quiet", "--no-plots"]


def runs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir()) if out.exists() else []


def features(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) columns on very different scales (the standardization matters)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, 50.0]


def label_of(x: np.ndarray) -> np.ndarray:
    return np.where(x[:, 0] + x[:, 1] / 10 > 0.5, "yes", "no")


def value_of(x: np.ndarray) -> np.ndarray:
    return 3 * x[:, 0] - 0.2 * x[:, 1] + 0.01 * x[:, 2]


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def classification_csv(path: Path, n: int = 300, seed: int = 0) -> tuple[Path, np.ndarray]:
    x = features(n, seed)
    rows = [[*r, lab] for r, lab in zip(x.tolist(), label_of(x), strict=True)]
    return write_csv(path, ["a", "b", "c", "label"], rows), x


def regression_csv(path: Path, n: int = 300) -> tuple[Path, np.ndarray]:
    x = features(n)
    rows = [[*r, v] for r, v in zip(x.tolist(), value_of(x), strict=True)]
    return write_csv(path, ["a", "b", "c", "price"], rows), x


def train_table(out: Path, *args: str) -> Path:
    before = set(runs(out))
    assert main(["train", "--out", str(out), *args]) == 0
    (run,) = set(runs(out)) - before
    return run


# -- CSV classification: records, plots, evaluate, predict --rows, export -------------------
def test_csv_classification_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, x = classification_csv(tmp_path / "points.csv")
    out = tmp_path / "runs"
    run = train_table(
        out, "--data-file", str(data), "--target", "label", "--model", "3-16-2",
        "--epochs", "15", "--lr", "0.01", "--quiet",
    )  # fmt: skip
    text = capsys.readouterr().out
    assert "test accuracy" in text
    names = {p.name for p in run.iterdir()}
    assert {rec.CONFIG, rec.METRICS, rec.CHECKPOINT, rec.MODEL, "curves.png"} <= names
    assert "confusion.png" in names and "mistakes.png" not in names  # not images
    config = json.loads((run / rec.CONFIG).read_text())
    assert config["task"] == "classification" and config["loss"] == "cross_entropy"
    assert config["data_sha256"] == hashlib.sha256(b"data\0" + data.read_bytes()).hexdigest()
    assert config["table"]["classes"] == ["no", "yes"]
    final = rec.read_metrics(run)[-1]
    assert final["test_error"] < 0.15  # a learnable boundary, learnt
    assert "test_r2" not in final

    # evaluate: the same test error as the record, and the class names
    assert main(["evaluate", str(run)]) == 0
    text = capsys.readouterr().out
    assert f"error {final['test_error']:.2%}" in text and "0=no  1=yes" in text
    assert "test: 60 rows" in text

    # predict --rows on raw rows (header in another order, target present): the labels the
    # NumPy-only export gives for the same raw rows, and mostly right
    rows = x[:40]
    write_csv(
        tmp_path / "rows.csv",
        ["c", "label", "a", "b"],
        [[r[2], lab, r[0], r[1]] for r, lab in zip(rows.tolist(), label_of(rows), strict=True)],
    )
    assert main(["predict", str(run), "--rows", str(tmp_path / "rows.csv")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " row " in ln]
    assert len(lines) == 40 and lines[0].startswith("rows.csv row 2: predicted ")
    said = [re.search(r"predicted (\w+)", ln).group(1) for ln in lines]  # type: ignore[union-attr]
    assert main(["export", str(run), "--format", "numpy"]) == 0
    capsys.readouterr()
    predictor = numpy_predictor.load(run / "model.npz")
    assert list(predictor.predict(rows)) == said
    assert np.mean(np.array(said) == label_of(rows)) > 0.8
    wrong = sum(", wrong)" in ln for ln in lines)
    assert wrong == int(np.sum(np.array(said) != label_of(rows)))


def test_standardization_is_fitted_on_the_training_split_only(tmp_path: Path) -> None:
    data, x = classification_csv(tmp_path / "points.csv")
    config = TrainConfig(data_file=str(data), target="label", model="3-8-2", valid=60)
    parts = load_data(config)
    info = parts.table
    assert info is not None
    mean, std = np.array(info["mean"]), np.array(info["std"])
    train = parts.x_train.double().numpy()
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=0), 1, atol=1e-5)
    raw = {
        split: getattr(parts, f"x_{split}").double().numpy() * std + mean
        for split in ("train", "valid", "test")
    }
    # each split is a set of the file's own rows, disjoint, together all of them
    keys = {split: {tuple(np.round(r, 3)) for r in raw[split]} for split in raw}
    every = {tuple(np.round(r, 3)) for r in x}
    assert keys["train"] | keys["valid"] | keys["test"] == every
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["valid"]
    assert (len(raw["train"]), len(raw["valid"]), len(raw["test"])) == (180, 60, 60)
    # the mean of the whole file is not the one used
    assert not np.allclose(x.mean(axis=0), mean)
    np.testing.assert_allclose(raw["train"].mean(axis=0), mean, rtol=1e-4)


# -- regression: MSE, RMSE and R² in records, evaluate, predict, export ----------------------
def test_csv_regression_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, x = regression_csv(tmp_path / "houses.csv")
    out = tmp_path / "runs"
    run = train_table(
        out, "--data-file", str(data), "--target", "price", "--model", "3-16-1",
        "--epochs", "30", "--lr", "0.01",
    )  # fmt: skip
    text = capsys.readouterr().out
    assert "test rmse" in text and "R²" in text and "accuracy" not in text
    config = json.loads((run / rec.CONFIG).read_text())
    assert config["task"] == "regression" and config["loss"] == "mse"  # chosen for a regression
    assert {"curves.png", "predictions.png"} <= {p.name for p in run.iterdir()}
    final = rec.read_metrics(run)[-1]
    # error is the RMSE: the square root of the mean squared error loss
    assert final["test_error"] == pytest.approx(final["test_loss"] ** 0.5, rel=1e-4)
    assert final["test_r2"] > 0.9 and final["train_r2"] > 0.9
    assert main(["export", str(run), "--format", "numpy"]) == 0
    predictor = numpy_predictor.load(run / "model.npz")
    parts = load_data(TrainConfig.load(run / rec.CONFIG))
    raw_test = parts.x_test.double().numpy() * config["table"]["std"] + config["table"]["mean"]
    predicted, truth = predictor.predict(raw_test), parts.labels_test.double().numpy()
    r2 = 1 - ((truth - predicted) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert final["test_r2"] == pytest.approx(r2, abs=1e-4)
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    text = capsys.readouterr().out
    assert f"RMSE {final['test_error']:.6g}" in text and f"R² {final['test_r2']:.4f}" in text
    write_csv(tmp_path / "rows.csv", ["a", "b", "c"], x[:3].tolist())
    assert main(["predict", str(run), "--rows", str(tmp_path / "rows.csv")]) == 0
    values = [float(v) for v in re.findall(r"predicted (\S+)", capsys.readouterr().out)]
    np.testing.assert_allclose(values, predictor.predict(x[:3]), rtol=1e-4, atol=1e-4)


def test_npz_and_npy_pairs_and_the_task_option(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    x = features(240, seed=3)
    y_class = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 5)  # 0, 1, 2
    np.savez(tmp_path / "t.npz", x=x, y=y_class)
    out = tmp_path / "runs"
    run = train_table(
        out, "--data-file", str(tmp_path / "t.npz"), "--model", "3-8-3", "--epochs", "2", *QUIET
    )
    table = json.loads((run / rec.CONFIG).read_text())["table"]
    assert table["task"] == "classification" and table["classes"] == [0, 1, 2]
    assert table["feature_names"] == ["x0", "x1", "x2"]
    # .npy pair; an integer target made a regression by --task
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y_class)
    args = ["--data-file", str(tmp_path / "x.npy"), "--target-file", str(tmp_path / "y.npy")]
    run = train_table(out, *args, "--task", "regression", "--model", "3-8-1", "--epochs", "2",
                      *QUIET)  # fmt: skip
    config = json.loads((run / rec.CONFIG).read_text())
    assert config["task"] == "regression" and config["loss"] == "mse"
    assert "test_r2" in rec.read_metrics(run)[-1]
    # a separate test file: its rows are the test split, all of the data file trains
    np.savez(tmp_path / "test.npz", x=x[:50], y=y_class[:50])
    run = train_table(
        out, "--data-file", str(tmp_path / "t.npz"), "--test-file", str(tmp_path / "test.npz"),
        "--model", "3-8-3", "--epochs", "1", *QUIET,
    )  # fmt: skip
    assert json.loads((run / rec.CONFIG).read_text())["table"]["rows"] == {
        "train": 192,
        "valid": 48,
        "test": 50,
    }
    # a test file may hold one class; a label the training file lacks is named
    np.savez(tmp_path / "one.npz", x=x[:5], y=np.full(5, 2))
    run = train_table(
        out, "--data-file", str(tmp_path / "t.npz"), "--test-file", str(tmp_path / "one.npz"),
        "--model", "3-8-3", "--epochs", "1", *QUIET,
    )  # fmt: skip
    assert rec.read_metrics(run)[-1]["test_error"] is not None
    np.savez(tmp_path / "new.npz", x=x[:5], y=np.full(5, 7))
    code = main(["train", "--out", str(out), "--data-file", str(tmp_path / "t.npz"),
                 "--test-file", str(tmp_path / "new.npz"), "--model", "3-8-3", *QUIET])  # fmt: skip
    assert code == 2
    assert "target 'y' value 7 (record 0) is not a class of the training file" in (
        capsys.readouterr().err
    )


# -- resume: bit-exact, and refused on a changed file ---------------------------------------
def test_resume_is_exact_and_refuses_a_changed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    data, _ = classification_csv(tmp_path / "points.csv")
    out = tmp_path / "runs"
    args = [
        "--data-file", str(data), "--target", "label", "--model", "3-8-2", "--epochs", "4",
        "--batch-size", "32", "--dropout", "0.1", *QUIET,
    ]  # fmt: skip
    whole = train_table(out, *args, "--name", "whole")
    original = train_output.Reporter.step

    def step(self: train_output.Reporter, done: int) -> None:
        original(self, done)
        if done == 9:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(train_output.Reporter, "step", step)
    code = main(["train", "--out", str(out), *args, "--name", "cut"])
    assert code == train_cmd.EXIT_INTERRUPTED
    monkeypatch.undo()
    cut = next(r for r in runs(out) if r.name.startswith("cut-"))
    assert main(["train", "--resume", str(cut), *QUIET]) == 0
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(rec.read_metrics(cut)) == strip(rec.read_metrics(whole))
    assert (cut / rec.MODEL).read_bytes() == (whole / rec.MODEL).read_bytes()
    # one changed value in the file: resume refuses (the fingerprint covers its SHA-256)
    capsys.readouterr()
    text = data.read_text().splitlines()
    text[5] = text[5].replace(",no", ",yes") if ",no" in text[5] else text[5].replace(",yes", ",no")
    data.write_text("\n".join(text) + "\n")
    assert main(["train", "--resume", str(whole), *QUIET]) == 2
    err = capsys.readouterr().err
    assert "changed since the run started" in err and len(err.strip().splitlines()) == 1


def test_the_fingerprint_covers_the_table_and_keeps_mnist_runs(tmp_path: Path) -> None:
    mnist = TrainConfig()
    old = {k: v for k, v in mnist.to_dict().items() if k not in LATER_FIELDS}
    old = {k: v for k, v in old.items() if k not in ("name", "recipe", "data_dir", "download")}
    old_hash = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()
    assert mnist.fingerprint() == old_hash  # the new fields leave image runs' hashes alone
    table = TrainConfig(data_file="a.csv", target="y", model="3-8-2")
    assert table.replace(data_sha256="1" * 64).fingerprint() != table.fingerprint()
    assert table.replace(data_file="b.csv").fingerprint() != table.fingerprint()


# -- errors name the row and the column ------------------------------------------------------
@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("abc", "row 4, column 'b': 'abc' is not a number"),
        ("", "row 4, column 'b': missing value"),
        ("NA", "row 4, column 'b': missing value"),
    ],
)
def test_bad_cells_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture, cell: str, message: str
) -> None:
    rows: list[list[object]] = [[1, 2, 3, "x"], [2, 3, 4, "y"], [3, cell, 5, "x"], [4, 5, 6, "y"]]
    path = write_csv(tmp_path / "bad.csv", ["a", "b", "c", "label"], rows)
    code = main(["train", "--data-file", str(path), "--target", "label", "--out",
                 str(tmp_path / "runs"), "--model", "3-4-2", *QUIET])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not runs(tmp_path / "runs")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "label"], "target 'label' has one class ('same')"),
        (["--target", "lable"], "no column 'lable'; the columns are a, b, label"),
        ([], "a .csv needs --target COLUMN"),
        (
            ["--target", "a"],
            "model 3-4-2: one.csv has 2 features and regression (1 output); use --model 2-4-1",
        ),
    ],
)
def test_table_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    # (no --valid: a table's validation split is 0.2 of its rows by default)
    rows = [[i, i * 0.5 + 0.1, "same"] for i in range(40)]
    path = write_csv(tmp_path / "one.csv", ["a", "b", "label"], rows)
    if extra == ["--target", "a"]:  # a numeric target of many values: a regression
        path = write_csv(tmp_path / "one.csv", ["a", "b", "label"],
                         [[i * 1.5, i, i % 2] for i in range(40)])  # fmt: skip
    code = main(["train", "--data-file", str(path), *extra, "--out", str(tmp_path / "runs"),
                 "--model", "3-4-2", *QUIET])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1


def test_predict_rows_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, _ = classification_csv(tmp_path / "points.csv", n=100)
    run = train_table(tmp_path / "runs", "--data-file", str(data), "--target", "label",
                      "--model", "3-4-2", "--epochs", "1", *QUIET)  # fmt: skip
    capsys.readouterr()
    cases = [
        (["a", "b"], [[1, 2]], "no column 'c'; the run's features are a, b, c"),
        (["a", "b", "c", "d"], [[1, 2, 3, 4]], "column 'd' is not a feature of the run"),
        (["a", "b", "c"], [[1, 2, 3], [1, "x", 3]], "row 3, column 'b': 'x' is not a number"),
    ]
    for header, rows, message in cases:
        path = write_csv(tmp_path / "rows.csv", header, rows)
        assert main(["predict", str(run), "--rows", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err, err
    png = tmp_path / "digit.png"
    png.write_bytes(b"")
    assert main(["predict", str(run), str(png)]) == 2
    assert "give --rows FILE" in capsys.readouterr().err
    assert main(["predict", str(run), "--index", "0"]) == 2
    assert "give --rows FILE" in capsys.readouterr().err


def test_onnx_export_of_a_table_run_standardizes_inside(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("onnxruntime", reason="the export extra: pip install 'handgrad[export]'")
    import onnxruntime

    data, x = classification_csv(tmp_path / "points.csv", n=120)
    run = train_table(tmp_path / "runs", "--data-file", str(data), "--target", "label",
                      "--model", "3-8-2", "--epochs", "3", "--lr", "0.01", *QUIET)  # fmt: skip
    assert main(["export", str(run), "--format", "onnx"]) == 0
    assert main(["export", str(run), "--format", "numpy"]) == 0
    capsys.readouterr()
    session = onnxruntime.InferenceSession(str(run / "model.onnx"))
    raw = x[:20].astype(np.float32)
    (probs,) = session.run(None, {"input": raw})
    expected = numpy_predictor.load(run / "model.npz").predict_proba(raw)
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(probs, probs[0])  # the rows are told apart


def test_cli_flags_need_a_data_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--target", "y", "--out", str(tmp_path / "runs"), *QUIET]) == 2
    assert "target: applies with --data-file only" in capsys.readouterr().err


# -- the new image presets through the CLI ---------------------------------------------------
@pytest.mark.parametrize("preset", ["fashion-mnist", "kmnist"])
def test_train_an_image_preset_from_the_cli(
    two_sets: dict,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    preset: str,
) -> None:
    out = tmp_path / "runs"
    assert main(["train", "--preset", preset, "--model", "784-8-10", "--epochs", "1",
                 "--valid", "2", "--batch-size", "4", "--out", str(out), *QUIET]) == 0  # fmt: skip
    (run,) = runs(out)
    config = TrainConfig.load(run / rec.CONFIG)
    assert config.preset == preset
    data = load_data(config)
    arrays = two_sets[preset]
    np.testing.assert_array_equal(data.labels_test.numpy(), arrays["test_labels"])
    assert torch.equal(data.x_test * 255, torch.from_numpy(arrays["test_images"]).reshape(
        len(arrays["test_images"]), -1).float())  # fmt: skip
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    assert f"preset {preset}" in capsys.readouterr().out


def test_report_page_of_table_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("plotly", reason="the report extra: pip install 'handgrad[report]'")
    out = tmp_path / "runs"
    data, _ = regression_csv(tmp_path / "houses.csv", n=100)
    reg = train_table(out, "--data-file", str(data), "--target", "price", "--model", "3-4-1",
                      "--epochs", "1", *QUIET)  # fmt: skip
    data, _ = classification_csv(tmp_path / "points.csv", n=100)
    cls = train_table(out, "--data-file", str(data), "--target", "label", "--model", "3-4-2",
                      "--epochs", "1", *QUIET)  # fmt: skip
    assert main(["report", str(reg)]) == 0 and main(["report", str(cls)]) == 0
    page = (reg / "report.html").read_text()
    assert "a regression: no classes" in page and "RMSE" in page
    final = rec.read_metrics(reg)[-1]
    assert f"test error {final['test_error']:.4g}" in page  # the RMSE, not a percentage
    page = (cls / "report.html").read_text()
    assert "confusion-chart" in page and "a regression" not in page
