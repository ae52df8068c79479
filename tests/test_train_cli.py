"""handgrad train / evaluate / predict / recipes, called in-process: outputs, files, exit codes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from handgrad.cli import train_cmd, train_output
from handgrad.cli.main import main
from handgrad.train import records as rec
from tests.train_fixtures import one_thread  # noqa: F401  (autouse)

FAST = ["--model", "784-16-10", "--epochs", "2", "--batch-size", "100", "--quiet"]


def runs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir()) if out.exists() else []


def test_default_run_writes_a_complete_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    assert main(["train", "--out", str(out), "--epochs", "2"]) == 0
    (run,) = runs(out)
    assert run.name.startswith("run-")
    names = {p.name for p in run.iterdir()}
    assert {rec.CONFIG, rec.METRICS, rec.CHECKPOINT, rec.MODEL} <= names
    assert {"curves.png", "confusion.png", "mistakes.png", "first_layer.png"} <= names
    records = rec.read_metrics(run)
    assert [r["step"] for r in records] == [0, 15, 30]
    text = capsys.readouterr().out
    assert "handgrad: completed, 30 of 30 steps" in text
    assert "test accuracy" in text and "plots:" in text
    assert text.count("step ") >= 3  # one line per evaluation


def test_config_file_reproduces_the_run(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert main(["train", "--out", str(out), "--no-plots", *FAST]) == 0
    (first,) = runs(out)
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                "--no-plots",
                "--quiet",
                "--config",
                str(first / rec.CONFIG),
            ]
        )
        == 0
    )
    second = next(r for r in runs(out) if r != first)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(rec.read_metrics(first)) == strip(rec.read_metrics(second))


def test_flags_override_a_recipe(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    code = main(
        ["train", "--recipe", "ninja-gd", "--steps", "3", "--eval-every", "1", "--lr", "0.05",
         "--out", str(out), "--quiet", "--no-plots"]
    )  # fmt: skip
    assert code == 0
    (run,) = runs(out)
    config = json.loads((run / rec.CONFIG).read_text())
    assert (config["recipe"], config["steps"], config["lr"], config["model"]) == (
        "ninja-gd", 3, 0.05, "784-50-10"
    )  # fmt: skip
    assert len(rec.read_metrics(run)) == 4


def test_ctrl_c_writes_a_checkpoint_and_says_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    args = ["train", "--out", str(out), "--no-plots", *FAST, "--dropout", "0.2"]
    assert main([*args, "--name", "whole"]) == 0
    original = train_output.Reporter.step

    def step(self: train_output.Reporter, done: int) -> None:
        original(self, done)
        if done == 13:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(train_output.Reporter, "step", step)
    assert main([*args, "--name", "cut"]) == train_cmd.EXIT_INTERRUPTED
    text = capsys.readouterr().out
    cut = next(r for r in runs(out) if r.name.startswith("cut-"))
    assert f"resume with: handgrad train --resume {cut}" in text
    monkeypatch.undo()
    assert main(["train", "--resume", str(cut), "--quiet", "--no-plots"]) == 0
    whole = next(r for r in runs(out) if r.name.startswith("whole-"))
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(rec.read_metrics(cut)) == strip(rec.read_metrics(whole))
    assert (cut / rec.MODEL).read_bytes() == (whole / rec.MODEL).read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recipe", "ninja-g"], "invalid choice 'ninja-g' (did you mean ninja-gd?)"),
        (["--batchsize", "10"], "unrecognized argument --batchsize (did you mean --batch-size?)"),
        (["--preset", "mnits"], "invalid choice 'mnits' (did you mean mnist?)"),
        (["--lr", "0"], "lr: must be > 0, got 0.0"),
        (["--lr", "-0.1"], "lr: must be > 0"),
        (["--batch-size", "0"], "batch_size: must be > 0, got 0"),
        (["--batch-size", "5000"], "batch_size 5000 is larger than the 900 training records"),
        (["--optimizer", "adam", "--momentum", "0.9"], "unknown option 'momentum'"),
        (["--recipe", "ninja-gd", "--config", "x.json"], "not allowed with argument"),
        (["--resume", "no-such-run"], "no-such-run: no such run directory"),
        (["--config", "missing.json"], "missing.json: no such file"),
        (["--full", "--preset", "mnist"], "full: only the fleuret preset has a subset"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    out = tmp_path / "runs"
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--out", str(out), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_unparsable_config_and_unknown_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "runs")]) == 2
    assert "bad.json: not valid JSON" in capsys.readouterr().err
    bad.write_text(json.dumps({"modle": "784-10"}))
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "runs")]) == 2
    assert "unknown key 'modle' (did you mean model?)" in capsys.readouterr().err


def test_unwritable_out_is_detected_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["train", "--out", str(blocker / "runs"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "cannot write run directories there" in err and len(err.strip().splitlines()) == 1
    assert "step" not in capsys.readouterr().out


def test_resume_errors_and_what_they_keep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    assert main(["train", "--out", str(out), "--no-plots", *FAST]) == 0
    (run,) = runs(out)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "--lr: --resume continues a run exactly as configured" in capsys.readouterr().err
    metrics = (run / rec.METRICS).read_bytes()
    checkpoint = run / rec.CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{checkpoint}: damaged checkpoint" in err and len(err.strip().splitlines()) == 1
    assert (run / rec.METRICS).read_bytes() == metrics
    assert (run / rec.MODEL).exists()
    checkpoint.unlink()
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    assert f"{checkpoint}: no checkpoint" in capsys.readouterr().err


def test_nan_exits_1_naming_the_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["train", "--out", str(tmp_path), "--optimizer", "sgd", "--lr", "1e4", "--steps", "30",
         "--eval-every", "5", "--quiet", "--no-plots"]
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "at step" in err and "training stopped; the last good checkpoint is step" in err


def test_evaluate_and_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    assert main(["train", "--out", str(out), "--no-plots", *FAST]) == 0
    (run,) = runs(out)
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    text = capsys.readouterr().out
    final = rec.read_metrics(run)[-1]
    assert f"accuracy {1 - final['test_error']:.2%}" in text
    assert "confusion matrix" in text and len(text.splitlines()) >= 14
    assert main(["evaluate", str(run), "--split", "valid"]) == 0
    assert f"accuracy {1 - final['valid_error']:.2%}" in capsys.readouterr().out

    from PIL import Image

    from handgrad.data import load_embedded

    image = tmp_path / "digit.png"
    Image.fromarray(255 - load_embedded()["test_images"][3]).save(image)  # dark on light
    assert main(["predict", str(run), str(image), "--index", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("test[3]: predicted") and "(true 0" in lines[0]
    assert lines[2].startswith(f"{image}: predicted")
    assert lines[1] == lines[3]  # the file, inverted back, is exactly test image 3
    probs = [float(w.split(":")[1]) for w in lines[1].split()]
    assert sum(probs) == pytest.approx(1.0, abs=1e-2)

    assert main(["predict", str(run), "--index", "1000"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["predict", str(run), str(tmp_path / "none.png")]) == 2
    assert "none.png: no such file" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2


def test_recipes_lists_every_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes"]) == 0
    text = capsys.readouterr().out
    for name in ("fastai-mse", "fleuret-practical3", "ninja-gd", "ninja-adamw"):
        assert f"handgrad train --recipe {name}" in text
    assert "809.9498" in text and "88.20%" in text
    assert main(["recipes", "ninja-gd"]) == 0
    assert '"seed": 1337' in capsys.readouterr().out
    assert main(["recipes", "ninja"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_pixels_of_an_image_file_match_the_preset() -> None:
    from handgrad.data import load_embedded
    from handgrad.train.build import load_data, pixels_to_input
    from handgrad.train.config import TrainConfig

    config = TrainConfig()
    pixels = load_embedded()["test_images"][:5].astype(np.uint8)
    assert torch.equal(pixels_to_input(config, pixels), load_data(config).x_test[:5])


def test_resume_reads_the_checkpoint_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "runs"
    assert main(["train", "--out", str(out), "--no-plots", *FAST]) == 0
    (run,) = runs(out)
    reads: list[Path] = []
    original = rec.load_checkpoint

    def counting(path: Path) -> rec.Checkpoint:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(rec, "load_checkpoint", counting)
    assert main(["train", "--resume", str(run), "--quiet", "--no-plots"]) == 0
    assert reads == [run / rec.CHECKPOINT]


def test_the_config_is_validated_once_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handgrad.train.config import TrainConfig

    calls: list[int] = []
    original = TrainConfig.validate

    def counting(self: TrainConfig) -> TrainConfig:
        calls.append(1)
        return original(self)

    monkeypatch.setattr(TrainConfig, "validate", counting)
    assert main(["train", "--out", str(tmp_path / "runs"), "--no-plots", *FAST]) == 0
    assert len(calls) == 1
