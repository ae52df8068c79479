"""handgrad compare: both engines over the same run agree in float64, for every recipe."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from handgrad.cli.main import main
from handgrad.nn import functional as F
from handgrad.train.build import load_data
from handgrad.train.compare import FLOAT64_TOLERANCE, compare
from handgrad.train.config import TrainConfig
from handgrad.train.recipes import RECIPES
from tests.train_fixtures import one_thread  # noqa: F401  (autouse)

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def _recipe_config(name: str) -> TrainConfig:
    config = RECIPES[name].config
    if config.preset != "fleuret" or config.full:
        if not SHARED_MNIST.is_dir():
            pytest.skip(f"{name} needs the full MNIST files in {SHARED_MNIST}")
        config = config.replace(data_dir=str(SHARED_MNIST), download=False)
    return config


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_agrees_with_autograd_in_float64_over_100_steps(name: str) -> None:
    config = _recipe_config(name).replace(dtype="float64")
    data = load_data(config)
    if config.accumulate is None and config.batch_size == 1:
        # Per-sample accumulation (Fleuret): each step is one forward/backward per training
        # sample and engine, so CI compares on the first 100 samples; the recipe's own size is
        # `handgrad compare --recipe fleuret-practical3`.
        data = dataclasses.replace(
            data,
            x_train=data.x_train[:100],
            y_train=data.y_train[:100],
            labels_train=data.labels_train[:100],
        )
    result = compare(config, 100, data=data)
    assert result.steps == list(range(1, 101))
    assert result.ok, (result.max_loss_diff, result.max_param_diff)
    assert result.max_loss_diff <= FLOAT64_TOLERANCE
    assert result.max_param_diff <= FLOAT64_TOLERANCE
    assert result.loss_handgrad[-1] != result.loss_handgrad[0], "the run must actually train"


def test_float32_difference_is_reported_not_judged() -> None:
    result = compare(RECIPES["ninja-gd"].config.replace(dtype="float32"), 30)
    assert result.tolerance is None and result.ok
    assert result.max_param_diff > 0, "float32 runs of two engines are not bit-identical"


def test_dropout_batchnorm_and_a_schedule_agree_in_float64() -> None:
    config = TrainConfig(
        model="784-32-16-10",
        norm="batchnorm",
        dropout=0.3,
        input_dropout=0.1,
        label_smoothing=0.1,
        optimizer="sgd",
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        lr=0.05,
        schedule="cosine",
        schedule_options={"warmup_steps": 5},
        batch_size=50,
        steps=40,
        dtype="float64",
    )
    result = compare(config, 40)
    assert result.ok, (result.max_loss_diff, result.max_param_diff)
    assert result.loss_handgrad[-1] < result.loss_handgrad[0]


def test_a_wrong_backward_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def slightly_wrong(grad_out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return grad_out * (1 - y * y) * 1.001

    monkeypatch.setattr(F, "tanh_backward", slightly_wrong)
    result = compare(RECIPES["ninja-gd"].config.replace(dtype="float64"), 5)
    assert not result.ok
    assert result.max_param_diff > FLOAT64_TOLERANCE


def test_cli_writes_json_and_plot_and_exits_1_on_divergence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code = main(
        ["compare", "--recipe", "ninja-adamw", "--steps", "3", "--out", str(tmp_path), "--json"]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] is True
    assert [r["dtype"] for r in out["results"]] == ["float64", "float32"]
    run_dir = Path(out["out"])
    assert (run_dir / "divergence.png").stat().st_size > 1000
    saved = json.loads((run_dir / "compare.json").read_text())
    assert len(saved["results"][0]["per_step"]) == 3

    monkeypatch.setattr(F, "tanh_backward", lambda g, y: g * (1 - y * y) * 1.01)
    code = main(
        [
            "compare",
            "--recipe",
            "ninja-gd",
            "--steps",
            "2",
            "--dtype",
            "float64",
            "--out",
            str(tmp_path),
            "--no-plot",
        ]
    )
    text = capsys.readouterr().out
    assert code == 1
    assert "DIFFER beyond 1e-09" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "--recipe", "ninja-gdd"], "did you mean ninja-gd"),
        (["compare", "--recipe", "ninja-gd", "--steps", "0"], "--steps must be >= 1, got 0"),
        (["compare"], "one of the arguments --recipe --config is required"),
        (["compare", "--config", "/nonexistent/config.json"], "config.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main([*argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
