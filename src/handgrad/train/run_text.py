"""A run put in words: the lines ``handgrad train`` prints, as strings (nothing is printed here).

``regression_line`` is a table regression's evaluation line (a classification's comes from its
recipe's log format, ``recipes.format_record``); ``summary`` says how a run ended and its final
figures; ``timing_line`` gives the closing forward/backward timings beside the notebook's;
``figures_table`` sets a recipe's expected figures beside those measured by each engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from handgrad.train.recipes import Recipe, figure_text, measure

if TYPE_CHECKING:
    from handgrad.train.loop import RunResult


def regression_line(record: dict[str, Any]) -> str:
    """A table regression's evaluation line: the loss, and each split's RMSE and R²."""

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    parts = [f"step {record['step']:>6d}  epoch {record['epoch']:7.2f}"]
    parts.append(f"train loss {num(record.get('train_loss'), '.4f')}")
    for split in ("train", "valid", "test"):
        parts.append(
            f"{split} rmse {num(record.get(f'{split}_error'), '.4g')} "
            f"r2 {num(record.get(f'{split}_r2'), '.4f')}"
        )
    return "  ".join(parts)


def summary(result: RunResult) -> str:
    """Two lines: how the run ended, and its final figures."""
    final = result.final
    parts = [f"train loss {final.get('train_loss', float('nan')):.6g}"]
    regression = "train_r2" in final  # a table's regression: the error is the RMSE
    for split in ("train", "valid", "test"):
        error = final.get(f"{split}_error")
        if error is not None and regression:
            r2 = final.get(f"{split}_r2")
            parts.append(f"{split} RMSE {error:.4g}" + (f" R² {r2:.4f}" if r2 is not None else ""))
        elif error is not None:
            parts.append(f"{split} error {error:.2%}")
    if final.get("test_error") is not None and not regression:
        parts.append(f"(test accuracy {1 - final['test_error']:.2%})")
    if final.get("test_evaluated"):
        parts.append(f"[test set evaluated {final['test_evaluated']}]")
    where = f" -> {result.run_dir}" if result.run_dir else ""
    head = (
        f"{result.config.engine}: {result.status}, {result.steps} of {result.plan.total_steps} "
        f"steps in {result.seconds:.1f} s{where}"
    )
    return head + "\n  " + "  ".join(parts)


def timing_line(n: int, extra: dict[str, float]) -> str:
    """The closing timings of a recipe's run on ``n`` images (``extra``: ``forward_ms``,
    ``backward_ms``), beside the seed notebook's."""
    return (
        f"  forward + loss on {n:,} images: {extra['forward_ms']:.1f} ms "
        f"(notebook 124 ms); backward: {extra['backward_ms']:.1f} ms (notebook 279 ms); "
        "median of 5"
    )


def figures_table(
    recipe: Recipe,
    measured: dict[str, tuple[list[dict[str, Any]], dict[str, float]]],
    config: Any = None,
) -> str:
    """Each of the recipe's figures (those for ``config``'s run, when given): expected, then
    measured by each engine."""
    engines = list(measured)
    lines = [f"{recipe.name}: expected vs measured"]
    header = (
        f"  {'figure':34s} {'expected':>12s} " + " ".join(f"{e:>12s}" for e in engines) + "  source"
    )
    lines.append(header)
    for fig in recipe.figures:
        if config is not None and not fig.applies(config):
            continue
        values = [measure(fig.key, records, extra) for records, extra in measured.values()]
        row = f"  {fig.label:34s} {figure_text(fig.expected, fig.fmt):>12s} "
        row += " ".join(f"{figure_text(v, fig.fmt):>12s}" for v in values)
        lines.append(row + f"  {fig.source}")
    return "\n".join(lines)
