"""The LR finder on toy problems whose good learning rates are known."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from handgrad import nn, optim
from handgrad.train.lr_finder import find_lr, lr_at, plot_lr_finder, suggest
from tests.train_fixtures import one_thread  # noqa: F401


def _regression(
    n: int = 256, d: int = 10
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], nn.Linear]:
    """y = x·w, x ~ N(0, I): the mean squared loss has Hessian ≈ 2I, so plain SGD converges
    for lr < 1 (fastest near 0.5) and diverges beyond."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ torch.randn(d, 1, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Linear(d, 1, dtype=torch.float64)
    return [(x[i : i + 64], y[i : i + 64]) for i in range(0, n, 64)], model


def _train(model: nn.Module, loss: nn.Module, lr: float, batches, steps: int = 40) -> float:
    opt = optim.SGD(model.parameters(), lr=lr)
    with torch.no_grad():
        for i in range(steps):
            xb, yb = batches[i % len(batches)]
            opt.zero_grad()
            loss(model(xb), yb)
            model.backward(loss.backward())
            opt.step()
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        with nn.no_saved_state():  # a forward that needs no backward
            return float(loss(model(x), y))


def test_schedule_is_exponential() -> None:
    assert lr_at(0, 5, 1e-4, 1.0) == 1e-4
    assert lr_at(4, 5, 1e-4, 1.0) == pytest.approx(1.0)
    assert lr_at(2, 5, 1e-4, 1.0) == pytest.approx(1e-2)


def test_suggestion_on_least_squares_is_sensible_and_weights_restored() -> None:
    batches, model = _regression()
    loss = nn.MSELoss()
    opt = optim.SGD(model.parameters(), lr=0.123)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = find_lr(model, loss, opt, batches, start=1e-5, end=100.0, steps=80)
    assert result.stopped == "diverged"  # lr > 1 blows the loss up
    assert result.rule == "steepest"
    assert 1e-2 <= result.suggestion <= 1.0
    assert opt.lr == 0.123
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the suggestion trains well; a 100x smaller rate barely does
    with nn.no_saved_state():
        start = float(loss(model(batches[0][0]), batches[0][1]))
    good = _train(model, loss, result.suggestion, batches)
    model.load_state_dict(before)
    slow = _train(model, loss, result.suggestion / 100, batches)
    assert good < 1e-3 * start and slow > 10 * good


def test_suggestion_for_adam_on_a_small_classifier(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    centers = torch.randn(4, 20, generator=g) * 3
    labels = torch.randint(0, 4, (512,), generator=g)
    x = centers[labels] + torch.randn(512, 20, generator=g)
    torch.manual_seed(0)
    model = nn.mlp("20-32-4", "relu")
    opt = optim.Adam(model.parameters(), lr=1e-3)
    batches = [(x[i : i + 64], labels[i : i + 64]) for i in range(0, 512, 64)]
    result = find_lr(model, nn.CrossEntropyLoss(), opt, batches, steps=100)
    assert 1e-4 <= result.suggestion <= 0.3
    # 40 Adam steps at the suggestion classify the blobs
    opt = optim.Adam(model.parameters(), lr=result.suggestion)
    loss = nn.CrossEntropyLoss()
    with torch.no_grad():
        for i in range(40):
            xb, yb = batches[i % len(batches)]
            opt.zero_grad()
            loss(model(xb), yb)
            model.backward(loss.backward())
            opt.step()
        accuracy = float((model(x).argmax(1) == labels).double().mean())
    assert accuracy > 0.95
    assert math.isfinite(result.smoothed[0]) and len(result.lrs) == len(result.losses)
    png = plot_lr_finder(result, tmp_path / "lr.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert result.to_json()["suggestion"] == result.suggestion


def test_flat_loss_falls_back_to_min_over_10() -> None:
    lrs = [1e-3, 1e-2, 1e-1, 1.0]
    assert suggest(lrs, [1.0, 1.0, 1.0, 2.0]) == (1e-4, "min_over_10", None, 1e-4)
    lr, rule, _, _ = suggest(lrs, [1.0, 0.5, 0.45, 2.0])  # steepest between 1e-3 and 1e-2
    assert rule == "steepest" and lr == pytest.approx(math.sqrt(1e-3 * 1e-2))
    with pytest.raises(ValueError, match="no finite loss"):
        suggest(lrs, [math.nan] * 4)
    with pytest.raises(ValueError, match="start < end"):
        find_lr(None, None, None, [], start=1.0, end=0.1)
