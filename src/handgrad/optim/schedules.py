"""Learning-rate schedules: pure functions of the step number, so resuming a run is trivial.

A schedule is a small frozen dataclass (its fields are its configuration) with
``lr_at(step)``, the learning rate for the optimizer step taken when ``step`` steps have
already been taken (0-based), and ``apply(opt, step)``, which sets ``opt.lr`` to it::

    schedule = Cosine(lr=1e-3, total_steps=10_000, warmup_steps=500)
    for step in range(10_000):
        schedule.apply(opt, step)
        ...  # forward, backward
        opt.step()

``StepLR`` and ``OneCycle`` give exactly the learning rates of torch's ``StepLR`` and
``OneCycleLR`` at ``last_epoch = step``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from torch import Tensor

from handgrad.optim.optimizer import build_named, check_int, check_number


class HasLR(Protocol):
    """Anything with a settable learning rate, such as every handgrad optimizer."""

    lr: float


def _initial_lr(group: dict[str, Any]) -> float:
    if "initial_lr" not in group:
        lr = group["lr"]
        group["initial_lr"] = lr.item() if isinstance(lr, Tensor) else lr
    return float(group["initial_lr"])


class Schedule:
    """Base class: ``lr_at(step)`` is the whole schedule; ``apply`` sets it on an optimizer."""

    def lr_at(self, step: int) -> float:
        """The learning rate for the step taken after ``step`` steps (0-based)."""
        raise NotImplementedError

    def apply(self, opt: HasLR, step: int) -> float:
        """Set the learning rate for the step after ``step`` steps; return ``lr_at(step)``.

        On an optimizer with ``param_groups`` (handgrad's or torch.optim's), group 0 gets
        ``lr_at(step)`` and every other group keeps its ratio to group 0 (from the groups'
        ``initial_lr``, recorded at the first ``apply`` as torch's schedulers do); a tensor
        ``lr`` is filled in place. Anything else gets ``opt.lr = lr_at(step)``.
        """
        lr = self.lr_at(step)
        groups = getattr(opt, "param_groups", None)
        if groups is None:
            opt.lr = lr
            return lr
        base = _initial_lr(groups[0])
        for i, group in enumerate(groups):
            group_lr = lr if i == 0 else lr * _initial_lr(group) / base
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(group_lr)
            else:
                group["lr"] = group_lr
        return lr

    def _check_step(self, step: int) -> None:
        check_int(f"{type(self).__name__}.lr_at", "step", step, low=0)


@dataclass(frozen=True)
class Constant(Schedule):
    """``lr`` at every step."""

    lr: float

    def __post_init__(self) -> None:
        check_number("Constant", "lr", self.lr, low=0.0, low_open=True)

    def lr_at(self, step: int) -> float:
        self._check_step(step)
        return self.lr


@dataclass(frozen=True)
class StepLR(Schedule):
    """``lr · gamma^(step // step_size)``: multiply by ``gamma`` every ``step_size`` steps."""

    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_number("StepLR", "lr", self.lr, low=0.0, low_open=True)
        check_int("StepLR", "step_size", self.step_size, low=1)
        check_number("StepLR", "gamma", self.gamma, low=0.0, low_open=True)

    def lr_at(self, step: int) -> float:
        self._check_step(step)
        lr = self.lr
        # Repeated multiplication rather than gamma**k: torch's StepLR does this, and the
        # rounding then matches it bit for bit.
        for _ in range(step // self.step_size):
            lr = lr * self.gamma
        return lr


@dataclass(frozen=True)
class Cosine(Schedule):
    """Linear warm-up, then a half cosine from ``lr`` down to ``min_lr`` at ``total_steps``.

    With W = ``warmup_steps`` and T = ``total_steps``::

        lr_at(s) = lr · (s + 1) / W                                    for s < W
        lr_at(s) = min_lr + (lr - min_lr) · (1 + cos(π·(s - W)/(T - W))) / 2   for W <= s < T
        lr_at(s) = min_lr                                              for s >= T

    The warm-up ramps up from 0 without wasting a step on lr = 0: it reaches ``lr/W`` at the
    first step and ``lr`` at step W - 1. It equals torch's ``LinearLR(start_factor=1/W,
    total_iters=W-1)`` followed by ``CosineAnnealingLR(T_max=T-W, eta_min=min_lr)``.
    """

    lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        check_number("Cosine", "lr", self.lr, low=0.0, low_open=True)
        check_int("Cosine", "total_steps", self.total_steps, low=1)
        check_int("Cosine", "warmup_steps", self.warmup_steps, low=0)
        if self.warmup_steps >= self.total_steps:
            raise ValueError(
                f"Cosine: warmup_steps must be < total_steps = {self.total_steps}, "
                f"got {self.warmup_steps}"
            )
        check_number("Cosine", "min_lr", self.min_lr, low=0.0, high=self.lr)

    def lr_at(self, step: int) -> float:
        self._check_step(step)
        warmup, total = self.warmup_steps, self.total_steps
        if step < warmup:
            return self.lr * (step + 1) / warmup
        if step >= total:
            return self.min_lr
        progress = (step - warmup) / (total - warmup)
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2


@dataclass(frozen=True)
class OneCycle(Schedule):
    """The 1cycle policy (Smith & Topin, 2018), exactly as torch's ``OneCycleLR`` computes it.

    From ``initial = max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start`` of
    the steps, then down to ``initial / final_div_factor`` at step ``total_steps - 1``
    (cosine or linear annealing). With ``three_phase``, it goes up, back down to ``initial``
    over as many steps, and then down to the minimum. Steps are valid up to ``total_steps``
    (torch's limit); momentum cycling is not done.
    """

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal: Literal["cos", "linear"] = "cos"
    three_phase: bool = False

    def __post_init__(self) -> None:
        check_number("OneCycle", "max_lr", self.max_lr, low=0.0, low_open=True)
        check_int("OneCycle", "total_steps", self.total_steps, low=1)
        check_number("OneCycle", "pct_start", self.pct_start, low=0.0, high=1.0)
        check_number("OneCycle", "div_factor", self.div_factor, low=0.0, low_open=True)
        check_number("OneCycle", "final_div_factor", self.final_div_factor, low=0.0, low_open=True)
        if self.anneal not in ("cos", "linear"):
            raise ValueError(f"OneCycle: anneal must be 'cos' or 'linear', got {self.anneal!r}")
        if not isinstance(self.three_phase, bool):
            raise TypeError(f"OneCycle: three_phase must be a bool, got {self.three_phase!r}")
        start = 0.0
        for end, _, _ in self._phases():
            if not end > start:
                raise ValueError(
                    f"OneCycle: every phase needs at least one step; pct_start * total_steps "
                    f"must be > 1 and leave room for the last phase, got "
                    f"pct_start={self.pct_start} with total_steps={self.total_steps}"
                )
            start = end

    def _phases(self) -> list[tuple[float, float, float]]:
        """``(end_step, start_lr, end_lr)`` of each phase, as torch defines them."""
        initial = self.max_lr / self.div_factor
        minimum = initial / self.final_div_factor
        warm_end = float(self.pct_start * self.total_steps) - 1
        last = self.total_steps - 1
        if self.three_phase:
            back_end = float(2 * self.pct_start * self.total_steps) - 2
            return [
                (warm_end, initial, self.max_lr),
                (back_end, self.max_lr, initial),
                (last, initial, minimum),
            ]
        return [(warm_end, initial, self.max_lr), (last, self.max_lr, minimum)]

    def lr_at(self, step: int) -> float:
        self._check_step(step)
        if step > self.total_steps:
            raise ValueError(
                f"OneCycle.lr_at: step must be <= total_steps = {self.total_steps}, got {step}"
            )
        phases = self._phases()
        start_step = 0.0
        for i, (end_step, start_lr, end_lr) in enumerate(phases):
            if step <= end_step or i == len(phases) - 1:
                pct = (step - start_step) / (end_step - start_step)
                if self.anneal == "cos":
                    return end_lr + (start_lr - end_lr) / 2.0 * (math.cos(math.pi * pct) + 1)
                return (end_lr - start_lr) * pct + start_lr
            start_step = end_step
        raise AssertionError("unreachable: the last phase always matches")


@dataclass(frozen=True)
class PiecewiseConstant(Schedule):
    """``values[i]`` for ``boundaries[i-1] <= step < boundaries[i]``.

    ``values`` has one more entry than ``boundaries``, which are increasing step numbers.
    ``PiecewiseConstant.ninja(n_samples)`` is the ninja notebook's schedule.
    """

    boundaries: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        where = "PiecewiseConstant"
        # Accept lists (from JSON) but store tuples, so the dataclass stays hashable.
        object.__setattr__(self, "boundaries", tuple(self.boundaries))
        object.__setattr__(self, "values", tuple(self.values))
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(
                f"{where}: expected len(boundaries) + 1 = {len(self.boundaries) + 1} values, "
                f"got {len(self.values)}"
            )
        previous = 0
        for i, boundary in enumerate(self.boundaries):
            check_int(where, f"boundaries[{i}]", boundary, low=previous + 1)
            previous = boundary
        for i, value in enumerate(self.values):
            check_number(where, f"values[{i}]", value, low=0.0)

    @classmethod
    def ninja(cls, n_samples: int) -> PiecewiseConstant:
        """The ninja notebook's ``0.1 / N if step < 5000 else 0.01 / N``, N = ``n_samples``."""
        check_int("ninja", "n_samples", n_samples, low=1)
        return cls(boundaries=(5000,), values=(0.1 / n_samples, 0.01 / n_samples))

    def lr_at(self, step: int) -> float:
        self._check_step(step)
        return self.values[bisect.bisect_right(self.boundaries, step)]


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": Constant,
    "step": StepLR,
    "cosine": Cosine,
    "onecycle": OneCycle,
    "piecewise": PiecewiseConstant,
    "ninja": PiecewiseConstant.ninja,
}


def make_schedule(name: str, **kwargs: Any) -> Schedule:
    """Build the schedule registered as ``name`` in ``SCHEDULES`` with ``kwargs``.

    Examples:
        >>> make_schedule("ninja", n_samples=1000).lr_at(5000)
        1e-05

    Raises:
        ValueError: for an unknown name (naming the closest valid one) or option, or an
            invalid value.
    """
    return build_named("schedule", SCHEDULES, name, **kwargs)
