"""Learning-rate schedules, side by side with torch.optim.lr_scheduler where torch has one."""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

from handgrad.optim import (
    SCHEDULES,
    SGD,
    Constant,
    Cosine,
    OneCycle,
    PiecewiseConstant,
    Schedule,
    StepLR,
    make_schedule,
)


def torch_lrs(make: Callable[[torch.optim.Optimizer], Any], lr: float, steps: int) -> list[float]:
    """The learning rate torch's scheduler gives each of ``steps`` optimizer steps."""
    param = torch.zeros(1)
    param.grad = torch.zeros(1)
    opt = torch.optim.SGD([param], lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's and the step-order warnings
        scheduler = make(opt)
        lrs = []
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            scheduler.step()
    return lrs


@pytest.mark.parametrize(("step_size", "gamma"), [(1, 0.9), (7, 0.5), (30, 0.1), (25, 1.5)])
def test_step_lr_equals_torch_bit_for_bit(step_size: int, gamma: float) -> None:
    ours = StepLR(lr=0.3, step_size=step_size, gamma=gamma)
    expected = torch_lrs(
        lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma),
        lr=0.3,
        steps=200,
    )
    assert [ours.lr_at(s) for s in range(200)] == expected


ONECYCLE_CASES = [
    {"total_steps": 100},
    {"total_steps": 1000, "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0},
    {"total_steps": 37, "anneal": "linear"},
    {"total_steps": 120, "three_phase": True},
    {"total_steps": 99, "pct_start": 0.4, "three_phase": True, "anneal": "linear"},
]


@pytest.mark.parametrize("options", ONECYCLE_CASES)
def test_one_cycle_equals_torch_bit_for_bit(options: dict[str, Any]) -> None:
    ours = OneCycle(max_lr=0.05, **options)
    total = options["total_steps"]
    torch_options = {("anneal_strategy" if k == "anneal" else k): v for k, v in options.items()}
    expected = torch_lrs(
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=0.05, cycle_momentum=False, **torch_options
        ),
        lr=0.05,
        steps=total,
    )
    assert [ours.lr_at(s) for s in range(total)] == expected
    assert max(expected) == pytest.approx(0.05, rel=0.05)


@pytest.mark.parametrize(
    ("total", "warmup", "min_lr"), [(100, 0, 0.0), (300, 0, 1e-4), (200, 20, 0.0), (50, 5, 1e-3)]
)
def test_cosine_equals_torch_linear_warmup_then_cosine_annealing(
    total: int, warmup: int, min_lr: float
) -> None:
    ours = Cosine(lr=0.1, total_steps=total, warmup_steps=warmup, min_lr=min_lr)
    sched = torch.optim.lr_scheduler

    def make(opt: torch.optim.Optimizer) -> Any:
        cosine = sched.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=min_lr)
        if warmup == 0:
            return cosine
        ramp = sched.LinearLR(opt, start_factor=1 / warmup, total_iters=warmup - 1)
        return sched.SequentialLR(opt, [ramp, cosine], milestones=[warmup])

    expected = torch_lrs(make, lr=0.1, steps=total)
    # torch computes these recursively, so only the last bits may differ.
    assert [ours.lr_at(s) for s in range(total)] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cosine_shape() -> None:
    schedule = Cosine(lr=1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    assert schedule.lr_at(0) == pytest.approx(0.1)  # lr / W: no step is wasted on lr = 0
    assert schedule.lr_at(4) == pytest.approx(0.5)
    assert schedule.lr_at(9) == 1.0
    assert schedule.lr_at(10) == 1.0
    assert schedule.lr_at(60) == pytest.approx(0.55)  # half way down the cosine
    assert schedule.lr_at(110) == schedule.lr_at(10_000) == 0.1
    lrs = [schedule.lr_at(s) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    assert Cosine(lr=0.5, total_steps=10, warmup_steps=1).lr_at(0) == 0.5


def test_ninja_schedule_is_the_notebooks() -> None:
    num_samples = 1000
    schedule = PiecewiseConstant.ninja(num_samples)
    for step in [0, 1, 2500, 4999, 5000, 5001, 9999, 50_000]:
        notebook = 0.1 / num_samples if step < 5000 else 0.01 / num_samples
        assert schedule.lr_at(step) == notebook
    assert make_schedule("ninja", n_samples=num_samples) == schedule


def test_piecewise_constant() -> None:
    schedule = PiecewiseConstant(boundaries=(10, 20), values=(3.0, 2.0, 1.0))
    assert [schedule.lr_at(s) for s in (0, 9, 10, 19, 20, 1000)] == [3.0, 3.0, 2.0, 2.0, 1.0, 1.0]
    from_lists = PiecewiseConstant(boundaries=[10, 20], values=[3.0, 2.0, 1.0])  # type: ignore[arg-type]
    assert from_lists == schedule and hash(from_lists) == hash(schedule)


def test_constant() -> None:
    assert [Constant(0.01).lr_at(s) for s in (0, 1, 10**6)] == [0.01] * 3


def test_apply_sets_the_optimizer_lr_and_returns_it() -> None:
    param = torch.zeros(3)
    param.grad = torch.ones(3)
    opt = SGD([param], lr=1.0)
    schedule = StepLR(lr=0.5, step_size=2, gamma=0.1)
    seen = []
    for step in range(4):
        seen.append(schedule.apply(opt, step))
        assert opt.lr == seen[-1]
        opt.step()
    assert seen == [0.5, 0.5, 0.5 * 0.1, 0.5 * 0.1]
    assert torch.allclose(param, torch.full((3,), -1.1))


SCHEDULE_EXAMPLES: dict[str, tuple[Schedule, dict[str, Any]]] = {
    "constant": (Constant(0.1), {"lr": 0.1}),
    "step": (StepLR(0.1, 10, 0.5), {"lr": 0.1, "step_size": 10, "gamma": 0.5}),
    "cosine": (
        Cosine(0.1, 100, 10, 0.01),
        {"lr": 0.1, "total_steps": 100, "warmup_steps": 10, "min_lr": 0.01},
    ),
    "onecycle": (OneCycle(0.1, 100), {"max_lr": 0.1, "total_steps": 100}),
    "piecewise": (PiecewiseConstant((5,), (0.2, 0.1)), {"boundaries": [5], "values": [0.2, 0.1]}),
    "ninja": (PiecewiseConstant.ninja(60_000), {"n_samples": 60_000}),
}


@pytest.mark.parametrize("name", sorted(SCHEDULE_EXAMPLES))
def test_make_schedule_by_name_and_config_round_trip(name: str) -> None:
    expected, kwargs = SCHEDULE_EXAMPLES[name]
    schedule = make_schedule(name, **kwargs)
    assert schedule == expected
    # The dataclass fields are the configuration: rebuilding from them gives the same schedule.
    config = dataclasses.asdict(schedule)  # type: ignore[call-overload]
    assert type(schedule)(**config) == schedule


def test_registry_names_and_errors() -> None:
    assert set(SCHEDULES) == {"constant", "step", "cosine", "onecycle", "piecewise", "ninja"}
    with pytest.raises(ValueError, match="unknown schedule 'cosin'; did you mean 'cosine'"):
        make_schedule("cosin", lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="schedule 'step': unknown option 'gama'"):
        make_schedule("step", lr=0.1, step_size=10, gama=0.5)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Constant(0.0), "Constant: lr must be > 0, got 0.0"),
        (lambda: StepLR(0.1, 0), "StepLR: step_size must be >= 1, got 0"),
        (lambda: StepLR(0.1, 10, gamma=-0.5), "StepLR: gamma must be > 0, got -0.5"),
        (lambda: Cosine(-0.1, 100), "Cosine: lr must be > 0, got -0.1"),
        (lambda: Cosine(0.1, 0), "Cosine: total_steps must be >= 1, got 0"),
        (lambda: Cosine(0.1, 100, -1), "Cosine: warmup_steps must be >= 0, got -1"),
        (
            lambda: Cosine(0.1, 100, 100),
            "Cosine: warmup_steps must be < total_steps = 100, got 100",
        ),
        (lambda: Cosine(0.1, 100, min_lr=0.2), "Cosine: min_lr must be >= 0 and <= 0.1, got 0.2"),
        (lambda: OneCycle(0.0, 100), "OneCycle: max_lr must be > 0, got 0.0"),
        (
            lambda: OneCycle(0.1, 100, pct_start=1.5),
            "OneCycle: pct_start must be >= 0 and <= 1, got 1.5",
        ),
        (lambda: OneCycle(0.1, 100, div_factor=0), "OneCycle: div_factor must be > 0, got 0"),
        (
            lambda: OneCycle(0.1, 100, anneal="exp"),  # type: ignore[arg-type]
            "OneCycle: anneal must be 'cos' or 'linear', got 'exp'",
        ),
        (lambda: OneCycle(0.1, 3), "OneCycle: every phase needs at least one step"),
        (lambda: OneCycle(0.1, 10, pct_start=0.6, three_phase=True), "OneCycle: every phase needs"),
        (
            lambda: PiecewiseConstant((10, 5), (1.0, 2.0, 3.0)),
            "PiecewiseConstant: boundaries[1] must be >= 11, got 5",
        ),
        (
            lambda: PiecewiseConstant((10,), (1.0,)),
            "PiecewiseConstant: expected len(boundaries) + 1 = 2 values, got 1",
        ),
        (
            lambda: PiecewiseConstant((10,), (1.0, -1.0)),
            "PiecewiseConstant: values[1] must be >= 0, got -1.0",
        ),
        (lambda: PiecewiseConstant.ninja(0), "ninja: n_samples must be >= 1, got 0"),
        (lambda: Constant(math.inf), "Constant: lr must be finite, got inf"),
    ],
)
def test_invalid_schedule_arguments_raise_with_the_value(
    make: Callable[[], Schedule], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value).startswith(message)


def test_invalid_steps_raise() -> None:
    with pytest.raises(ValueError, match=r"Cosine\.lr_at: step must be >= 0, got -1"):
        Cosine(0.1, 10).lr_at(-1)
    with pytest.raises(TypeError, match=r"StepLR\.lr_at: step must be an int, got 1\.5"):
        StepLR(0.1, 10).lr_at(1.5)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"OneCycle\.lr_at: step must be <= total_steps = 100, got 101"
    ):
        OneCycle(0.1, 100).lr_at(101)
    assert OneCycle(0.1, 100).lr_at(100) > 0  # torch allows exactly total_steps
