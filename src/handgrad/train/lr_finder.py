"""The learning-rate range test (Smith 2015; fastai's ``LRFinder``), on a handgrad model.

:func:`find_lr` takes ``steps`` optimizer steps with a learning rate growing exponentially from
``start`` to ``end`` (step i uses ``start · (end/start)^(i/(steps-1))``), records each step's
training loss on its batch, and stops early once the smoothed loss exceeds ``diverge`` (4) times
its minimum or stops being finite. The model's weights and the optimizer's state are put back
afterwards (``restore=True``), so the finder leaves the run where it was.

The smoothed loss is an exponential moving average with bias correction, as fastai's:
``avg_i = β·avg_{i-1} + (1-β)·loss_i``, ``smoothed_i = avg_i / (1 - β^(i+1))``, β = 0.9 by
default here (fastai's 0.98 suits runs of several hundred steps; this one is about 100).

The suggestion (``rule="steepest"``): the learning rate where the smoothed loss falls fastest
against log(lr), i.e. the most negative finite difference ``Δ smoothed / Δ log lr`` over a
short window (see :func:`suggest`), after the first tenth of the curve and up to the smoothed
loss's minimum (past it the loss is already blowing up). ``min_over_10``
(the lr of the minimum divided by 10, the other common rule) is reported too, and taken as the
suggestion when the loss never fell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


@dataclass
class LRFinderResult:
    """The range test's figures.

    Attributes:
        lrs: the learning rate of each step taken.
        losses: each step's training loss on its batch (before its update).
        smoothed: the bias-corrected moving average of ``losses``.
        suggestion: the suggested learning rate (see ``rule``).
        rule: ``"steepest"`` or ``"min_over_10"`` (when the loss never fell).
        steepest: the lr of the steepest descent of the smoothed loss (None if none).
        min_over_10: the lr of the smoothed loss's minimum, divided by 10.
        stopped: why the test ended (``"end"`` or ``"diverged"``).
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    suggestion: float = math.nan
    rule: str = "steepest"
    steepest: float | None = None
    min_over_10: float = math.nan
    stopped: str = "end"

    def to_json(self) -> dict[str, Any]:
        """For the run records (``lr_finder.json``); non-finite losses as null."""

        def clean(xs: list[float]) -> list[float | None]:
            return [x if math.isfinite(x) else None for x in xs]

        return {
            "lrs": self.lrs,
            "losses": clean(self.losses),
            "smoothed": clean(self.smoothed),
            "suggestion": self.suggestion,
            "rule": self.rule,
            "steepest": self.steepest,
            "min_over_10": self.min_over_10,
            "stopped": self.stopped,
        }


def lr_at(i: int, steps: int, start: float, end: float) -> float:
    """The learning rate of step ``i`` of ``steps``: ``start · (end/start)^(i/(steps-1))``."""
    return start * (end / start) ** (i / max(steps - 1, 1))


def suggest(
    lrs: list[float], smoothed: list[float], skip: int | None = None
) -> tuple[float, str, float | None, float]:
    """``(suggestion, rule, steepest, min_over_10)`` from a smoothed loss curve.

    The first ``skip`` points (default: a tenth of the curve, at least 5 when the curve has 20
    or more) are left out, as fastai does: the moving average has not settled there. The
    slope at point i is taken over a window of ``w`` points (a twentieth of the curve, at
    least 1): ``(s_i - s_{i-w}) / (log lr_i - log lr_{i-w})``, its lr the window's geometric
    middle.
    """
    n = len(smoothed)
    if skip is None:
        skip = max(5, n // 10) if n >= 20 else 0
    finite = [i for i, s in enumerate(smoothed) if math.isfinite(s)]
    if not finite:
        raise ValueError("lr finder: no finite loss was measured")
    best = min(finite, key=lambda i: smoothed[i])
    min_over_10 = lrs[best] / 10
    w = max(1, n // 20)
    steepest: float | None = None
    slope_min = 0.0
    for i in range(max(skip, 0) + w, best + 1):
        a, b = smoothed[i - w], smoothed[i]
        if not (math.isfinite(a) and math.isfinite(b)):
            continue
        slope = (b - a) / (math.log(lrs[i]) - math.log(lrs[i - w]))
        if slope < slope_min:
            slope_min, steepest = slope, math.sqrt(lrs[i] * lrs[i - w])
    if steepest is None:
        return min_over_10, "min_over_10", None, min_over_10
    return steepest, "steepest", steepest, min_over_10


def find_lr(
    model: Any,
    loss: Any,
    opt: Any,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    beta: float = 0.9,
    diverge: float = 4.0,
    restore: bool = True,
) -> LRFinderResult:
    """Run the range test on a handgrad ``model``, ``loss`` and optimizer ``opt``.

    Args:
        batches: ``(x (B, D), y)`` training batches, cycled if fewer than ``steps``.
        start, end: the first and the last learning rate (``0 < start < end``).
        steps: steps at most.
        beta: the smoothing factor of the loss.
        diverge: stop when the smoothed loss exceeds ``diverge`` times its minimum.
        restore: put back the model's weights, the optimizer's state and its lr afterwards.
    """
    if not (0 < start < end) or steps < 2:
        raise ValueError(f"lr finder: need 0 < start < end and steps >= 2, got {start}, {end}")
    saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_opt = opt.state_dict() if restore else None
    saved_lr = opt.lr
    result = LRFinderResult()
    avg = 0.0
    best = math.inf
    source: Iterator[tuple[Tensor, Tensor]] = cycle(batches)
    try:
        with torch.no_grad():
            for i in range(steps):
                lr = lr_at(i, steps, start, end)
                opt.lr = lr
                xb, yb = next(source)
                opt.zero_grad()
                value = float(loss(model(xb), yb))
                model.backward(loss.backward())
                opt.step()
                result.lrs.append(lr)
                result.losses.append(value)
                if not math.isfinite(value):
                    result.smoothed.append(math.nan)
                    result.stopped = "diverged"
                    break
                avg = beta * avg + (1 - beta) * value
                smooth = avg / (1 - beta ** (i + 1))
                result.smoothed.append(smooth)
                best = min(best, smooth)
                if smooth > diverge * best:
                    result.stopped = "diverged"
                    break
            opt.zero_grad()
    finally:
        if restore:
            model.load_state_dict(saved_model)
            opt.load_state_dict(saved_opt)
        opt.lr = saved_lr
    result.suggestion, result.rule, result.steepest, result.min_over_10 = suggest(
        result.lrs, result.smoothed
    )
    return result


def plot_lr_finder(result: LRFinderResult, path: Path) -> Path:
    """A PNG of the loss against the learning rate (log scale), the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        ax.plot(result.lrs, result.losses, alpha=0.35, label="loss")
        ax.plot(result.lrs, result.smoothed, label="smoothed")
        ax.axvline(
            result.suggestion,
            color="tab:red",
            linestyle="--",
            label=f"suggestion {result.suggestion:.2g} ({result.rule})",
        )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        finite = [s for s in result.smoothed if math.isfinite(s)]
        raw = [v for v in result.losses if math.isfinite(v)]
        if finite:
            ax.set_ylim(min(min(raw), min(finite)) * 0.9, max(finite[0], min(finite)) * 1.5)
        ax.legend()
        ax.set_title("learning-rate range test")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


# -- on a run's config (handgrad train --find-lr, --lr auto) ---------------------------------
LR_FINDER_JSON = "lr_finder.json"
LR_FINDER_PNG = "lr_finder.png"


def find_lr_for(config: Any, data: Any, steps: int = 100) -> LRFinderResult:
    """The range test on the model, loss, optimizer and first epoch's batches that ``config``
    builds (its weights as the run's would start), one optimizer step per batch.

    Args:
        config: a ``TrainConfig`` (its ``lr`` may be ``"auto"``: the finder sets each step's).
        data: its ``build.TrainData``.
    """
    from handgrad.train import build

    parts_config = config.replace(lr=1e-3, lr_per_sample=False)
    model, loss, opt = build.build_training_parts(parts_config, data.n_train)
    batches = list(build.build_batches(parts_config, data).epoch(0))
    return find_lr(model, loss, opt, batches, steps=steps)


def write_lr_finder(run: Path, result: LRFinderResult, plot: bool = True) -> list[Path]:
    """``lr_finder.json`` (the curve, the suggestion and its rule) and ``lr_finder.png``."""
    import json

    from handgrad.train.records import atomic_write

    path = Path(run) / LR_FINDER_JSON
    atomic_write(path, (json.dumps(result.to_json(), indent=2) + "\n").encode())
    paths = [path]
    if plot:
        paths.append(plot_lr_finder(result, Path(run) / LR_FINDER_PNG))
    return paths


def summary(result: LRFinderResult) -> str:
    """One line: the suggestion, its rule, and how the test ended."""
    return (
        f"lr finder: {len(result.lrs)} steps from {result.lrs[0]:.3g} to {result.lrs[-1]:.3g} "
        f"({result.stopped}); suggested lr {result.suggestion:.3g} ({result.rule}; "
        f"min/10 {result.min_over_10:.3g})"
    )
