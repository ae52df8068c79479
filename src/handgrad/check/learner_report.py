"""The report of ``check_gradients``: rows in backward order, the first wrong gradient, a table.

``str(report)`` reads like the ninja notebook's ``cmp`` lines, aligned, with a verdict column::

    logprobs     | exact: True  | approximate: True  | maxdiff: 0.0e+00 | ok
    counts       | exact: False | approximate: False | maxdiff: 3.1e-02 | missing_branch: ...

In Jupyter the report shows as an HTML table (``_repr_html_``), the first wrong row
highlighted. ``to_dict`` / ``to_json`` give the same content as one JSON object, and
``LearnerReport.from_dict`` reads it back (the CLI's child process sends it that way).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LearnerRow:
    """One gradient the learner gave.

    Attributes:
        name: the learner's key in ``grads`` (``"counts"`` for dL/dcounts).
        shape: the learner's gradient's shape; expected_shape the tensor's (the reference's).
        exact: bit-equal to torch autograd run in the learner's dtype.
        approx: within the tolerance of the learner's dtype of the float64 reference.
        maxdiff: max |yours − float64 reference| (inf when the shapes cannot be compared).
        kind: ``ok``, ``factor``, ``sign``, ``transpose``, ``shape``, ``missing_branch``,
            ``wrong_point``, ``zero``, ``inherited`` or ``unknown``.
        verdict: the sentence for the learner.
        local_maxdiff: max |yours − the gradient recomputed from your own upstream gradients|.
        note: anything else worth knowing (a kept dimension accepted, kinks, finite differences).
    """

    name: str
    shape: tuple[int, ...]
    expected_shape: tuple[int, ...]
    exact: bool
    approx: bool
    maxdiff: float
    kind: str
    verdict: str
    local_maxdiff: float | None = None
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


@dataclass
class LearnerReport:
    """Every given gradient checked; ``ok`` only if all are right."""

    rows: list[LearnerRow]
    first_wrong: str | None
    dtype: str
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows) and bool(self.rows)

    def row(self, name: str) -> LearnerRow:
        """The row of the gradient given under ``name``."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no row {name!r}; rows: {', '.join(r.name for r in self.rows)}")

    @property
    def summary(self) -> str:
        """One line: all right, or where the mistake is."""
        wrong = [r for r in self.rows if not r.ok]
        if not wrong:
            return f"all {len(self.rows)} gradients are right ({self.dtype})"
        if self.first_wrong is None:
            return f"{len(wrong)} of {len(self.rows)} gradients are wrong"
        first = self.row(self.first_wrong)
        return (
            f"{len(wrong)} of {len(self.rows)} gradients are wrong; the mistake is in "
            f"d{first.name} ({first.kind}): {first.verdict}"
        )

    def __str__(self) -> str:
        width = max([15] + [len(r.name) for r in self.rows])
        lines = []
        for r in self.rows:
            marker = "  <- first wrong" if r.name == self.first_wrong else ""
            lines.append(
                f"{r.name:{width}s} | exact: {r.exact!s:5s} | approximate: "
                f"{r.approx!s:5s} | maxdiff: {_num(r.maxdiff)} | {_verdict(r)}{marker}"
            )
        lines.append(self.summary)
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"note ({r.name}): {r.note}" for r in self.rows if r.note]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th>{h}</th>" for h in ("name", "exact", "approximate", "maxdiff", "kind", "verdict")
        )
        body = []
        for r in self.rows:
            style = (
                ' style="background:#fdd;font-weight:bold"' if r.name == self.first_wrong else ""
            )
            cells = (r.name, r.exact, r.approx, _num(r.maxdiff), r.kind, r.verdict)
            body.append(
                f"<tr{style}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
            )
        notes = "".join(f"<p>note: {html.escape(n)}</p>" for n in self.notes)
        return (
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<p>{html.escape(self.summary)}</p>{notes}"
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"ok", "first_wrong", "dtype", "summary", "notes", "rows"}`` (JSON-safe)."""
        rows = []
        for r in self.rows:
            item = asdict(r)
            item["shape"], item["expected_shape"] = list(r.shape), list(r.expected_shape)
            for key in ("maxdiff", "local_maxdiff"):
                value = item[key]
                if isinstance(value, float) and not math.isfinite(value):
                    item[key] = None
            rows.append(item)
        return {
            "ok": self.ok,
            "first_wrong": self.first_wrong,
            "dtype": self.dtype,
            "summary": self.summary,
            "notes": list(self.notes),
            "rows": rows,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnerReport:
        rows = []
        for item in data["rows"]:
            item = dict(item)
            item["shape"] = tuple(item["shape"])
            item["expected_shape"] = tuple(item["expected_shape"])
            if item["maxdiff"] is None:
                item["maxdiff"] = math.inf
            rows.append(LearnerRow(**item))
        return cls(rows, data["first_wrong"], data["dtype"], list(data["notes"]))


def _num(x: float) -> str:
    return f"{x:.1e}" if math.isfinite(x) else "shape  "


def _verdict(r: LearnerRow) -> str:
    if r.kind == "ok":
        return "ok" if r.note is None else "ok (see note)"
    if r.kind == "inherited":
        return r.verdict
    return f"{r.kind}: {r.verdict}"
