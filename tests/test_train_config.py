"""TrainConfig: JSON round trip, one-line errors for unknown keys and bad values, fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handgrad.errors import HandgradError
from handgrad.train.build import check_config
from handgrad.train.config import TrainConfig
from handgrad.train.recipes import RECIPES
from handgrad.train.steps import build_plan


@pytest.mark.parametrize(
    "config",
    [TrainConfig(), *(r.config for r in RECIPES.values())],
    ids=["default", *RECIPES],
)
def test_json_round_trip(tmp_path: Path, config: TrainConfig) -> None:
    path = tmp_path / "config.json"
    config.save(path)
    loaded = TrainConfig.load(path)
    assert loaded == config
    assert loaded.fingerprint() == config.fingerprint()
    check_config(loaded)


def test_round_trip_keeps_tuples_floats_and_dicts(tmp_path: Path) -> None:
    config = TrainConfig(
        betas=(0.8, 0.99), valid=0.1, schedule="cosine", schedule_options={"warmup_steps": 3}
    )
    path = tmp_path / "c.json"
    config.save(path)
    loaded = TrainConfig.load(path)
    assert loaded.betas == (0.8, 0.99) and isinstance(loaded.betas, tuple)
    assert loaded.valid == 0.1 and loaded.schedule_options == {"warmup_steps": 3}


def test_unknown_key_names_it_and_the_closest_field(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"bacth_size": 32}))
    with pytest.raises(ValueError, match=r"unknown key 'bacth_size' \(did you mean batch_size\?\)"):
        TrainConfig.load(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"lr": "fast"}, "lr: expected a number, got .fast."),
        ({"epochs": 2.5}, "epochs: expected an integer or null, got 2.5"),
        ({"shuffle": 1}, "shuffle: expected true or false"),
        ({"betas": [0.9]}, "betas: expected"),
    ],
)
def test_wrong_types_are_named(tmp_path: Path, data: dict[str, object], message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        TrainConfig.load(path)


def test_unparsable_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"lr": 0.1,,}')
    with pytest.raises(HandgradError, match=r"c\.json: not valid JSON \(line 1"):
        TrainConfig.load(path)
    with pytest.raises(HandgradError, match=r"missing\.json: no such file"):
        TrainConfig.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lr": 0.0}, "lr: must be > 0"),
        ({"lr": -1.0}, "lr: must be > 0"),
        ({"batch_size": 0}, "batch_size: must be > 0"),
        ({"epochs": None, "steps": None}, "give one of them"),
        ({"optimizer": "adamm"}, "did you mean adam"),
        ({"preset": "fleuret2"}, "did you mean fleuret"),
        ({"act": "rellu"}, "did you mean relu"),
        ({"patience": 3, "valid": 0}, "needs a validation split"),
        ({"model": "784-50-3"}, "must end in 10 outputs"),
        ({"loss": "mse", "targets": "class"}, "needs onehot or value targets"),
        ({"target_scale": 0.9}, "applies to onehot targets only"),
    ],
)
def test_bad_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_config(TrainConfig().replace(**changes))


def test_batch_size_larger_than_the_data() -> None:
    with pytest.raises(ValueError, match="batch_size 1000 is larger than the 900 training records"):
        build_plan(TrainConfig(batch_size=1000), 900)


def test_fingerprint_ignores_names_but_not_settings() -> None:
    base = TrainConfig()
    assert base.replace(name="other", data_dir="/x").fingerprint() == base.fingerprint()
    assert base.replace(threads=2).fingerprint() != base.fingerprint()  # sums may differ
    assert base.replace(lr=0.01).fingerprint() != base.fingerprint()


def test_plan_counts_steps() -> None:
    plan = build_plan(TrainConfig(batch_size=64, epochs=3), 900)
    assert (plan.batches_per_epoch, plan.steps_per_epoch, plan.total_steps) == (15, 15, 45)
    assert plan.eval_every == 15 and plan.checkpoint_every == 15
    fleuret = build_plan(RECIPES["fleuret-practical3"].config, 1000)
    assert (fleuret.micro_per_step, fleuret.steps_per_epoch, fleuret.total_steps) == (1000, 1, 200)
    assert build_plan(TrainConfig(batch_size=None, steps=7), 900).batch_size == 900


def test_the_configs_choices_are_those_nn_and_data_define() -> None:
    # config.py repeats them so that the command line can read them without importing torch.
    from handgrad.data.augment import AUGMENTS
    from handgrad.nn.init import INITS
    from handgrad.nn.mlp import ACTIVATIONS, NORMS
    from handgrad.train import config

    assert config.ACTIVATIONS == ACTIVATIONS and config.NORMS == NORMS
    assert config.INITS == INITS and tuple(AUGMENTS) == config.AUGMENTS


def test_every_option_field_becomes_a_train_option() -> None:
    import dataclasses

    from handgrad.cli.main import build_parser

    parser = build_parser(["train"])
    args = parser.parse_args(["train", "--threads", "auto", "--batch-size", "full", "--no-shuffle"])
    assert (args.threads, args.batch_size, args.shuffle) == ("auto", None, False)
    help_text = parser._subparsers._group_actions[0].choices["train"].format_help()  # type: ignore[union-attr]
    for f in dataclasses.fields(TrainConfig):
        if "group" in f.metadata:
            flag = f.metadata.get(
                "flag", ("--no-" if f.default is True else "--") + f.name.replace("_", "-")
            )
            assert flag in help_text, flag


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threads", "abc"], "argument --threads: expected an integer or '0' or 'auto'"),
        (["--batch-size", "x"], "argument --batch-size: expected an integer or 'full'"),
        (["--valid", "many"], "argument --valid: expected an integer or a number"),
    ],
)
def test_a_generated_option_rejects_a_bad_word_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from handgrad.cli.main import main

    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
