"""The exercise copies, made from the solved notebooks: one source of truth, markers in cells.

The solved notebooks are jupytext percent scripts, ``notebooks/NN_name.py`` (the source of
truth), each paired with ``notebooks/NN_name.ipynb`` stored without outputs. In a code cell of a
solved notebook::

    def lin_grad(inp, out, w, b):
        # BEGIN SOLUTION
        inp.g = out.g @ w.t()
        ...
        # END SOLUTION

the lines from ``# BEGIN SOLUTION`` to ``# END SOLUTION`` become, in the exercise copy, one line
``raise NotImplementedError("lin_grad: your code here")`` at the marker's indentation
(``# BEGIN SOLUTION: text`` puts ``text`` in its place instead, e.g. ``dz2 = ...``). A cell
tagged ``solution`` (``# %% tags=["solution"]``) is left out of the exercise copy. The copies
are written to ``notebooks/exercises/NN_name.py`` and ``.ipynb``, with a first cell saying where
they come from.

``make_all(root)`` writes every copy and refreshes every solved ``.ipynb`` from its ``.py``;
``stale(root)`` lists the files that are not what ``make_all`` would write (CI's check).
Needs jupytext (the ``notebooks`` extra).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION(?::\s*(?P<text>.*))?$")
END = re.compile(r"^[ \t]*# END SOLUTION\s*$")
SOLUTION_TAG = "solution"
EXERCISES = "exercises"
FORMAT = "py:percent"


def _jupytext() -> Any:
    try:
        import jupytext
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "handgrad.notebook.make needs jupytext: pip install 'handgrad[notebooks]'"
        ) from exc
    return jupytext


def _enclosing(lines: list[str], upto: int) -> str:
    """The name of the def around line ``upto`` (``Class.method`` for a method), for the
    blank's message."""
    name, indent = "", None
    for line in reversed(lines[:upto]):
        m = re.match(r"^(\s*)(def|class)\s+(\w+)", line)
        if not m or (indent is not None and len(m.group(1)) >= indent):
            continue
        if not name:
            name, indent = m.group(3), len(m.group(1))
            if indent == 0:
                return name
        elif m.group(2) == "class":
            return f"{m.group(3)}.{name}"
    return name or "this exercise"


def blank_solutions(source: str, where: str = "cell") -> str:
    """``source`` with every solution region replaced by its blank.

    Raises:
        ValueError: a BEGIN without END, an END without BEGIN, or nested regions.
    """
    lines = source.split("\n")
    out: list[str] = []
    inside = False
    for i, line in enumerate(lines):
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if inside:
                raise ValueError(f"{where}: nested # BEGIN SOLUTION at line {i + 1}")
            inside = True
            text = begin.group("text")
            if not text:
                text = f'raise NotImplementedError("{_enclosing(lines, i)}: your code here")'
            out.append(begin.group("indent") + text)
        elif end:
            if not inside:
                raise ValueError(f"{where}: # END SOLUTION without BEGIN at line {i + 1}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: # BEGIN SOLUTION without # END SOLUTION")
    return "\n".join(out)


def _strip(nb: Any) -> Any:
    """No outputs, no execution counts, and cell ids from the cell's position (so the same
    source always makes the same file)."""
    for k, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{k:03d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def exercise_notebook(solved: Any, name: str) -> Any:
    """The exercise copy of the solved notebook ``solved`` (a nbformat notebook)."""
    import copy

    import nbformat

    nb = copy.deepcopy(solved)
    cells = []
    for k, cell in enumerate(nb.cells):
        if SOLUTION_TAG in cell.metadata.get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.source = blank_solutions(cell.source, f"{name} cell {k + 1}")
        cells.append(cell)
    head = nbformat.v4.new_markdown_cell(
        f"*Exercise version of `notebooks/{name}.py`, made by "
        "`python -m handgrad.notebook make-exercises`: edit the solved notebook, not this "
        "copy.* Fill in each `raise NotImplementedError`; the cell after it checks your code."
    )
    nb.cells = [head, *cells]
    return _strip(nb)


@dataclass
class Output:
    """One file ``make_all`` writes: its path and its text."""

    path: Path
    text: str


def outputs(root: Path) -> list[Output]:
    """Every file made from ``root/notebooks/*.py``: the solved ``.ipynb`` and the exercise
    ``.py`` and ``.ipynb``."""
    jupytext = _jupytext()
    folder = root / "notebooks"
    sources = sorted(folder.glob("[0-9][0-9]_*.py"))
    if not sources:
        raise FileNotFoundError(f"no notebooks/NN_*.py under {root}")
    made: list[Output] = []
    for src in sources:
        name = src.stem
        solved = _strip(jupytext.reads(src.read_text(), fmt=FORMAT))
        made.append(Output(src.with_suffix(".ipynb"), jupytext.writes(solved, fmt="ipynb")))
        exercise = exercise_notebook(solved, name)
        base = folder / EXERCISES / name
        made.append(Output(base.with_suffix(".py"), jupytext.writes(exercise, fmt=FORMAT)))
        made.append(Output(base.with_suffix(".ipynb"), jupytext.writes(exercise, fmt="ipynb")))
    return made


def make_all(root: Path) -> list[Path]:
    """Write every file of :func:`outputs`; return the paths written (changed or not)."""
    written = []
    for out in outputs(root):
        out.path.parent.mkdir(parents=True, exist_ok=True)
        if not out.path.exists() or out.path.read_text() != out.text:
            out.path.write_text(out.text)
        written.append(out.path)
    return written


def stale(root: Path) -> list[Path]:
    """The files that differ from what :func:`make_all` would write (or are missing)."""
    return [o.path for o in outputs(root) if not o.path.exists() or o.path.read_text() != o.text]
