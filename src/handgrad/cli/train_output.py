"""What ``handgrad train`` prints: the progress bar, the per-evaluation lines, the summaries."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from handgrad.train.recipes import Recipe, figure_text, format_record, measure

if TYPE_CHECKING:
    from handgrad.train.loop import RunResult


class Reporter:
    """The progress bar and per-evaluation lines of one run (nothing with --quiet)."""

    def __init__(self, total: int, start: int, quiet: bool, log_format: str, label: str) -> None:
        from tqdm.auto import tqdm  # a widget under Jupyter, text in a terminal

        self.quiet = quiet
        self.log_format = log_format
        self.bar = tqdm(
            total=total,
            initial=start,
            desc=label,
            unit="step",
            disable=quiet or not (sys.stderr.isatty() or "ipykernel" in sys.modules),
            dynamic_ncols=True,
            leave=False,
        )

    def step(self, steps_done: int) -> None:
        self.bar.update(1)

    def evaluation(self, record: dict[str, Any]) -> None:
        postfix = {"loss": f"{record['train_loss']:.4g}", "acc": f"{1 - record['train_error']:.1%}"}
        if record.get("valid_error") is not None:
            postfix["val"] = f"{1 - record['valid_error']:.1%}"
        if "train_r2" in record:  # a table's regression: the error is the RMSE
            postfix = {
                "loss": f"{record['train_loss']:.4g}",
                "rmse": f"{record['train_error']:.4g}",
            }
        self.bar.set_postfix(postfix, refresh=False)
        if not self.quiet:
            line = (
                regression_line(record)
                if "train_r2" in record
                else format_record(self.log_format, record)
            )
            self.bar.write(line, file=sys.stdout)

    def close(self) -> None:
        self.bar.close()


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


def print_message(result: RunResult) -> None:
    """Why the run stopped, when it did not simply finish."""
    if result.status == "interrupted":
        print(f"{result.message}; resume with: handgrad train --resume {result.run_dir}")
    elif result.status == "diverged":
        print(f"handgrad: {result.message}", file=sys.stderr)
    elif result.status == "early_stopped":
        print(f"  {result.message}")


def plots(result: RunResult) -> str | None:
    """Write the run's PNG plots (not for a diverged run); the line naming them, to print
    after the summary (a plot that cannot be written fails before "completed" is printed)."""
    if result.run_dir is None or result.status == "diverged":
        return None
    from handgrad.train.plots import write_plots

    paths = write_plots(result.run_dir, result.records, result.model, result.data)
    return "  plots: " + ", ".join(p.name for p in paths)


def timing_line(n: int, extra: dict[str, float]) -> str:
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


def doctor_findings(result: RunResult) -> bool:
    """Print the doctor's findings on the run's records; True when none is a failure."""
    from handgrad.train import doctor

    if not result.records:
        return True
    diagnosis = doctor.diagnose_records(
        result.config.to_dict(),
        result.records,
        result.extra.get("layers", []),
        run=str(result.run_dir or ""),
    )
    print(diagnosis.text())
    return diagnosis.ok


def report(result: RunResult) -> None:
    """Write the run's report.html; without plotly, one note line instead."""
    if result.run_dir is None:
        return
    import torch

    from handgrad.errors import HandgradError
    from handgrad.train.report_page import write_report

    data, model = result.data, result.model
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            outputs = model(data.x_test)  # (N, C)
        model.train(was_training)
        path = write_report(result.run_dir, test=(data.x_test, outputs, data.labels_test))
    except HandgradError as exc:
        print(f"  report: not written ({exc})")
        return
    print(f"  report: {path.name}")
