"""What ``handgrad train`` prints: the progress bar, the per-evaluation lines, the summaries.

The words themselves are made in ``handgrad.train.run_text`` (``summary``, ``timing_line``,
``figures_table``, ``regression_line``, re-exported here); this module prints them, writes the
run's plots and report, and prints the doctor's findings.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from handgrad.train.recipes import format_record
from handgrad.train.run_text import figures_table, regression_line, summary, timing_line

if TYPE_CHECKING:
    from handgrad.train.loop import RunResult

__all__ = [
    "Reporter",
    "doctor_findings",
    "figures_table",
    "plots",
    "print_message",
    "regression_line",
    "report",
    "summary",
    "timing_line",
]


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
