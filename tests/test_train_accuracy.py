"""Issue 7's wiring: augmentation in training (seeded per batch), drop_last, test read once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from handgrad.cli.main import main
from handgrad.data.augment import Augment
from handgrad.train import records as rec
from handgrad.train.config import TrainConfig
from handgrad.train.loop import train
from handgrad.train.recipes import RECIPES
from handgrad.train.steps import build_plan, build_transform
from tests.train_fixtures import one_thread  # noqa: F401  (autouse)

from .test_train_loop import interrupt_at, run_dir, without_seconds

SMALL = TrainConfig(
    model="784-32-10",
    batch_size=96,
    drop_last=True,
    epochs=2,
    eval_every=3,
    valid=100,
    dropout=0.1,
    augment="affine",
    augment_options={"shift": 1.5, "rotate": 8.0, "scale": 0.08},
)  # 900 // 96 = 9 steps per epoch (the short last batch dropped), 18 steps


def test_recipes_carry_the_researched_augmentations() -> None:
    assert RECIPES["subset-best"].config.augmentation() == Augment(
        shift=1.0, rotate=10.0, scale=0.1, elastic_alpha=34.0, elastic_sigma=4.0
    )
    assert RECIPES["mnist-fast"].config.augmentation() == Augment(shift=1.0, integer_shift=True)
    assert RECIPES["mnist-best"].config.augmentation() == Augment(shift=1.5, rotate=8, scale=0.08)
    for name in ("subset-best", "mnist-fast", "mnist-best"):
        config = RECIPES[name].config
        assert config.eval_test == "end" and config.drop_last and config.valid == 0


def test_transform_is_a_function_of_seed_and_batch_index() -> None:
    transform = build_transform(SMALL)
    assert transform is not None
    x = torch.rand(8, 784)
    y = torch.arange(8)
    a, ya = transform(x, y, 5)
    b, _ = transform(x, y, 5)
    c, _ = transform(x, y, 6)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    assert torch.equal(ya, y)
    other_seed = build_transform(SMALL.replace(seed=1))
    assert other_seed is not None and not torch.equal(other_seed(x, y, 5)[0], a)


def test_drop_last_plans_whole_batches_only() -> None:
    assert build_plan(SMALL, 900).batches_per_epoch == 9
    assert build_plan(SMALL.replace(drop_last=False), 900).batches_per_epoch == 10


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shfit": 1}, r"augment_options: unknown key 'shfit' \(did you mean shift\?\)"),
        ({"rotate": -1}, r"augment_options: Augment rotate: expected a finite number >= 0"),
        ({"scale": "big"}, r"augment_options: Augment scale: expected a number, got 'big'"),
    ],
)
def test_bad_augment_options_are_one_line_errors(
    options: dict[str, object], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match=message):
        SMALL.replace(augment_options=options).validate()
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"augment": "affine", "augment_options": options}))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "augment_options" in err


def test_augment_options_need_an_augmentation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--augment-option", "shift=1", "--out", "/nonexistent/x"]) == 2
    assert "augment is none" in capsys.readouterr().err


def test_cli_options_reach_the_config(tmp_path: Path) -> None:
    from handgrad.cli.main import build_parser
    from handgrad.cli.train_cmd import config_from_args

    args = build_parser().parse_args(
        ["train", "--recipe", "mnist-best", "--augment-option", "rotate=4", "--eval-test", "always"]
    )
    config, _ = config_from_args(args)
    assert config.augment_options == {"shift": 1.5, "rotate": 4, "scale": 0.08}
    assert config.eval_test == "always"
    args = build_parser().parse_args(["train", "--recipe", "mnist-best", "--augment", "shift"])
    config, _ = config_from_args(args)
    assert config.augment == "shift" and config.augment_options == {}


def test_resume_is_exact_with_a_real_augmentation(tmp_path: Path) -> None:
    whole = train(SMALL, run_dir=run_dir(tmp_path, "whole"))
    part = run_dir(tmp_path, "part")
    stopped = train(SMALL, run_dir=part, on_step=interrupt_at(7))  # mid-epoch, between evals
    assert stopped.status == "interrupted" and stopped.steps == 7
    train(SMALL, run_dir=part, resume=True)
    assert without_seconds(rec.read_metrics(part)) == without_seconds(whole.records)
    a = safetensors.torch.load_file(tmp_path / "whole" / rec.MODEL)
    b = safetensors.torch.load_file(part / rec.MODEL)
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = train(SMALL.replace(augment="none", augment_options={}), handle_interrupt=False)
    assert plain.records[-1]["train_loss"] != whole.records[-1]["train_loss"]


def test_test_set_is_evaluated_once_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import handgrad.train.evaluation as loop

    sizes: list[int] = []
    original = loop.evaluate_split

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(args[3]))
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_split", counting)
    config = SMALL.replace(eval_test="end")
    result = train(config, run_dir=run_dir(tmp_path, "end"))
    n_test = len(result.data.x_test)
    assert sizes.count(n_test) == 1  # 900 train, 100 valid, 1,000 test records
    *before, last = rec.read_metrics(tmp_path / "end")
    assert [r["step"] for r in [*before, last]] == [0, 3, 6, 9, 12, 15, 18]
    assert all(r["test_error"] is None and r["test_loss"] is None for r in before)
    assert all(r["test_evaluated"] == "once, at the end" for r in [*before, last])
    assert all(r["valid_error"] is not None for r in before)
    # The same figures as a run that reads the test set at every evaluation.
    always = train(SMALL, handle_interrupt=False)
    assert last["test_error"] == always.records[-1]["test_error"]
    assert last["test_loss"] == pytest.approx(always.records[-1]["test_loss"], rel=1e-6)
    assert "test_evaluated" not in always.records[-1]


def test_early_stop_with_test_at_end_reads_the_test_set_at_the_stop() -> None:
    # lr 0.05: the validation error soon stops improving (at lr 0.5 the loss blows up to 190x
    # its start in one step, and the run now stops as diverged)
    config = SMALL.replace(eval_test="end", eval_every=1, patience=1, lr=0.05, epochs=5)
    result = train(config, handle_interrupt=False)
    assert result.status == "early_stopped"
    *before, last = result.records
    assert all(r["test_error"] is None for r in before) and last["test_error"] is not None
