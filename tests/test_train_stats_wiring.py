"""Issue 17 wired into ``handgrad train``: per-layer statistics recorded by the loop (both
engines, bit for bit the run without them, truncated on resume), the divergence stop, the
doctor and report at the end, ``--input-scale``, ``--keep-best``, ``--find-lr``, ``--lr auto``."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
import torch

from handgrad.cli.main import main as cli_main
from handgrad.errors import HandgradError
from handgrad.train import layer_stats as ls
from handgrad.train import records as rec
from handgrad.train.build import load_data
from handgrad.train.config import TrainConfig
from handgrad.train.loop import train
from handgrad.train.lr_finder import LR_FINDER_JSON, LR_FINDER_PNG
from tests.train_fixtures import one_thread  # noqa: F401  (autouse)

CONFIG = TrainConfig(model="784-16-10", steps=20, eval_every=5, batch_size=100)


def figures(run: Path) -> list[dict[str, object]]:
    """The metrics records without their wall-clock seconds."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rec.read_metrics(run)]


def weights(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = rec.read_safetensors(path, "model")
    return tensors


def same_weights(a: Path, b: Path) -> bool:
    x, y = weights(a), weights(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def run_in(tmp_path: Path, name: str, config: TrainConfig, **kwargs: object) -> Path:
    path = tmp_path / name
    path.mkdir()
    train(config, run_dir=path, **kwargs)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize("engine", ["handgrad", "autograd"])
def test_statistics_change_nothing_the_run_computes(tmp_path: Path, engine: str) -> None:
    config = CONFIG.replace(engine=engine)
    on = run_in(tmp_path, "on", config)
    off = run_in(tmp_path, "off", config.replace(layer_stats=False))
    assert same_weights(on / rec.MODEL, off / rec.MODEL)
    assert figures(on) == figures(off)
    assert not (off / ls.LAYERS).exists()
    layers = ls.read_layers(on)
    steps = sorted({r["step"] for r in layers})
    assert steps == list(ls.stats_steps(20, 5)) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20]
    assert [r["layer"] for r in layers if r["step"] == 1] == ["0", "1", "2"]
    assert [r["type"] for r in layers if r["step"] == 1] == ["Linear", "ReLU", "Linear"]


def test_the_engines_record_the_same_statistics(tmp_path: Path) -> None:
    """The autograd engine's figures come from hooks on the torch twin; on the same run (in
    float64, so the two runs' weights stay equal to rounding) they equal handgrad's."""
    config = CONFIG.replace(dtype="float64", optimizer="sgd", lr=0.1, momentum=0.9)
    mine = ls.read_layers(run_in(tmp_path, "handgrad", config))
    theirs = ls.read_layers(run_in(tmp_path, "autograd", config.replace(engine="autograd")))
    assert len(mine) == len(theirs) == 36
    for a, b in zip(mine, theirs, strict=True):
        assert (a["step"], a["layer"], a["type"], a["samples"]) == (
            b["step"],
            b["layer"],
            b["type"],
            b["samples"],
        )
        for key in ("mean", "std", "grad_norm", "dead"):
            if a[key] is None:
                assert b[key] is None
            else:
                assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), (a["step"], key)
        assert sum(abs(x - y) for x, y in zip(a["hist"], b["hist"], strict=True)) <= 2
        assert a["params"].keys() == b["params"].keys()
        for name, p in a["params"].items():
            q = b["params"][name]
            for key in ("norm", "grad_norm", "update_ratio"):
                assert p[key] == pytest.approx(q[key], rel=1e-8), (a["step"], name, key)


def interrupted(path: Path, config: TrainConfig, at: int) -> Path:
    path.mkdir()

    def on_step(done: int) -> None:
        if done == at:
            signal.raise_signal(signal.SIGINT)

    assert train(config, run_dir=path, on_step=on_step).status == "interrupted"
    return path


def test_resume_truncates_layers_and_keeps_the_best_weights_exact(tmp_path: Path) -> None:
    config = CONFIG.replace(keep_best=True, steps=30, checkpoint_every=5)
    reference = run_in(tmp_path, "reference", config)
    run = interrupted(tmp_path / "run", config, 12)
    # What a crash after the checkpoint at step 12 leaves: layer records and a best file from
    # steps the resumed run will take again.
    ls.append_layers(run, [{**ls.read_layers(run)[0], "step": 14}])
    rec.save_model(run / rec.BEST, weights(reference / rec.MODEL), {"step": "25"})
    assert train(config, run_dir=run, resume=True).status == "completed"
    assert figures(run) == figures(reference)
    assert ls.read_layers(run) == ls.read_layers(reference)
    assert same_weights(run / rec.MODEL, reference / rec.MODEL)
    assert same_weights(run / rec.BEST, reference / rec.BEST)
    # The best weights are those of the step with the lowest validation error (first reached).
    records = rec.read_metrics(reference)[1:]
    best = min(records, key=lambda r: r["valid_error"])
    _, meta = rec.read_safetensors(reference / rec.BEST, "model")
    assert meta["step"] == str(best["step"])
    shorter = run_in(tmp_path, "shorter", config.replace(steps=best["step"], keep_best=False))
    assert same_weights(shorter / rec.MODEL, reference / rec.BEST)


def test_evaluate_and_predict_take_the_best_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_in(tmp_path, "run", CONFIG.replace(keep_best=True))
    assert cli_main(["evaluate", str(run), "--weights", "best"]) == 0
    assert "weights from best.safetensors" in capsys.readouterr().out
    assert cli_main(["predict", str(run), "--index", "0", "--weights", "best"]) == 0
    assert "test[0]: predicted" in capsys.readouterr().out
    plain = run_in(tmp_path, "plain", CONFIG)
    assert cli_main(["evaluate", str(plain), "--weights", "best"]) == 2
    assert "--keep-best" in capsys.readouterr().err
    with pytest.raises(ValueError, match="keep_best: the best weights need a validation"):
        CONFIG.replace(keep_best=True, valid=0).validate()


def test_a_blown_up_finite_loss_stops_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SGD at lr 10: a loss in the thousands (10x its step-0 value), finite, used to
    "complete"; now the run stops at that evaluation, exit 1, saying what to try."""
    code = cli_main(
        ["train", "--out", str(tmp_path), "--optimizer", "sgd", "--lr", "10", "--epochs", "5",
         "--quiet", "--no-plots", "--no-report"]
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "Lower the learning rate by 10x (--lr)" in err and "training stopped" in err
    (run,) = tmp_path.glob("run-*")
    records = rec.read_metrics(run)
    assert records[-1]["step"] < 75 and math.isfinite(records[-1]["train_loss"])
    assert records[-1]["train_loss"] > 10 * records[0]["train_loss"]
    assert not (run / rec.MODEL).exists()


def test_input_scale_scales_every_split_and_the_fingerprint() -> None:
    base = CONFIG.replace(valid=100)
    scaled = base.replace(input_scale=0.5)
    a, b = load_data(base), load_data(scaled)
    for x, y in ((a.x_train, b.x_train), (a.x_valid, b.x_valid), (a.x_test, b.x_test)):
        assert x is not None and y is not None and torch.equal(y, x * 0.5)
    assert torch.equal(a.y_train, b.y_train)
    assert scaled.fingerprint() != base.fingerprint()
    # Runs written before the field existed hash as before.
    assert base.fingerprint() == base.replace(input_scale=1.0).fingerprint()
    with pytest.raises(ValueError, match="input_scale"):
        base.replace(input_scale=0.0).validate()


def test_compare_and_resume_honour_input_scale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = CONFIG.replace(input_scale=0.25, steps=30)
    outputs = []
    for scale in (0.25, 1.0):
        path = tmp_path / f"config-{scale}.json"
        config.replace(input_scale=scale).save(path)
        args = ["compare", "--config", str(path), "--steps", "3", "--dtype", "float64"]
        assert cli_main([*args, "--out", str(tmp_path / "c"), "--no-plot", "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0]["ok"] and outputs[1]["ok"]
    assert outputs[0]["results"] != outputs[1]["results"]  # other inputs, other losses
    reference = run_in(tmp_path, "reference", config)
    run = interrupted(tmp_path / "run", config, 12)
    assert TrainConfig.load(run / rec.CONFIG).input_scale == 0.25
    assert train(config, run_dir=run, resume=True).status == "completed"
    assert same_weights(run / rec.MODEL, reference / rec.MODEL)
    with pytest.raises(HandgradError, match="another configuration"):
        train(config.replace(input_scale=1.0), run_dir=run, resume=True)


def test_find_lr_writes_its_records_and_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["train", "--find-lr", "--out", str(tmp_path), "--model", "784-16-10"]) == 0
    out = capsys.readouterr().out
    (run,) = tmp_path.glob("run-lr-finder-*")
    found = json.loads((run / LR_FINDER_JSON).read_text())
    assert (run / LR_FINDER_PNG).stat().st_size > 1000
    assert f"suggested lr {found['suggestion']:.3g}" in out
    assert 1e-6 < found["suggestion"] < 1 and len(found["lrs"]) == len(found["losses"]) >= 20
    assert not (run / rec.MODEL).exists() and not (run / rec.METRICS).exists()
    assert cli_main(["train", "--find-lr", "--resume", str(run)]) == 2


def test_lr_auto_trains_with_the_finders_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(
        ["train", "--lr", "auto", "--out", str(tmp_path), "--model", "784-16-10", "--steps",
         "10", "--quiet", "--no-plots", "--no-report"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    (run,) = tmp_path.glob("run-*")
    found = json.loads((run / LR_FINDER_JSON).read_text())
    config = TrainConfig.load(run / rec.CONFIG)
    assert config.lr == float(f"{found['suggestion']:.3g}")
    assert rec.read_metrics(run)[-1]["lr"] == config.lr
    assert "training with it" in out
    assert cli_main(["train", "--lr", "fast"]) == 2
    with pytest.raises(ValueError, match="lr: expected a number"):
        TrainConfig.from_dict({"lr": "fast"})


def test_train_ends_with_the_doctor_and_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("plotly")
    args = ["train", "--out", str(tmp_path), "--model", "784-16-10", "--steps", "10",
            "--quiet", "--no-plots"]  # fmt: skip
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    (run,) = tmp_path.glob("run-*")
    assert f"handgrad doctor {run}: no failure found" in out
    assert "report: report.html" in out and (run / "report.html").stat().st_size > 100_000

    from handgrad.train import report_page

    def no_plotly() -> None:
        raise HandgradError("the report needs plotly: pip install 'handgrad[report]'")

    monkeypatch.setattr(report_page, "_plotly", no_plotly)
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "report: not written (the report needs plotly" in out
