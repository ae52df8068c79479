"""prepare_resume: a run is checked in full before anything is touched; then its stale
temporaries go and metrics.jsonl is trimmed to the checkpoint; the resumed run is bit-exact."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from handgrad.errors import HandgradError
from handgrad.train import records as rec
from handgrad.train.build import build_model, load_data
from handgrad.train.config import TrainConfig
from handgrad.train.lock import RunLock
from handgrad.train.loop import train
from handgrad.train.resume import prepare_resume
from handgrad.train.steps import build_plan
from tests.train_fixtures import one_thread  # noqa: F401  (autouse)

CONFIG = TrainConfig(model="784-16-10", steps=20, eval_every=5, batch_size=100)


def interrupted_run(run: Path, at: int) -> Path:
    run.mkdir()

    def on_step(done: int) -> None:
        if done == at:
            signal.raise_signal(signal.SIGINT)

    assert train(CONFIG, run_dir=run, on_step=on_step).status == "interrupted"
    return run


def prepare(lock: RunLock) -> object:
    with torch.random.fork_rng(devices=[]):
        expected = build_model(CONFIG, seed=False).state_dict()
    return prepare_resume(
        lock,
        fingerprint=CONFIG.fingerprint(),
        plan=build_plan(CONFIG, load_data(CONFIG).n_train),
        expected_model=expected,
    )


def test_prepare_cleans_up_and_the_resumed_run_is_exact(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    train(CONFIG, run_dir=reference)
    run = interrupted_run(tmp_path / "run", 7)
    kept = (run / rec.METRICS).read_bytes()
    # What a SIGKILL can leave: a record past the checkpoint, half a line, a temporary.
    with open(run / rec.METRICS, "a") as f:
        f.write(json.dumps({"step": 10, "train_loss": 0.1}) + "\n" + '{"step": 1')
    stale = rec.temp_name(run / rec.CHECKPOINT)
    stale.write_bytes(b"\0" * 1000)
    with RunLock(run) as lock:
        point = prepare(lock)
    assert point.checkpoint.step == 7  # type: ignore[attr-defined]
    assert [r["step"] for r in point.records] == [0, 5]  # type: ignore[attr-defined]
    assert point.removed == [stale] and point.dropped == 1  # type: ignore[attr-defined]
    assert (run / rec.METRICS).read_bytes() == kept
    assert not stale.exists()
    assert train(CONFIG, run_dir=run, resume=True).status == "completed"

    def figures(r: Path) -> list[dict[str, object]]:  # all but the wall-clock seconds
        return [{k: v for k, v in x.items() if k != "seconds"} for x in rec.read_metrics(r)]

    assert figures(run) == figures(reference)
    got, _ = rec.read_safetensors(run / rec.MODEL, "model")
    want, _ = rec.read_safetensors(reference / rec.MODEL, "model")
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not [p for p in run.iterdir() if rec.is_own_temp(p.name)]


@pytest.mark.parametrize("step", [-5, 100000, 12])
def test_a_bad_checkpoint_changes_nothing(tmp_path: Path, step: int) -> None:
    run = interrupted_run(tmp_path / "run", 7)
    with open(run / rec.METRICS, "a") as f:
        f.write(json.dumps({"step": 10, "train_loss": 0.1}) + "\n")
    stale = rec.temp_name(run / rec.CHECKPOINT)
    stale.write_bytes(b"\0" * 1000)
    ckpt = rec.load_checkpoint(run / rec.CHECKPOINT)
    ckpt.step = step
    rec.save_checkpoint(run / rec.CHECKPOINT, ckpt)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with RunLock(run) as lock, pytest.raises(HandgradError) as info:
        prepare(lock)
    assert "\n" not in str(info.value) and f"checkpoint step {step}" in str(info.value)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_needs_the_lock(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not held"):
        prepare(RunLock(tmp_path))
