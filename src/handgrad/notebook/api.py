"""What the command line does, as calls from a notebook cell that return objects.

- :func:`train_recipe` (``handgrad train --recipe NAME``): trains with a ``tqdm.auto`` progress
  bar (a widget in Jupyter, text in a terminal) and returns a :class:`TrainedRun`: the loop's
  ``RunResult``, the recipe's figures expected against measured (an HTML table in Jupyter),
  and ``plot()``, the curves as a matplotlib figure shown inline.
- :func:`evaluate` (``handgrad evaluate``): a model's loss and error on a split.
- :func:`check_model` (``handgrad check --model``): ``handgrad.check.gradcheck`` on an MLP
  spec; the ``GradReport`` it returns prints as the CLI's table.
- :func:`quick` and :func:`mnist_dir`: the notebooks' switches. ``HANDGRAD_NOTEBOOK_QUICK=1``
  shortens long trainings (the test that runs the notebooks sets it); ``HANDGRAD_DATA`` names
  the full MNIST folder, which full-MNIST cells fall back from to the embedded subset.

Nothing here prints except the progress bar (``progress=False`` turns it off).
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handgrad.train.config import TrainConfig
from handgrad.train.recipes import Recipe, figure_text, get_recipe, measure

QUICK_ENV = "HANDGRAD_NOTEBOOK_QUICK"
DATA_ENV = "HANDGRAD_DATA"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


def quick() -> bool:
    """True when ``HANDGRAD_NOTEBOOK_QUICK`` is ``1`` (CI): long trainings run shortened."""
    return os.environ.get(QUICK_ENV, "") == "1"


def mnist_dir() -> Path | None:
    """The full MNIST folder named by ``HANDGRAD_DATA`` if it holds the training files, else
    None (the notebooks then use the embedded 1,000/1,000 subset and say so)."""
    value = os.environ.get(DATA_ENV)
    if not value:
        return None
    folder = Path(value).expanduser()
    names = {p.name.removesuffix(".gz") for p in folder.glob("*")} if folder.is_dir() else set()
    return folder if all(f in names for f in MNIST_FILES) else None


@dataclass
class FigureRow:
    """One recipe figure: what the seed shows and what this run measured."""

    label: str
    expected: float | None
    measured: float | None
    source: str
    fmt: str

    @property
    def expected_text(self) -> str:
        return figure_text(self.expected, self.fmt)

    @property
    def measured_text(self) -> str:
        return figure_text(self.measured, self.fmt)


@dataclass
class TrainedRun:
    """A recipe trained from a cell.

    Attributes:
        recipe: the recipe (its figures name the seed's values).
        result: the loop's ``RunResult`` (``records``, ``model``, ``data``, ``status`` ...).
        figures: the recipe's figures, expected (the seed's, full length) against measured
            (this run, which may be shortened: see ``shortened``).
        shortened: what was shortened for a quick run (empty for a full run).
    """

    recipe: Recipe
    result: Any
    figures: list[FigureRow]
    shortened: dict[str, Any] = field(default_factory=dict)

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self.result.records)

    def measured(self, key: str) -> float | None:
        """The measured value of a recipe figure key (``"train_loss@0"``, ``"test_accuracy"``)."""
        return measure(key, self.records, self.result.extra.get("timings"))

    def __str__(self) -> str:
        width = max([len(f.label) for f in self.figures] + [6])
        lines = [f"{self.recipe.name}: {self.result.status}, {self.result.steps} steps"]
        if self.shortened:
            lines.append(f"shortened for a quick run: {self.shortened}")
        lines.append(f"{'figure':<{width}}  {'seed (full run)':>15}  {'this run':>12}")
        for f in self.figures:
            lines.append(f"{f.label:<{width}}  {f.expected_text:>15}  {f.measured_text:>12}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = f"<p><b>{esc(self.recipe.name)}</b>: {esc(self.result.status)}, "
        head += f"{self.result.steps} steps"
        if self.shortened:
            head += f" (shortened for a quick run: {esc(str(self.shortened))})"
        rows = "".join(
            f"<tr><td>{esc(f.label)}</td><td>{esc(f.expected_text)}</td>"
            f"<td>{esc(f.measured_text)}</td><td>{esc(f.source)}</td></tr>"
            for f in self.figures
        )
        return (
            head + "</p><table><tr><th>figure</th><th>seed (full run)</th><th>this run</th>"
            f"<th>source</th></tr>{rows}</table>"
        )

    def plot(self, keys: tuple[str, ...] = ("train_loss", "test_error")) -> Any:
        """The curves of ``keys`` against the step, one panel each (a matplotlib Figure; in
        Jupyter it shows inline as a cell's last value)."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.2), squeeze=False)
        for ax, key in zip(axes[0], keys, strict=True):
            points = [(r["step"], r[key]) for r in self.records if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".")
            ax.set_xlabel("step")
            ax.set_title(key)
        fig.suptitle(self.recipe.name)
        fig.tight_layout()
        plt.close(fig)  # shown once, as the returned value, not twice
        return fig


def _progress_bar(total: int, label: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="step", disable=not enabled, leave=False)


def train_recipe(
    name: str,
    *,
    quick_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    run_dir: Path | None = None,
    **overrides: Any,
) -> TrainedRun:
    """Train the recipe ``name`` with ``overrides`` (any ``TrainConfig`` field); when
    :func:`quick` is on, ``quick_overrides`` (e.g. ``{"steps": 200}``) are applied on top.

    Raises:
        ValueError: unknown recipe or field, bad settings; HandgradError: missing data.
    """
    from handgrad.train.build import check_config, load_data
    from handgrad.train.loop import train
    from handgrad.train.steps import build_plan

    recipe = get_recipe(name)
    shortened = dict(quick_overrides or {}) if quick() else {}
    fields = set(TrainConfig.__dataclass_fields__)
    unknown = sorted((set(overrides) | set(shortened)) - fields)
    if unknown:
        raise ValueError(f"train_recipe: unknown config field(s) {', '.join(unknown)}")
    config = recipe.config.replace(**{**overrides, **shortened})
    check_config(config)
    data = load_data(config)
    bar = _progress_bar(build_plan(config, data.n_train).total_steps, name, progress)
    try:
        result = train(
            config, run_dir=run_dir, data=data, on_step=lambda done: bar.update(1), checked=True
        )
    finally:
        bar.close()
    if recipe.timing:
        from handgrad.train.session import closing_timings

        result.extra["timings"] = closing_timings(result)
    figures = [
        FigureRow(
            f.label,
            f.expected,
            measure(f.key, result.records, result.extra.get("timings")),
            f.source,
            f.fmt,
        )
        for f in recipe.figures
    ]
    return TrainedRun(recipe, result, figures, shortened)


def evaluate(result: Any, split: str = "test") -> Any:
    """``handgrad evaluate`` on a ``RunResult`` or ``TrainedRun``: the final model's
    ``SplitMetrics`` (``loss``, ``error``, ``accuracy``, ``outputs``) on ``split``
    (``train``, ``valid`` or ``test``).

    Raises:
        ValueError: an unknown split, or a split the run does not have.
    """
    import torch

    from handgrad.train.build import build_loss
    from handgrad.train.metrics import evaluate_split

    run = getattr(result, "result", result)
    if split not in ("train", "valid", "test"):
        raise ValueError(f"evaluate: split must be train, valid or test, got {split!r}")
    data = run.data
    x, y, labels = (getattr(data, f"{part}_{split}") for part in ("x", "y", "labels"))
    if x is None:
        raise ValueError(f"evaluate: the run has no {split} split")
    loss = build_loss(run.config)
    model = run.model
    model.eval()
    with torch.no_grad():
        return evaluate_split(model, loss, loss.reduction, x, y, labels)


def check_model(
    spec: str = "784-50-10",
    act: str = "relu",
    loss: str = "cross_entropy",
    *,
    batch: int = 8,
    seed: int = 0,
) -> Any:
    """``handgrad check --model SPEC --act ACT --loss LOSS``: ``gradcheck`` of that MLP and
    loss on a random batch; returns the ``GradReport`` (``ok``, ``rows``, ``str`` the table)."""
    import torch

    from handgrad import nn
    from handgrad.check import gradcheck

    torch.manual_seed(seed)
    model = nn.mlp(spec, act)
    widths = [int(w) for w in spec.split("-")]
    x = torch.randn(batch, widths[0])
    losses: dict[str, Any] = {
        "cross_entropy": (nn.CrossEntropyLoss(), torch.randint(0, widths[-1], (batch,))),
        "mse": (nn.MSELoss(), torch.randn(batch, widths[-1])),
        "sum_squared": (nn.SumSquaredLoss(), torch.randn(batch, widths[-1])),
    }
    if loss not in losses:
        raise ValueError(f"check_model: loss must be one of {', '.join(losses)}, got {loss!r}")
    fn, target = losses[loss]
    return gradcheck(model, fn, x, target, seed=seed)
