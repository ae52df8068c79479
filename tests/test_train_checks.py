"""Checkpoints and model files checked against their run before anything is touched: edited
steps, foreign weights (int32, NaN), an edited config; one line each, files unchanged."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from handgrad.errors import HandgradError
from handgrad.train import records as rec
from handgrad.train.build import build_model, load_data
from handgrad.train.checks import check_checkpoint, check_run_model, check_weights
from handgrad.train.config import TrainConfig
from handgrad.train.loop import train
from handgrad.train.steps import build_plan
from tests.train_fixtures import one_thread  # noqa: F401  (autouse)

CONFIG = TrainConfig(model="784-16-10", steps=20, eval_every=5, batch_size=100)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("finished")
    torch.set_num_threads(1)
    assert train(CONFIG, run_dir=run).status == "completed"
    return run


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped by Ctrl-C after step 7: its checkpoint is mid-interval (last eval at 5)."""
    run = tmp_path_factory.mktemp("interrupted")
    torch.set_num_threads(1)

    def on_step(done: int) -> None:
        if done == 7:
            signal.raise_signal(signal.SIGINT)

    assert train(CONFIG, run_dir=run, on_step=on_step).status == "interrupted"
    return run


def copy_run(run: Path, to: Path) -> Path:
    to.mkdir()
    for f in run.iterdir():
        (to / f.name).write_bytes(f.read_bytes())
    return to


def snapshot(run: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(run.iterdir())}


def expected_model(config: TrainConfig = CONFIG) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        return build_model(config, seed=False).state_dict()


def check(run: Path, config: TrainConfig = CONFIG) -> list[dict[str, object]]:
    path = run / rec.CHECKPOINT
    plan = build_plan(config, load_data(config).n_train)
    return check_checkpoint(
        rec.load_checkpoint(path),
        path=path,
        run=run,
        fingerprint=config.fingerprint(),
        plan=plan,
        expected_model=expected_model(config),
    )


def edit_checkpoint(run: Path, change: Callable[[rec.Checkpoint], None]) -> None:
    path = run / rec.CHECKPOINT
    ckpt = rec.load_checkpoint(path)
    change(ckpt)
    rec.save_checkpoint(path, ckpt)


def refused(run: Path, *fragments: str, config: TrainConfig = CONFIG) -> str:
    before = snapshot(run)
    with pytest.raises(HandgradError) as info:
        check(run, config)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert snapshot(run) == before  # nothing was touched
    return message


def test_good_checkpoints_pass_and_say_what_to_keep(finished: Path, interrupted: Path) -> None:
    kept = check(finished)
    assert [r["step"] for r in kept] == [0, 5, 10, 15, 20]
    assert kept == rec.read_metrics(finished)
    kept = check(interrupted)
    assert rec.load_checkpoint(interrupted / rec.CHECKPOINT).step == 7
    assert [r["step"] for r in kept] == [0, 5]


@pytest.mark.parametrize("step", [-5, 21, 100000])
def test_step_outside_the_run(finished: Path, tmp_path: Path, step: int) -> None:
    run = copy_run(finished, tmp_path / "r")
    edit_checkpoint(run, lambda c: setattr(c, "step", step))
    refused(run, f"checkpoint step {step} is outside the run's steps 0 to 20")


@pytest.mark.parametrize("step", [3, 12, 19])
def test_step_edited_to_a_value_inside_the_run(finished: Path, tmp_path: Path, step: int) -> None:
    run = copy_run(finished, tmp_path / "r")
    edit_checkpoint(run, lambda c: setattr(c, "step", step))
    refused(run, f"checkpoint step {step} does not follow its last evaluation at step 20")


def test_step_and_position_edited_together(interrupted: Path, tmp_path: Path) -> None:
    run = copy_run(interrupted, tmp_path / "r")  # real: step 7, last evaluation at 5

    def move(c: rec.Checkpoint) -> None:
        c.step = 8

    edit_checkpoint(run, move)
    refused(run, "checkpoint step 8 does not match its epoch", "(that is step 7)")

    def move_epoch_too(c: rec.Checkpoint) -> None:
        c.meta["epoch"] = 8 / 9

    edit_checkpoint(run, move_epoch_too)
    refused(run, "checkpoint step 8, but its optimizer state has taken 7 steps")


def test_last_evaluation_off_the_grid(interrupted: Path, tmp_path: Path) -> None:
    run = copy_run(interrupted, tmp_path / "r")
    edit_checkpoint(run, lambda c: c.meta.update(interval_start=4))
    refused(run, "last evaluation at step 4 is not a step the run evaluates at (every 5 steps)")


def test_running_losses_checked(interrupted: Path, tmp_path: Path) -> None:
    run = copy_run(interrupted, tmp_path / "r")
    edit_checkpoint(run, lambda c: c.loop["losses"].__setitem__(4, 1.0))
    refused(run, "loop.losses has values past the 2 steps since the last evaluation")
    edit_checkpoint(run, lambda c: c.loop["losses"].__setitem__(0, float("nan")))
    refused(run, "loop.losses holds nan")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda t: t.to(torch.int32), "has dtype torch.int32, the model's is torch.float32"),
        (lambda t: t.to(torch.float64), "has dtype torch.float64"),
        (lambda t: t.clone().fill_(float("nan")), "holds nan: the weights are not finite"),
        (lambda t: t.clone().index_fill_(0, torch.tensor([1]), float("-inf")), "holds -inf"),
        (lambda t: t[:-1], "has shape"),
    ],
)
def test_foreign_weights_in_a_checkpoint(
    finished: Path,
    tmp_path: Path,
    change: Callable[[torch.Tensor], torch.Tensor],
    fragment: str,
) -> None:
    run = copy_run(finished, tmp_path / "r")

    def edit(c: rec.Checkpoint) -> None:
        key = sorted(c.model)[0]
        c.model[key] = change(c.model[key])

    edit_checkpoint(run, edit)
    refused(run, str(run / rec.CHECKPOINT), fragment)


def test_missing_weight_and_nan_optimizer_buffer(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "r")
    edit_checkpoint(run, lambda c: c.model.pop(sorted(c.model)[-1]))
    refused(run, "weights do not fit the model config.json describes (missing ")
    run = copy_run(finished, tmp_path / "r2")

    def poison(c: rec.Checkpoint) -> None:
        key = sorted(c.optim["buffers"])[0]
        c.optim["buffers"][key] = c.optim["buffers"][key].clone().fill_(float("nan"))

    edit_checkpoint(run, poison)
    refused(run, "optimizer buffer", "holds nan")


def test_edited_act_in_config_is_refused(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "r")
    edited = json.loads((run / rec.CONFIG).read_text())
    edited["act"] = "tanh" if edited["act"] != "tanh" else "relu"
    (run / rec.CONFIG).write_text(json.dumps(edited))
    config = TrainConfig.load(run / rec.CONFIG)
    refused(run, "written by another configuration than", config=config)


def test_metrics_out_of_order_or_missing_the_last_evaluation(
    finished: Path, tmp_path: Path
) -> None:
    run = copy_run(finished, tmp_path / "r")
    records = rec.read_metrics(run)
    text = "".join(json.dumps(r) + "\n" for r in [*records, records[2], records[3]])
    (run / rec.METRICS).write_text(text)  # what two writers at once left behind
    refused(run, "step 10 follows step 20 (record 6): the records are out of order or repeated")
    text = "".join(json.dumps(r) + "\n" for r in records[:-1])
    (run / rec.METRICS).write_text(text)
    refused(run, "its last evaluation was at step 20, but", "has step 15 as the last record")
    (run / rec.METRICS).write_text("".join(json.dumps(r) + "\n" for r in records[1:]))
    refused(run, "no record of step 0")


def test_check_weights_names_extra_and_missing() -> None:
    expected = {"0.weight": torch.zeros(2, 3), "0.bias": torch.zeros(2)}
    check_weights({"0.weight": torch.ones(2, 3), "0.bias": torch.ones(2)}, expected, "f")
    with pytest.raises(HandgradError, match=r"^f: .*missing 0\.bias; unexpected 1\.bias\)$"):
        check_weights({"0.weight": torch.ones(2, 3), "1.bias": torch.ones(2)}, expected, "f")
    with pytest.raises(HandgradError, match=r"f: 0\.bias is a list, expected a tensor"):
        check_weights({"0.weight": torch.ones(2, 3), "0.bias": [1, 2]}, expected, "f")  # type: ignore[dict-item]


# -- evaluate / predict ---------------------------------------------------------------------
def run_model_check(run: Path, config: TrainConfig) -> None:
    state, source = rec.load_model_state(run)
    check_run_model(run, config.fingerprint(), state, source, expected_model(config))


def test_run_model_good(finished: Path) -> None:
    run_model_check(finished, CONFIG)


@pytest.mark.parametrize(
    ("dtype_or_value", "fragment"),
    [(torch.int32, "dtype torch.int32"), (float("nan"), "holds nan")],
)
def test_int32_or_nan_weights_in_model_file(
    finished: Path, tmp_path: Path, dtype_or_value: object, fragment: str
) -> None:
    run = copy_run(finished, tmp_path / "r")
    state, _ = rec.read_safetensors(run / rec.MODEL, "model file")
    key = sorted(state)[0]
    if isinstance(dtype_or_value, torch.dtype):
        state[key] = state[key].to(dtype_or_value)
    else:
        state[key] = state[key].clone().fill_(dtype_or_value)  # type: ignore[arg-type]
    rec.save_model(run / rec.MODEL, state)
    before = snapshot(run)
    with pytest.raises(HandgradError) as info:
        run_model_check(run, CONFIG)
    assert str(info.value).startswith(f"{run / rec.MODEL}: {key} ")
    assert fragment in str(info.value)
    assert snapshot(run) == before


def test_edited_act_is_caught_for_evaluate(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "r")
    config = CONFIG.replace(act="tanh" if CONFIG.act != "tanh" else "relu")
    with pytest.raises(HandgradError) as info:
        run_model_check(run, config)
    assert str(info.value) == (
        # model.safetensors carries the fingerprint too now (the loop writes it), checked first
        f"{run / rec.CONFIG}: does not describe the run that wrote {run / rec.MODEL} "
        "(the config was edited after the run, e.g. its act or model)"
    )
    # With the fingerprint in the model file too (as the loop should write it), the model
    # file alone is enough to tell.
    (run / rec.CHECKPOINT).unlink()
    state, _ = rec.read_safetensors(run / rec.MODEL, "model file")
    rec.save_model(run / rec.MODEL, state, {"config_sha256": CONFIG.fingerprint()})
    with pytest.raises(HandgradError, match=r"does not describe the run that wrote .*model"):
        run_model_check(run, config)
    run_model_check(run, CONFIG)
