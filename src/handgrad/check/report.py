"""The result of a gradient check: one row per gradient, a table like the ninja's ``cmp``, JSON.

Rows come in backward order: the loss's input gradient, then for each layer from the last to
the first the gradient arriving at its output, its parameters' gradients and its input
gradient. Parameter and input rows are checked with the layer in isolation (fed its reference
input and upstream gradient), so their verdicts blame that layer alone; the output rows follow
the whole hand-written chain, like the ninja table, and show where an error above propagates.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from handgrad.check.compare import DRIFT, FAULTY, INHERITED, OK, SKIPPED, VACUOUS
from handgrad.check.diagnose import Diagnosis
from handgrad.check.finite_diff import FDResult

KINDS = ("loss", "output", "param", "input")


@dataclass
class GradRow:
    """One compared gradient.

    Attributes:
        name: ``"2.weight"``, ``"1 (Tanh) input"``, ``"loss (MSELoss) input"``.
        layer: the layer it belongs to, ``"2 (Linear)"`` or ``"loss (MSELoss)"``.
        module: the layer's name in the model, ``"2"`` (``"loss"`` for the loss).
        kind: ``"loss"``, ``"output"``, ``"param"`` or ``"input"``.
        shape: the hand-written gradient's shape; expected_shape the reference's.
        reference: ``"autograd"``, ``"finite differences"`` or ``"none"``.
        exact: bit-equal to the reference (None without a full reference tensor).
        approx: within the dtype's tolerance (see ``handgrad.check.compare``).
        max_abs_diff: max |hand − reference|.
        max_rel_err: max_abs_diff / S, S the reference's effective scale.
        verdict: ``ok``, ``wrong``, ``shape mismatch``, ``error``, ``vacuous``, ``skipped``,
            ``inherited`` or ``drift`` (the last two for output rows only).
        fd: finite differences on sampled coordinates, if run.
        kinks: coordinates judged as subgradients at a kink (both references together).
        diagnosis: the named pattern, for a faulty row.
        note: a short explanation (why skipped, where an inherited error comes from).
    """

    name: str
    layer: str
    module: str
    kind: str
    shape: tuple[int, ...]
    expected_shape: tuple[int, ...] | None
    reference: str
    verdict: str
    exact: bool | None = None
    approx: bool | None = None
    max_abs_diff: float | None = None
    max_rel_err: float | None = None
    fd: FDResult | None = None
    kinks: int = 0
    diagnosis: Diagnosis | None = None
    note: str = ""

    @property
    def faulty(self) -> bool:
        return self.verdict in FAULTY

    @property
    def compared(self) -> bool:
        return self.verdict not in (SKIPPED, VACUOUS)

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values (non-finite numbers become null)."""
        return {
            "name": self.name,
            "layer": self.layer,
            "kind": self.kind,
            "shape": list(self.shape),
            "expected_shape": None if self.expected_shape is None else list(self.expected_shape),
            "reference": self.reference,
            "exact": self.exact,
            "approx": self.approx,
            "max_abs_diff": _finite(self.max_abs_diff),
            "max_rel_err": _finite(self.max_rel_err),
            "fd_checked": self.fd.checked if self.fd else 0,
            "fd_agreed": self.fd.agreed if self.fd else 0,
            "kinks": self.kinks,
            "verdict": self.verdict,
            "pattern": self.diagnosis.pattern if self.diagnosis else None,
            "diagnosis": self.diagnosis.message if self.diagnosis else None,
            "note": self.note or None,
        }


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


@dataclass
class GradReport:
    """Every gradient of a model checked against autograd and finite differences.

    ``ok`` is true only when at least one gradient was compared, none is faulty and none was
    vacuous (all zeros in both: a check of zeros proves nothing).
    """

    rows: list[GradRow]
    title: str
    dtype: torch.dtype
    references: str
    batch: int
    fd_samples: int
    notes: list[str] = field(default_factory=list)

    @property
    def compared(self) -> int:
        return sum(row.compared for row in self.rows)

    @property
    def skipped(self) -> int:
        return len(self.rows) - self.compared

    @property
    def faulty_rows(self) -> list[GradRow]:
        return [row for row in self.rows if row.faulty]

    @property
    def vacuous_rows(self) -> list[GradRow]:
        return [row for row in self.rows if row.verdict == VACUOUS]

    @property
    def faulty_layers(self) -> list[str]:
        """Every layer with a faulty gradient, in backward order."""
        layers: list[str] = []
        for row in self.faulty_rows:
            if row.layer not in layers:
                layers.append(row.layer)
        return layers

    @property
    def first_faulty(self) -> str | None:
        """The first faulty layer in backward order, e.g. ``"2 (Linear)"``."""
        rows = self.faulty_rows
        return rows[0].layer if rows else None

    @property
    def first_faulty_module(self) -> str | None:
        """The first faulty layer's name in the model, e.g. ``"2"`` (``"loss"`` for the loss)."""
        rows = self.faulty_rows
        return rows[0].module if rows else None

    @property
    def first_diagnosis(self) -> Diagnosis | None:
        """The diagnosis of the first faulty gradient."""
        for row in self.faulty_rows:
            if row.diagnosis is not None:
                return row.diagnosis
        return None

    @property
    def diagnosis(self) -> str | None:
        d = self.first_diagnosis
        return d.message if d else None

    @property
    def kinks(self) -> int:
        return sum(row.kinks for row in self.rows)

    @property
    def ok(self) -> bool:
        return self.compared > 0 and not self.faulty_rows and not self.vacuous_rows

    def row(self, name: str) -> GradRow:
        """The row called ``name``; KeyError if there is none."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row named {name!r}; rows: {[r.name for r in self.rows]}")

    def _repr_html_(self) -> str:
        """The table as HTML, for Jupyter."""
        return format_html(self)

    def __repr__(self) -> str:  # the table, not the dataclass fields (a cell's text/plain)
        return str(self)

    def verdict_line(self) -> str:
        """One line: all right, or the first faulty layer and what is wrong with it."""
        if self.faulty_rows:
            row = self.faulty_rows[0]
            others = len(self.faulty_layers) - 1
            more = f" (and {others} more faulty layer{'s' * (others > 1)})" if others else ""
            what = row.diagnosis.message if row.diagnosis else f"{row.name} is {row.verdict}"
            return f"FAIL: first faulty layer {row.layer}{more}: {what}"
        if self.vacuous_rows:
            names = ", ".join(row.name for row in self.vacuous_rows)
            return (
                f"FAIL: nothing proven for {names}: hand-written and reference gradients are "
                "both all zeros, and a check of zeros proves nothing; use an input (or "
                "another seed) that reaches them"
            )
        if self.compared == 0:
            return "FAIL: no gradient could be compared (no reference was available)"
        kinks = (
            f"; {self.kinks} coordinates at kinks accepted as subgradients" if self.kinks else ""
        )
        used = self.references_used
        skipped = [row.name for row in self.rows if row.verdict == SKIPPED]
        if skipped:
            return (
                f"OK: all {self.compared} compared gradients match ({used}{kinks}); "
                f"{len(skipped)} skipped without a reference: {', '.join(skipped)}"
            )
        return f"OK: all {self.compared} gradients match ({used}{kinks})"

    @property
    def references_used(self) -> str:
        """The references that actually judged a gradient, e.g. ``"finite differences"``."""
        checked = [row for row in self.rows if row.kind != "output" and row.compared]
        used = []
        if any(row.reference == "autograd" for row in checked):
            used.append("autograd")
        if any(row.fd is not None for row in checked):
            used.append("finite differences")
        return " + ".join(used) or "no reference"

    def __str__(self) -> str:
        return format_table(self)

    def to_dict(self) -> dict[str, Any]:
        """``{"ok", "compared", "skipped", "first_faulty", "diagnosis", "rows"}``."""
        return {
            "ok": self.ok,
            "compared": self.compared,
            "skipped": self.skipped,
            "first_faulty": self.first_faulty,
            "diagnosis": self.diagnosis,
            "rows": [row.to_dict() for row in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)


def _shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "-"
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _flag(value: bool | None) -> str:
    return "-" if value is None else str(value)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.2e}"


def _verdict_cell(row: GradRow) -> str:
    if row.faulty:
        label = row.verdict.upper()
        return f"{label}: {row.diagnosis.pattern}" if row.diagnosis else label
    if row.verdict == VACUOUS:
        return "VACUOUS: all zeros"
    if row.verdict in (INHERITED, DRIFT, SKIPPED) and row.note:
        return f"{row.verdict} ({row.note})"
    if row.verdict == OK and row.note:
        return f"ok ({row.note})"
    return row.verdict


TABLE_HEADER = (
    "gradient",
    "shape",
    "exact",
    "approx",
    "maxdiff",
    "rel err",
    "fd",
    "kinks",
    "verdict",
)


def _row_cells(row: GradRow) -> list[str]:
    """One row of the table, as text cells under ``TABLE_HEADER``."""
    return [
        row.name,
        _shape(row.shape),
        _flag(row.exact),
        _flag(row.approx),
        _number(row.max_abs_diff),
        _number(row.max_rel_err),
        f"{row.fd.agreed}/{row.fd.checked}" if row.fd else "-",
        str(row.kinks) if row.kinks else "",
        _verdict_cell(row),
    ]


def format_html(report: GradReport) -> str:
    """The table as HTML (Jupyter): the title, a row per gradient with the faulty rows
    highlighted, the notes and the verdict line."""
    import html

    head = "".join(f"<th>{html.escape(h)}</th>" for h in TABLE_HEADER)
    body = []
    for row in report.rows:
        style = ' style="background:#fdd;font-weight:bold"' if row.faulty else ""
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in _row_cells(row))
        body.append(f"<tr{style}>{cells}</tr>")
    notes = "".join(f"<p>note: {html.escape(n)}</p>" for n in report.notes)
    return (
        f"<p>{html.escape(report.title)}</p><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{notes}"
        f"<p><b>{html.escape(report.verdict_line())}</b></p>"
    )


def format_table(report: GradReport) -> str:
    """The aligned table, notes, and the verdict line."""
    header = TABLE_HEADER
    lines = [_row_cells(row) for row in report.rows]
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
        for i, h in enumerate(header)
    ]
    numeric = {4, 5, 6, 7}

    def render(cells: list[str] | tuple[str, ...]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return " | ".join(parts).rstrip()

    out = [
        f"gradient check of {report.title}: {str(report.dtype).replace('torch.', '')}, "
        f"batch {report.batch}, references: {report.references}",
        render(header),
        "-+-".join("-" * w for w in widths),
        *(render(line) for line in lines),
    ]
    out += [f"note: {note}" for note in report.notes]
    out.append(report.verdict_line())
    return "\n".join(out)
