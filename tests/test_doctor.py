"""``handgrad doctor``: on hand-written records of known causes, and on real short runs made
through ``handgrad train`` (their layers.jsonl written by the run's own loop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handgrad.cli.main import main as cli_main
from handgrad.train import doctor
from handgrad.train import layer_stats as ls
from handgrad.train import records as rec
from tests.doctor_runs import cli_run
from tests.train_fixtures import one_thread  # noqa: F401

CONFIG = {"model": "784-128-10", "act": "relu", "out_act": "none", "loss": "cross_entropy"}


def _write(run: Path, metrics: list[dict], config: dict | None = None, layers=None) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(config or CONFIG))
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if layers is not None:
        ls.append_layers(run, layers)
    return run


def _m(step: int, loss: float | None, err: float, valid: float | None = None) -> dict:
    return {
        "step": step,
        "batch_loss": None if step == 0 else loss,
        "train_loss": loss,
        "train_error": err,
        "valid_loss": valid,
    }


def kinds(d: doctor.Diagnosis) -> list[str]:
    return [f.kind for f in d.findings]


# -- hand-written records -------------------------------------------------------------------
def test_healthy_records_pass_and_say_what_was_not_judged(tmp_path: Path) -> None:
    run = _write(tmp_path / "r", [_m(s, 2.3 / (1 + s), 0.9 / (1 + s)) for s in range(6)])
    d = doctor.diagnose(run)
    assert d.ok and d.findings == []
    assert any("no layers.jsonl" in n for n in d.not_judged)
    assert d.to_json()["ok"] is True


def test_nan_loss_is_diverged(tmp_path: Path) -> None:
    run = _write(tmp_path / "r", [_m(0, 2.3, 0.9), _m(10, 1.0, 0.5), _m(20, None, 0.9)])
    d = doctor.diagnose(run)
    assert not d.ok and kinds(d)[0] == "diverged"
    assert d.findings[0].step == 20 and "not finite" in d.findings[0].message
    assert any("fewer than the 5" in n for n in d.not_judged)


def test_divergence_for_the_loop_to_stop_on() -> None:
    ok = [_m(0, 2.3, 0.9), _m(10, 1.5, 0.5)]
    assert doctor.divergence(ok) is None and doctor.divergence([]) is None
    found = doctor.divergence([*ok, _m(20, 1.5e13, 0.9)])
    assert found is not None and found.kind == "diverged" and found.step == 20


def test_overfitting_is_advice(tmp_path: Path) -> None:
    losses = [2.0, 1.0, 0.5, 0.3, 0.2, 0.1]
    valid = [2.0, 1.1, 0.8, 0.9, 1.0, 1.2]
    ms = [
        _m(s, loss, 0.4 - 0.05 * s, v)
        for s, (loss, v) in enumerate(zip(losses, valid, strict=True))
    ]
    d = doctor.diagnose(_write(tmp_path / "r", ms))
    assert kinds(d) == ["overfitting"] and d.ok
    assert d.findings[0].step == 2 and d.findings[0].value == pytest.approx(1.5)


def test_targets_out_of_range_under_tanh(tmp_path: Path) -> None:
    config = {**CONFIG, "out_act": "tanh", "loss": "mse", "targets": "onehot"}
    ms = [_m(s, 1.0 / (1 + s), 0.5 / (1 + s)) for s in range(3)]
    d = doctor.diagnose(_write(tmp_path / "a", ms, {**config, "target_scale": 1.0}))
    assert kinds(d) == ["targets_out_of_range"] and d.findings[0].layer == "3 (Tanh)"
    assert "--target-scale 0.9" in d.findings[0].message
    assert doctor.diagnose(_write(tmp_path / "b", ms, {**config, "target_scale": 0.9})).ok


def test_lifted_plateau_is_advice_a_flat_end_is_stalled(tmp_path: Path) -> None:
    flat = [_m(s, 900.0 - s * 0.01, 0.883) for s in range(8)]
    lifted = [*flat, _m(8, 700.0, 0.6), _m(9, 500.0, 0.3)]
    d = doctor.diagnose(_write(tmp_path / "a", lifted, {**CONFIG, "init_std": 1e-6}))
    (f,) = d.findings
    assert (f.kind, f.step, f.until, d.ok) == ("plateau", 0, 7, True)
    assert "N(0, 1e-06)" in f.message
    d = doctor.diagnose(_write(tmp_path / "b", flat))
    assert "stalled" in kinds(d) and not d.ok


def test_dead_units_need_a_batch_of_32(tmp_path: Path) -> None:
    def layer(step: int, samples: int) -> dict:
        return {"step": step, "layer": "1", "type": "ReLU", "samples": samples, "dead": 0.75}

    ms = [_m(s, 2.0 - 0.2 * s, 0.5 - 0.05 * s) for s in range(3)]
    d = doctor.diagnose(_write(tmp_path / "a", ms, layers=[layer(1, 64), layer(2, 64)]))
    assert kinds(d) == ["dead_units"] and d.findings[0].layer == "1 (ReLU)"
    assert d.findings[0].step == 1 and d.findings[0].value == 0.75
    d = doctor.diagnose(_write(tmp_path / "b", ms, layers=[layer(1, 1), layer(2, 1)]))
    assert d.ok and any("fewer than 32" in n for n in d.not_judged)


def test_html_table(tmp_path: Path) -> None:
    run = _write(tmp_path / "r", [_m(0, 2.3, 0.9), _m(10, None, 0.9)])
    page = doctor.diagnose(run)._repr_html_()
    assert "<table" in page and "<code>diverged</code>" in page and "failure" in page


# -- the command ----------------------------------------------------------------------------
def test_cli_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path / "good", [_m(s, 2.3 / (1 + s), 0.9 / (1 + s)) for s in range(4)])
    bad = _write(tmp_path / "bad", [_m(0, 2.3, 0.9), _m(10, None, 0.9)])
    assert cli_main(["doctor", str(good)]) == 0
    assert "no failure found" in capsys.readouterr().out
    assert cli_main(["doctor", str(bad), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    assert {"kind", "layer", "step", "value", "message"} <= out["findings"][0].keys()
    assert cli_main(["doctor", str(tmp_path / "nowhere")]) == 2
    assert "no such run" in capsys.readouterr().err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{")
    assert cli_main(["doctor", str(tmp_path / "broken")]) == 2
    assert "cannot be read as JSON" in capsys.readouterr().err


# -- real runs with known causes --------------------------------------------------------------
def _real(tmp_path: Path, *args: str) -> doctor.Diagnosis:
    run = cli_run(tmp_path / "runs", *args)
    assert (run / ls.LAYERS).exists()
    return doctor.diagnose(run)


def _only(d: doctor.Diagnosis, kind: str) -> doctor.Finding:
    (f,) = [f for f in d.findings if f.kind == kind]
    return f


def test_real_default_run_passes(tmp_path: Path) -> None:
    """The README's own first run, as it is (20 epochs)."""
    d = _real(tmp_path)
    assert d.ok, d.text()
    assert [f for f in d.findings if f.failure] == []


def test_real_saturated_tanh_from_large_init(tmp_path: Path) -> None:
    d = _real(tmp_path, "--act", "tanh", "--init", "normal", "--init-std", "1", "--epochs", "5")
    f = _only(d, "saturated_units")
    assert f.layer == "1 (Tanh)" and f.value is not None and f.value > 0.5 and not d.ok


def test_real_half_dead_relu_from_large_biases(tmp_path: Path) -> None:
    d = _real(tmp_path, "--bias-std", "10", "--epochs", "5")
    f = _only(d, "dead_units")
    assert f.layer == "1 (ReLU)" and f.value is not None and 0.3 < f.value < 0.8


def test_real_lr_1e7_is_too_small(tmp_path: Path) -> None:
    d = _real(tmp_path, "--lr", "1e-7", "--epochs", "5")
    f = _only(d, "lr_too_small")
    assert f.value is not None and f.value < 1e-5
    assert "stalled" in kinds(d) and "lr_too_large" not in kinds(d)


def test_real_diverging_sgd(tmp_path: Path) -> None:
    d = _real(tmp_path, "--optimizer", "sgd", "--lr", "10", "--epochs", "5")
    assert kinds(d)[:2] == ["diverged", "lr_too_large"]
    (run,) = (tmp_path / "runs").glob("run-*")
    assert rec.read_metrics(run)[-1]["step"] == _only(d, "diverged").step  # stopped there
    assert _only(d, "dead_units").layer == "1 (ReLU)"
    assert "lr_too_small" not in kinds(d)


@pytest.mark.slow
def test_real_fleuret_practical3_on_and_after_its_plateau(tmp_path: Path) -> None:
    """Seed 003's setting (targets 0/1 under tanh, N(0, 1e-6) weights, eta = 0.1 / N, one step
    per pass): on its plateau after 15 passes the doctor says stalled and names the vanishing
    gradient; after 60 passes, the plateau has lifted and it is advice with its steps. The
    full-batch step is the per-sample accumulated step of the recipe (the same sum)."""
    common = ("--recipe", "fleuret-practical3", "--target-scale", "1")
    fast = ("--batch-size", "full", "--accumulate", "1")
    on = _real(tmp_path / "on", *common, *fast, "--epochs", "15")
    assert {"targets_out_of_range", "stalled", "vanishing_gradients"} <= set(kinds(on))
    assert "plateau" not in kinds(on) and "lr_too_large" not in kinds(on)
    assert _only(on, "vanishing_gradients").layer == "0 (Linear)"
    assert "gradient reaching the first layer" in _only(on, "stalled").message
    after = _real(tmp_path / "after", *common, *fast, "--epochs", "60")
    plateau = _only(after, "plateau")
    assert plateau.until is not None and 15 <= plateau.until <= 35
    assert plateau.value == pytest.approx(0.883)
    assert "stalled" not in kinds(after) and "vanishing_gradients" not in kinds(after)


def test_real_shortened_accuracy_recipes_pass(tmp_path: Path) -> None:
    d = _real(tmp_path / "a", "--recipe", "ninja-adamw", "--steps", "40", "--eval-every", "10")
    assert d.ok, d.text()
    run = cli_run(tmp_path / "b", "--recipe", "subset-best", "--epochs", "2")  # augmented
    d = doctor.diagnose(run)
    assert d.ok, d.text()
    assert (run / ls.LAYERS).exists()  # augmented batches are measured too


@pytest.mark.slow
def test_seed003_as_written_on_and_after_its_plateau(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--recipe fleuret-practical3 --target-scale 1 --input-scale 0.9``: seed 003 as its
    notebook was written. It prints the notebook's log (1000.00, 963.68, 940.46, ... 899.43 at
    pass 13); after 25 passes it is on the plateau (stalled); after 30 and after 200 the
    plateau of passes 1-26 has lifted (advice). The full-batch step is the recipe's
    per-sample accumulated step (the same sum; the figures agree to the printed digits)."""
    common = ("--recipe", "fleuret-practical3", "--target-scale", "1", "--input-scale", "0.9")
    fast = ("--batch-size", "full", "--accumulate", "1")
    on = _real(tmp_path / "on", *common, *fast, "--epochs", "25")
    assert {"targets_out_of_range", "stalled"} <= set(kinds(on)), on.text()
    assert "plateau" not in kinds(on) and not on.ok
    assert "gradient reaching the first layer" in _only(on, "stalled").message
    assert _only(on, "targets_out_of_range").layer == "3 (Tanh)"
    # At 30 passes the error has begun to fall (82.0% at pass 27): the plateau has lifted.
    lifting = _real(tmp_path / "lifting", *common, *fast, "--epochs", "30")
    assert (_only(lifting, "plateau").step, _only(lifting, "plateau").until) == (1, 26)
    assert "stalled" not in kinds(lifting)
    capsys.readouterr()
    out = tmp_path / "after"
    args = ["train", *common, *fast, "--epochs", "200", "--out", str(out), "--no-plots"]
    assert cli_main([*args, "--no-report"]) == 0  # completed (its findings are printed)
    (run,) = out.glob("fleuret-practical3-*")
    log = [line for line in capsys.readouterr().out.splitlines() if "acc_train_loss" in line]
    assert log[0].startswith("0 acc_train_loss 1000.00")
    assert log[1] == "1 acc_train_loss 963.68 acc_train_error 88.30% test_error 90.10%"
    assert log[2].startswith("2 acc_train_loss 940.46")
    assert log[13] == "13 acc_train_loss 899.43 acc_train_error 88.30% test_error 90.10%"
    assert all("acc_train_error 88.30%" in line for line in log[1:27])
    d = doctor.diagnose(run)
    plateau = _only(d, "plateau")
    assert (plateau.step, plateau.until) == (1, 26)
    assert "N(0, 1e-06)" in plateau.message
    assert "stalled" not in kinds(d)
    assert _only(d, "targets_out_of_range").layer == "3 (Tanh)"
    assert rec.read_metrics(run)[-1]["train_error"] < 0.2
    assert cli_main(["doctor", str(run)]) == 1


def test_real_long_run_overfits_as_advice(tmp_path: Path) -> None:
    """The default model trained 3x longer than the default: validation loss rises, training
    loss falls; advice, not failure (no layers.jsonl: the doctor says what it did not judge)."""
    run = cli_run(tmp_path, "--epochs", "60", "--no-layer-stats")
    d = doctor.diagnose(run)
    assert d.not_judged and "no layers.jsonl" in d.not_judged[0]
    f = _only(d, "overfitting")
    assert d.ok and f.value is not None and f.value > 1.1
    records = {r["step"]: r for r in rec.read_metrics(run)}
    best = min(r["valid_loss"] for r in records.values())
    assert records[f.step]["valid_loss"] == best
    assert cli_main(["doctor", str(run)]) == 0
