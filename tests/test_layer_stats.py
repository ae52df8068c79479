"""Per-layer statistics: the figures' definitions, the probe's equality with Sequential, the
torch twin's hooks measuring the same, and layers.jsonl."""

from __future__ import annotations

import json
import math

import pytest
import torch

from handgrad import nn, optim
from handgrad.errors import HandgradError
from handgrad.reference import to_torch
from handgrad.train import layer_stats as ls
from tests.train_fixtures import one_thread  # noqa: F401


def _model(act: str = "relu", dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.mlp("20-16-12-5", act, out_act="tanh", dtype=dtype)


def test_dead_counts_units_zero_on_every_sample() -> None:
    y = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    # unit 0 and unit 3 are zero for all three samples; units 1 and 2 fire at least once
    assert ls.dead_fraction(y, "ReLU") == 0.5
    assert ls.dead_fraction(y, "Tanh") is None


def test_saturation_thresholds() -> None:
    y = torch.tensor([[0.995, -0.999, 0.5], [0.999, 0.2, 0.98]])
    units, values = ls.saturation(y, "Tanh")  # type: ignore[misc]
    assert units == pytest.approx(1 / 3)  # only unit 0 is beyond 0.99 on >= 90% of samples
    assert values == pytest.approx(3 / 6)
    s = torch.tensor([[0.005, 0.5], [0.995, 0.5]])
    assert ls.saturation(s, "Sigmoid") == (0.5, 0.5)
    assert ls.saturation(s, "ReLU") is None


def test_histogram_bins_and_outside_counts() -> None:
    y = torch.tensor([-1.0, -0.99, 0.0, 0.999, 1.0, 1.5, -2.0, float("nan")])
    counts, below, above = ls.histogram(y, "Tanh")
    assert len(counts) == ls.HIST_BINS
    assert (below, above) == (1, 1)
    assert sum(counts) == 5
    assert counts[0] == 2 and counts[20] == 1 and counts[-1] == 2


def test_update_ratio_is_the_step_taken() -> None:
    w0 = torch.ones(4, 4)
    w1 = w0 - 0.01 * torch.ones(4, 4)
    r = ls.layer_figures(
        step=1,
        name="0",
        kind="Linear",
        output=torch.zeros(2, 4),
        grad_output=None,
        params={"weight": w1},
        grads={"weight": None},
        before={"weight": w0},
    )
    assert r["params"]["weight"]["update_ratio"] == pytest.approx(0.01)
    assert r["params"]["weight"]["grad_norm"] is None
    assert r["grad_norm"] is None


def test_probe_equals_sequential_forward_backward() -> None:
    """A step through the probe is bit for bit the step Sequential would take."""
    x = torch.randn(8, 20, dtype=torch.float64)
    y = torch.randn(8, 5, dtype=torch.float64)
    a, b = _model(), _model()
    loss_a, loss_b = nn.MSELoss(), nn.MSELoss()
    opt_a = optim.SGD(a.parameters(), lr=0.1)
    opt_b = optim.SGD(b.parameters(), lr=0.1)
    probe = ls.SequentialProbe(a)
    value, records = ls.probe_step(probe, loss_a, opt_a, [(x, y)], step=1)
    out = b(x)
    assert value == pytest.approx(float(loss_b(out, y)), rel=0, abs=0)
    b.backward(loss_b.backward())
    opt_b.step()
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert [r["layer"] for r in records] == [n for n, _ in a.named_children()]
    assert [r["type"] for r in records] == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "Tanh"]


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # the first Linear's input
def test_statistics_equal_what_torch_hooks_measure() -> None:
    """The issue's test: the handgrad probe and forward/full-backward hooks on the torch twin
    give the same figures for the same model, batch and optimizer step."""
    torch.manual_seed(1)
    x = torch.randn(64, 20, dtype=torch.float64)
    labels = torch.randint(0, 5, (64,))
    model = _model()
    with torch.no_grad():
        model[2].bias.add_(-0.3)  # make a few units of layer 3 dead, so "dead" is tested
    twin = to_torch(model)

    loss = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    probe = ls.SequentialProbe(model)
    # two micro-batches accumulated into one step, as the Fleuret recipe does
    _, ours = ls.probe_step(probe, loss, opt, [(x[:32], labels[:32]), (x[32:], labels[32:])], 1)

    torch_opt = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
    with ls.TorchProbe(twin) as hooks:
        torch_loss = torch.nn.CrossEntropyLoss()
        for part in (slice(0, 32), slice(32, 64)):
            torch_loss(twin(x[part]), labels[part]).backward()
        before = hooks.snapshot()
        torch_opt.step()
        theirs = hooks.records(1, before)

    assert len(ours) == len(theirs) == 6
    assert any(r["dead"] for r in ours if r["type"] == "ReLU")
    for a, b in zip(ours, theirs, strict=True):
        assert (a["layer"], a["type"], a["samples"]) == (b["layer"], b["type"], b["samples"])
        for key in ("mean", "std", "grad_norm", "dead", "saturated", "saturated_values"):
            if a[key] is None:
                assert b[key] is None, (a["layer"], key)
            else:
                assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), (a["layer"], key)
        assert sum(abs(i - j) for i, j in zip(a["hist"], b["hist"], strict=True)) <= 1
        assert a["params"].keys() == b["params"].keys()
        for pname, fa in a["params"].items():
            fb = b["params"][pname]
            for key in ("norm", "grad_norm", "update_ratio"):
                assert fa[key] == pytest.approx(fb[key], rel=1e-9), (a["layer"], pname, key)
            assert 0 < fa["update_ratio"] < 1


def test_layers_jsonl_round_trip_and_partial_line(tmp_path) -> None:
    model = _model("tanh", torch.float32)
    probe = ls.SequentialProbe(model)
    x, y = torch.randn(16, 20), torch.randn(16, 5)
    loss = nn.MSELoss()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    _, records = ls.probe_step(probe, loss, opt, [(x, y)], step=3)
    ls.append_layers(tmp_path, records)
    with open(tmp_path / ls.LAYERS, "a") as f:
        f.write('{"step": 4, "lay')  # a crash mid-write
    back = ls.read_layers(tmp_path)
    assert back == json.loads(json.dumps(records))
    ls.truncate_layers(tmp_path, 3)  # a resume from the step-3 checkpoint drops the partial line
    ls.append_layers(tmp_path, [{**r, "step": 4} for r in records])
    assert len(ls.read_layers(tmp_path)) == 2 * len(records)
    ls.truncate_layers(tmp_path, 3)
    assert ls.read_layers(tmp_path) == back
    groups = ls.by_layer(back)
    assert list(groups) == ["0", "1", "2", "3", "4", "5"]
    assert ls.label(back[1]) == "1 (Tanh)"
    (tmp_path / ls.LAYERS).write_text('{"step": 1}\n{"step": 2, "layer": "0", "type": "x"}\n')
    with pytest.raises(HandgradError, match="line 1 is not a layer record"):
        ls.read_layers(tmp_path)
    assert ls.read_layers(tmp_path / "nowhere") == []


def test_stats_steps_are_dense_at_first() -> None:
    steps = list(ls.stats_steps(100, 25, first=5))
    assert steps == [1, 2, 3, 4, 5, 8, 16, 25, 50, 75, 100]


def test_nonfinite_figures_are_null() -> None:
    r = ls.layer_figures(
        step=1,
        name="0",
        kind="Linear",
        output=torch.tensor([[math.inf, 1.0]]),
        grad_output=torch.tensor([[math.nan, 0.0]]),
        params={},
        grads={},
    )
    assert r["mean"] is None and r["grad_norm"] is None
    json.dumps(r, allow_nan=False)
