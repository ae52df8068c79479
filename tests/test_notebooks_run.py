"""Every notebook, solved and exercise, run top to bottom in a fresh kernel (nbclient).

The kernel gets ``HANDGRAD_NOTEBOOK_QUICK=1`` (long trainings shortened; the seed figures the
notebooks assert are those a short run reproduces exactly) and ``HANDGRAD_DATA`` pointing at
``../shared/data/mnist`` when it is there (else the full-MNIST cells fall back to the embedded
subset). The solved notebooks assert the seeds' figures in their own cells, so a wrong figure
fails here. Skipped without the ``notebooks`` extra, except under ``CI=true``, where that fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MNIST = ROOT.parent / "shared" / "data" / "mnist"
NAMES = ["01_fastai_mlp_from_scratch", "02_fleuret_practical3", "03_backprop_ninja"]

pytestmark = pytest.mark.slow


def _tools() -> tuple[Any, Any]:
    try:
        import nbclient
        import nbformat
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the notebook tests need the notebooks extra ({exc.name} is missing)")
        pytest.skip("needs the notebooks extra: pip install -e '.[notebooks]'")
    return nbclient, nbformat


def _run(nb: Any, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> float:
    nbclient, _ = _tools()
    monkeypatch.setenv("HANDGRAD_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    if (MNIST / "train-images-idx3-ubyte.gz").exists():
        monkeypatch.setenv("HANDGRAD_DATA", str(MNIST))
    else:
        monkeypatch.delenv("HANDGRAD_DATA", raising=False)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    started = time.perf_counter()
    client.execute()
    return time.perf_counter() - started


def _text(cell: Any) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
        parts.append(str(out.get("text", "")))
        parts.append(str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def _check_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code" and "check_exercise(" in c.source]


@pytest.mark.parametrize("name", NAMES)
def test_the_solved_notebook_runs_and_reproduces_the_seed(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, nbformat = _tools()
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    seconds = _run(nb, NOTEBOOKS, monkeypatch)
    print(f"\n{name}: {seconds:.1f} s")
    for cell in _check_cells(nb):
        assert ": right: all" in _text(cell), _text(cell)


@pytest.mark.parametrize("name", NAMES)
def test_the_exercise_runs_with_its_blanks_and_says_not_implemented(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, nbformat = _tools()
    nb = nbformat.read(NOTEBOOKS / "exercises" / f"{name}.ipynb", as_version=4)
    seconds = _run(nb, NOTEBOOKS / "exercises", monkeypatch)
    print(f"\nexercises/{name}: {seconds:.1f} s")
    checks = _check_cells(nb)
    assert checks
    for cell in checks:
        text = _text(cell)
        assert "not implemented yet: fill in" in text, text
        assert "Traceback" not in text, text
        assert all(out.get("output_type") != "error" for out in cell.outputs), text


def _paste(nb: Any, blank: str, answer: str) -> Any:
    """The notebook up to the check cell after the blank ``blank``, with ``answer`` pasted in
    place of the blank (the answer's lines at the blank's indentation)."""
    for k, cell in enumerate(nb.cells):
        if blank in cell.source:
            line = next(ln for ln in cell.source.split("\n") if blank in ln)
            indent = line[: len(line) - len(line.lstrip())]
            pasted = "\n".join(indent + a for a in answer.strip("\n").split("\n"))
            cell.source = cell.source.replace(line, pasted)
            end = next(
                j for j in range(k + 1, len(nb.cells)) if "check_exercise(" in nb.cells[j].source
            )
            nb.cells = nb.cells[: end + 1]
            return nb
    raise AssertionError(f"no blank {blank!r}")


WRONG = {
    # backprop ninja: tanh's derivative taken at the output h2 instead of the input z2
    "03_backprop_ninja": (
        'raise NotImplementedError("backward: your code here")',
        """
dh2 = dloss(h2, y1)
dz2 = dsigma(h2) * dh2
dw2 = h1.T @ dz2
db2 = dz2.sum(0)
dh1 = dz2 @ w2.T
dz1 = dsigma(z1) * dh1
dw1 = x1.T @ dz1
db1 = dz1.sum(0)
""",
        ["the first wrong gradient is the one of `z2`", "wrong_point", "instead of at its input"],
    ),
    # fastai: the bias gradient averaged instead of summed over the batch
    "01_fastai_mlp_from_scratch": (
        'raise NotImplementedError("lin_grad: your code here")',
        """
inp.g = out.g @ w.t()
w.g = inp.t() @ out.g
b.g = out.g.mean(0)
""",
        ["not right yet", "factor", "1/N"],
    ),
    # Fleuret: the outer product of dl_dw2 transposed
    "02_fleuret_practical3": (
        'raise NotImplementedError("backward_pass: your code here")',
        """
dl_dx2 = dloss(x2, t)
dl_ds2 = dsigma(s2) * dl_dx2
dl_dx1 = w2.t().mv(dl_ds2)
dl_ds1 = dsigma(s1) * dl_dx1
dl_dw2.add_(x1.view(-1, 1).mm(dl_ds2.view(1, -1)).t() * 2)
dl_db2.add_(dl_ds2)
dl_dw1.add_(dl_ds1.view(-1, 1).mm(x.view(1, -1)))
dl_db1.add_(dl_ds1)
""",
        ["the first wrong gradient is the one of `w2`", "factor"],
    ),
}


@pytest.mark.parametrize("name", NAMES)
def test_a_wrong_answer_pasted_into_the_exercise_is_named(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, nbformat = _tools()
    blank, answer, words = WRONG[name]
    nb = _paste(
        nbformat.read(NOTEBOOKS / "exercises" / f"{name}.ipynb", as_version=4), blank, answer
    )
    _run(nb, NOTEBOOKS / "exercises", monkeypatch)
    text = _text(nb.cells[-1])
    for word in words:
        assert word in text, text
    assert "Traceback" not in text
