"""The check cell of an exercise: run the learner's code, check it, say what is wrong and where.

``check_exercise("lin_grad", lambda: check_gradients(...))`` never raises (a check cell must
not end the notebook in a traceback wall): it returns an :class:`ExerciseResult` whose status is

- ``not_implemented``: the learner's code still raises ``NotImplementedError`` (a blank);
- ``error``: it raised anything else: one line with the exception and the line of the learner's
  code it came from;
- ``wrong``: the checker found a wrong gradient: the first wrong one and its verdict (factor,
  transpose, missing branch, ...), with the whole report;
- ``right``: every gradient checked is right.

In Jupyter the result shows as HTML (the report's table below the sentence); ``str`` is the
plain-text form. ``result.ok`` is True only for ``right``.
"""

from __future__ import annotations

import html
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PACKAGE = str(Path(__file__).resolve().parents[1])

_COLORS = {"right": "#1a7f37", "wrong": "#cf222e", "error": "#cf222e", "not_implemented": "#9a6700"}


@dataclass
class ExerciseResult:
    """What a check cell found.

    Attributes:
        name: the exercise (``"lin_grad"``).
        status: ``right``, ``wrong``, ``error`` or ``not_implemented``.
        message: one sentence for the learner.
        report: the checker's report (anything with ``ok``, ``__str__`` and maybe
            ``_repr_html_``), when the check ran.
    """

    name: str
    status: str
    message: str
    report: Any = None

    @property
    def ok(self) -> bool:
        return self.status == "right"

    def __str__(self) -> str:
        head = f"{self.name}: {self.message}"
        if self.report is not None and self.status == "wrong":
            return f"{head}\n{self.report}"
        return head

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        color = _COLORS.get(self.status, "#000")
        head = (
            f'<p style="color:{color}"><b>{html.escape(self.name)}</b>: '
            f"{html.escape(self.message)}</p>"
        )
        if self.report is None:
            return head
        table = getattr(self.report, "_repr_html_", None)
        body = table() if callable(table) else f"<pre>{html.escape(str(self.report))}</pre>"
        return head + body


def _where(exc: BaseException) -> str:
    """The innermost frame of the learner's code (outside handgrad and torch), as ' (line N
    of f)'."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(_PACKAGE)
        and "site-packages" not in f.filename
        and not f.filename.startswith(sys.prefix)
    ]
    if not frames:
        return ""
    f = frames[-1]
    code = f" `{f.line.strip()}`" if f.line else ""
    return f" (in {f.name}, line {f.lineno}:{code})"


def check_exercise(name: str, run: Callable[[], Any]) -> ExerciseResult:
    """Run ``run()`` (which calls the learner's code and returns a checker's report, e.g. a
    ``LearnerReport`` from ``handgrad.check.check_gradients``) and say what it found.

    Never raises, except ``KeyboardInterrupt``.
    """
    try:
        report = run()
    except NotImplementedError:
        return ExerciseResult(
            name,
            "not_implemented",
            f"not implemented yet: fill in {name} above (replace `raise NotImplementedError`), "
            "then run this cell again",
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the learner's code failed: one line, no traceback wall
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return ExerciseResult(
            name, "error", f"your code raised {type(exc).__name__}: {first}{_where(exc)}"
        )
    if getattr(report, "ok", False):
        summary = getattr(report, "summary", "every gradient is right")
        return ExerciseResult(name, "right", f"right: {summary}", report)
    first_wrong = getattr(report, "first_wrong", None)
    verdict = ""
    if first_wrong is not None:
        try:
            row = report.row(first_wrong)
            verdict = f": {row.verdict}"
        except (AttributeError, KeyError):
            verdict = ""
        where = f"the first wrong gradient is the one of `{first_wrong}`{verdict}"
    else:
        where = getattr(report, "summary", "a gradient is wrong")
    return ExerciseResult(name, "wrong", f"not right yet: {where}", report)
