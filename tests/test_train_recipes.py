"""Every recipe runs from the CLI for a few steps, with both engines; its records are checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import safetensors.torch

from handgrad.cli.main import main
from handgrad.reference import to_torch
from handgrad.train import records as rec
from handgrad.train.build import build_model
from handgrad.train.config import TrainConfig
from handgrad.train.recipes import RECIPES
from tests.train_fixtures import one_thread  # noqa: F401  (autouse)

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
FEW = {
    "fastai-mse": ["--steps", "3", "--eval-every", "1"],
    "fleuret-practical3": ["--epochs", "2"],
    "ninja-gd": ["--steps", "3", "--eval-every", "1"],
    "ninja-adamw": ["--steps", "3", "--eval-every", "1"],
    "subset-best": ["--steps", "8", "--eval-every", "4"],
    "mnist-fast": ["--steps", "8", "--eval-every", "8", "--threads", "1"],
    "mnist-best": ["--steps", "8", "--eval-every", "8", "--threads", "1"],
}


def full_data(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.environ.get("HANDGRAD_DATA"):
        return
    if not SHARED_MNIST.is_dir():
        pytest.skip("full MNIST not available (set HANDGRAD_DATA)")
    monkeypatch.setenv("HANDGRAD_DATA", str(SHARED_MNIST))


def test_every_recipe_has_a_test() -> None:
    assert set(FEW) == set(RECIPES)


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_runs_with_both_engines(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = RECIPES[name]
    if recipe.config.preset != "fleuret":
        full_data(monkeypatch)
    out = tmp_path / "runs"
    args = ["train", "--recipe", name, *FEW[name], "--engine", "both", "--out", str(out)]
    assert main([*args, "--no-plots"]) == 0
    text = capsys.readouterr().out

    # The seed's own per-evaluation line, then expected vs measured for both engines.
    first_line = {
        "fastai-mse": "step     0  epoch 0.00  train mse",
        "fleuret-practical3": "0 acc_train_loss 810.00 acc_train_error",
        "ninja-gd": "step = 0, loss = 809.949829",
        "ninja-adamw": "step =      0\tloss=",
    }.get(name, "step      0  epoch    0.00  lr ")
    assert first_line in text
    assert f"{name}: expected vs measured" in text
    table = text.split(f"{name}: expected vs measured")[1].splitlines()
    assert "handgrad" in table[1] and "autograd" in table[1]
    assert len(table) == 2 + len([f for f in recipe.figures if f.applies(recipe.config)])

    dirs = sorted(p for p in out.iterdir())
    assert [d.name.split("-20")[0] for d in dirs] == [f"{name}-autograd", f"{name}-handgrad"]
    records = {}
    for run in dirs:
        config = TrainConfig.load(run / rec.CONFIG)
        assert config.recipe == name
        assert config.engine == run.name.split("-20")[0].rsplit("-", 1)[1]
        records[config.engine] = rec.read_metrics(run)
        steps = [r["step"] for r in records[config.engine]]
        expected_steps = {
            "fleuret-practical3": [0, 1, 2],
            "mnist-fast": [0, 8],
            "mnist-best": [0, 8],
            "subset-best": [0, 4, 8],
        }.get(name, [0, 1, 2, 3])
        assert steps == expected_steps
        for i, r in enumerate(records[config.engine]):
            assert json.dumps(r)  # plain JSON
            assert r["train_loss"] > 0
            if config.eval_test == "end" and i < len(steps) - 1:
                assert r["test_error"] is None and r["test_loss"] is None  # read once, at the end
                continue
            assert 0 <= r["test_error"] <= 1
        state = safetensors.torch.load_file(run / rec.MODEL)
        to_torch(build_model(config)).load_state_dict(state, strict=True)
        assert rec.load_checkpoint(run / rec.CHECKPOINT).step == steps[-1]
    # Same start; float32 engines agree closely over a few steps.
    hand, auto = records["handgrad"], records["autograd"]
    # Same weights; torch.nn.Linear's fused addmm may round wide layers (784-800) differently.
    assert hand[0]["train_loss"] == pytest.approx(auto[0]["train_loss"], rel=1e-6)
    assert hand[-1]["train_loss"] == pytest.approx(auto[-1]["train_loss"], rel=1e-3)
    if recipe.timing:
        assert "forward + loss on 50,000 images" in text and "(notebook 124 ms)" in text
