"""The training loop: exact resume, atomic checkpoints, NaN stop, early stop, both engines."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import safetensors.torch
import torch

from handgrad.errors import HandgradError
from handgrad.reference import to_torch
from handgrad.train import records as rec
from handgrad.train.build import build_model
from handgrad.train.config import TrainConfig
from handgrad.train.loop import RunResult, train
from tests.train_fixtures import one_thread  # noqa: F401  (autouse)

SMALL = TrainConfig(
    model="784-32-10", batch_size=100, epochs=3, eval_every=4, valid=100, dropout=0.1
)  # 9 steps per epoch, 27 steps; dropout so that the generator state matters


def run_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def without_seconds(records: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def model_tensors(path: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(path / rec.MODEL)


def interrupt_at(step: int):  # type: ignore[no-untyped-def]
    def on_step(done: int) -> None:
        if done == step:
            os.kill(os.getpid(), signal.SIGINT)

    return on_step


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(SMALL, id="adam-dropout"),
        pytest.param(
            SMALL.replace(optimizer="sgd", lr=0.05, momentum=0.9, accumulate=2, batch_size=50),
            id="sgd-momentum-accumulate",
        ),
        pytest.param(
            SMALL.replace(
                schedule="cosine", schedule_options={"warmup_steps": 3}, norm="batchnorm"
            ),
            id="cosine-batchnorm",
        ),
        pytest.param(SMALL.replace(engine="autograd"), id="autograd-engine"),
    ],
)
def test_resume_is_bit_identical(tmp_path: Path, config: TrainConfig) -> None:
    whole = train(config, run_dir=run_dir(tmp_path, "whole"))
    assert whole.status == "completed"

    # Interrupt inside an epoch and between checkpoints; then resume.
    part_dir = run_dir(tmp_path, "part")
    stop = whole.plan.steps_per_epoch + 2
    part = train(config, run_dir=part_dir, on_step=interrupt_at(stop))
    assert part.status == "interrupted" and part.steps == stop
    assert "checkpoint written" in part.message
    assert rec.load_checkpoint(part_dir / rec.CHECKPOINT).step == stop
    resumed = train(config, run_dir=part_dir, resume=True)
    assert resumed.status == "completed" and resumed.steps == whole.steps

    assert without_seconds(rec.read_metrics(part_dir)) == without_seconds(
        rec.read_metrics(tmp_path / "whole")
    )
    a, b = model_tensors(tmp_path / "whole"), model_tensors(part_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ca = rec.load_checkpoint(tmp_path / "whole" / rec.CHECKPOINT)
    cb = rec.load_checkpoint(part_dir / rec.CHECKPOINT)
    assert ca.optim["step"] == cb.optim["step"]
    for key, value in ca.optim["buffers"].items():
        assert torch.equal(value, cb.optim["buffers"][key]), key
    assert torch.equal(ca.rng["torch"], cb.rng["torch"])


def test_resume_drops_records_written_after_the_checkpoint(tmp_path: Path) -> None:
    config = SMALL.replace(checkpoint_every=9, eval_every=3, dropout=0.0)
    whole = train(config, run_dir=run_dir(tmp_path, "whole"))
    crashed = run_dir(tmp_path, "crashed")
    train(config, run_dir=crashed, on_step=interrupt_at(9))
    # A crash after two more evaluations but before the next checkpoint.
    with open(crashed / rec.METRICS, "a") as f:
        f.write(json.dumps({"step": 12, "train_loss": 0.0}) + "\n")
        f.write('{"step": 15, "train_lo')  # cut mid-line
    train(config, run_dir=crashed, resume=True)
    assert without_seconds(rec.read_metrics(crashed)) == without_seconds(whole.records)


def test_model_file_loads_into_torch_sequential(tmp_path: Path) -> None:
    config = SMALL.replace(epochs=1)
    result = train(config, run_dir=run_dir(tmp_path, "r"))
    twin = to_torch(build_model(config))
    twin.load_state_dict(model_tensors(result.run_dir or tmp_path), strict=True)
    x = result.data.x_test[:5]
    result.model.eval()
    twin.eval()
    with torch.no_grad():
        assert torch.allclose(twin(x), result.model(x), atol=1e-6)


def _checkpoint(step: int) -> rec.Checkpoint:
    return rec.Checkpoint(
        step=step,
        model={"0.weight": torch.full((2, 3), float(step))},
        optim={"type": "SGD", "hyper": {"lr": 0.1}, "step": step, "buffers": {}},
        rng={"torch": torch.get_rng_state()},
        loop={"losses": torch.zeros(4, dtype=torch.float64)},
        meta={"interval_start": step},
        config_sha256="abc",
    )


@pytest.mark.parametrize("fail", ["replace", "fsync", "write"])
def test_a_failed_checkpoint_write_leaves_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: str
) -> None:
    path = tmp_path / rec.CHECKPOINT
    rec.save_checkpoint(path, _checkpoint(1))

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    if fail == "write":
        monkeypatch.setattr(rec.safetensors.torch, "save", lambda *a, **k: b"x" * 10)
        monkeypatch.setattr(os, "fsync", boom)
    else:
        monkeypatch.setattr(os, fail, boom)
    with pytest.raises(HandgradError, match=rf"{rec.CHECKPOINT}: cannot write \(No space left"):
        rec.save_checkpoint(path, _checkpoint(2))
    monkeypatch.undo()
    ckpt = rec.load_checkpoint(path)
    assert ckpt.step == 1 and torch.equal(ckpt.model["0.weight"], torch.ones(2, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [rec.CHECKPOINT]  # no temp files left


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "not-handgrad"])
def test_a_damaged_checkpoint_is_named(tmp_path: Path, damage: str) -> None:
    path = tmp_path / rec.CHECKPOINT
    rec.save_checkpoint(path, _checkpoint(1))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 8 + data[8:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        safetensors.torch.save_file({"a": torch.zeros(1)}, path)
    with pytest.raises(HandgradError, match=rf"{rec.CHECKPOINT}: damaged"):
        rec.load_checkpoint(path)


def test_nan_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
) -> None:
    config = TrainConfig(
        model="784-32-10", optimizer="sgd", lr=1e4, batch_size=100, steps=40, eval_every=5
    )
    path = run_dir(tmp_path, "r")
    result = train(config, run_dir=path)
    assert result.status == "diverged"
    assert "at step" in result.message and "last good checkpoint is step" in result.message
    ckpt = rec.load_checkpoint(path / rec.CHECKPOINT)
    assert f"step {ckpt.step} in" in result.message
    assert all(torch.isfinite(t).all() for t in ckpt.model.values())
    assert ckpt.step < result.steps
    assert not (path / rec.MODEL).exists()


def test_early_stopping(tmp_path: Path) -> None:
    config = SMALL.replace(
        epochs=50, eval_every=1, patience=2, monitor="valid_loss", lr=0.05, dropout=0.0
    )
    result = train(config, run_dir=run_dir(tmp_path, "r"))
    assert result.status == "early_stopped"
    assert result.steps < result.plan.total_steps
    assert result.best is not None and result.best["monitor"] == "valid_loss"
    last = [r["valid_loss"] for r in result.records[-3:]]
    assert min(last[1:]) >= last[0] == result.best["value"]
    assert rec.load_checkpoint(tmp_path / "r" / rec.CHECKPOINT).step == result.steps


@pytest.mark.parametrize(
    "changes",
    [
        {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
        {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.01},
        {"optimizer": "adamw", "lr": 1e-3, "loss": "mse", "act": "tanh", "out_act": "tanh"},
        {"optimizer": "rmsprop", "lr": 1e-3, "loss": "sum_squared", "lr_per_sample": True},
    ],
    ids=["sgd", "adam", "adamw-mse", "rmsprop-sum"],
)
def test_autograd_engine_agrees_in_float64(changes: dict[str, object]) -> None:
    config = TrainConfig(
        model="784-16-10", dtype="float64", batch_size=50, steps=6, eval_every=3, valid=0
    ).replace(**changes)
    results: dict[str, RunResult] = {}
    for engine in ("handgrad", "autograd"):
        results[engine] = train(config.replace(engine=engine), handle_interrupt=False)
    hand, auto = results["handgrad"], results["autograd"]
    for a, b in zip(hand.records, auto.records, strict=True):
        for key in ("train_loss", "test_loss", "batch_loss"):
            if a[key] is not None:
                assert a[key] == pytest.approx(b[key], rel=1e-10, abs=1e-12), key
    hs, ats = hand.model.state_dict(), auto.model.state_dict()
    for key in hs:
        assert torch.allclose(hs[key], ats[key], rtol=1e-10, atol=1e-12), key


def test_handgrad_engine_never_touches_autograd(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("autograd was used")

    monkeypatch.setattr(torch.Tensor, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    monkeypatch.setattr(torch.autograd, "backward", forbidden)
    result = train(SMALL.replace(epochs=1, norm="layernorm"), handle_interrupt=False)
    assert result.status == "completed"
    assert result.records[-1]["train_loss"] < result.records[0]["train_loss"]


def test_records_describe_the_model_after_step_steps() -> None:
    result = train(SMALL.replace(epochs=1, dropout=0.0), handle_interrupt=False)
    steps = [r["step"] for r in result.records]
    assert steps == [0, 4, 8, 9]
    first = result.records[0]
    assert first["batch_loss"] is None and first["epoch"] == 0
    assert result.records[-1]["epoch"] == 1
    assert {"train_error", "valid_error", "test_error", "lr", "seconds"} <= first.keys()


def test_batch_transform_sees_every_batch_with_its_index(tmp_path: Path) -> None:
    seen: list[int] = []

    def flip_noise(
        xb: torch.Tensor, yb: torch.Tensor, index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(index)
        g = torch.Generator().manual_seed(1000 + index)
        return xb + 0.01 * torch.randn(xb.shape, generator=g), yb

    config = SMALL.replace(accumulate=2, batch_size=50, dropout=0.0)
    whole = train(config, run_dir=run_dir(tmp_path, "whole"), transform=flip_noise)
    assert seen == list(range(3 * 18))  # 18 batches per epoch, 3 epochs
    part_dir = run_dir(tmp_path, "part")
    train(config, run_dir=part_dir, transform=flip_noise, on_step=interrupt_at(11))
    train(config, run_dir=part_dir, resume=True, transform=flip_noise)
    assert without_seconds(rec.read_metrics(part_dir)) == without_seconds(whole.records)


def test_resume_refuses_a_checkpoint_that_does_not_fit(tmp_path: Path) -> None:
    config = SMALL.replace(epochs=1)
    path = run_dir(tmp_path, "r")
    train(config, run_dir=path, on_step=interrupt_at(3))
    with pytest.raises(HandgradError, match="another configuration"):
        train(config.replace(lr=0.5), run_dir=path, resume=True)
    ckpt = rec.load_checkpoint(path / rec.CHECKPOINT)
    del ckpt.model["0.bias"]
    rec.save_checkpoint(path / rec.CHECKPOINT, ckpt)
    with pytest.raises(HandgradError, match=r"checkpoint\.safetensors: damaged checkpoint, does"):
        train(config, run_dir=path, resume=True)
    assert len(rec.read_metrics(path)) == 1  # the records were left as they were


def test_threads_auto_measures_and_records_the_count(tmp_path: Path) -> None:
    import torch

    from handgrad.train.build import load_data
    from handgrad.train.threads import probe_threads

    config = TrainConfig(model="784-8-10", steps=2, eval_every=2, batch_size=50, threads="auto")
    torch.set_num_threads(2)  # the fixture restores the count after the test
    before = torch.get_num_threads()
    seconds = probe_threads(config, load_data(config), steps=2, repeats=1)
    assert set(seconds) == {1, 2} and all(s > 0 for s in seconds.values())
    assert torch.get_num_threads() == before
    result = train(config, run_dir=run_dir(tmp_path, "auto"))
    chosen = result.config.threads
    assert isinstance(chosen, int) and 1 <= chosen <= before
    saved = TrainConfig.load(tmp_path / "auto" / rec.CONFIG)
    assert saved.threads == chosen  # a resumed run reuses the recorded count
    assert torch.get_num_threads() == before  # restored


def test_a_run_restores_the_thread_count(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    seen: list[int] = []
    config = TrainConfig(model="784-8-10", steps=1, batch_size=50, threads=2)
    train(config, on_step=lambda _: seen.append(torch.get_num_threads()))
    assert seen == [2] and torch.get_num_threads() == before
