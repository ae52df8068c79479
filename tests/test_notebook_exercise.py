"""handgrad.notebook: the exercise markers, the copies on disk, the check cell's verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from handgrad.check import check_gradients
from handgrad.notebook import check_exercise
from handgrad.notebook.__main__ import main
from handgrad.notebook.make import blank_solutions

ROOT = Path(__file__).resolve().parents[1]


def test_a_solution_region_becomes_a_blank_at_its_indentation() -> None:
    source = (
        "class A:\n    def bwd(self):\n        # BEGIN SOLUTION\n        x = 1\n"
        "        y = 2\n        # END SOLUTION\n        return 3"
    )
    assert blank_solutions(source) == (
        "class A:\n    def bwd(self):\n"
        '        raise NotImplementedError("A.bwd: your code here")\n        return 3'
    )
    assert (
        blank_solutions("# BEGIN SOLUTION: dz2 = ...\ndz2 = g * 2\n# END SOLUTION") == "dz2 = ..."
    )


@pytest.mark.parametrize(
    "source, message",
    [
        ("# BEGIN SOLUTION\nx = 1", "without # END SOLUTION"),
        ("x = 1\n# END SOLUTION", "END SOLUTION without BEGIN at line 2"),
        ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION", "nested"),
    ],
)
def test_broken_markers_are_refused(source: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        blank_solutions(source, "nb cell 3")


def _forward(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    z = x @ w
    return torch.tanh(z).sum(), {"z": z}


def _inputs() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"x": torch.randn(6, 4), "w": torch.randn(4, 3)}


def _learner(inputs: dict[str, torch.Tensor], factor: float = 1.0) -> dict[str, torch.Tensor]:
    z = inputs["x"] @ inputs["w"]
    dz = (1 - torch.tanh(z) ** 2) * factor
    return {"z": dz, "w": inputs["x"].t() @ dz}


def test_the_check_cell_says_right_wrong_blank_or_error_in_one_line() -> None:
    inputs = _inputs()
    right = check_exercise("tanh", lambda: check_gradients(_forward, inputs, _learner(inputs)))
    assert right.ok and right.status == "right" and "right" in right.message
    wrong = check_exercise(
        "tanh", lambda: check_gradients(_forward, inputs, _learner(inputs, factor=2.0))
    )
    assert wrong.status == "wrong" and not wrong.ok
    assert "`z`" in wrong.message and "factor" in wrong.message
    assert "<table" in wrong._repr_html_()

    def blank() -> None:
        raise NotImplementedError("bwd: your code here")

    not_yet = check_exercise("bwd", blank)
    assert not_yet.status == "not_implemented"
    assert str(not_yet).startswith("bwd: not implemented yet")
    assert "\n" not in str(not_yet)

    def broken() -> dict[str, torch.Tensor]:
        return {"w": inputs["x"] @ inputs["w"].t()}  # a shape error inside the learner's code

    failed = check_exercise("bwd", lambda: check_gradients(_forward, inputs, broken()))
    assert failed.status == "error"
    assert "RuntimeError" in failed.message and "in broken, line" in failed.message
    assert "\n" not in failed.message


def test_the_exercise_copies_on_disk_are_what_make_exercises_writes() -> None:
    pytest.importorskip("jupytext")
    assert main(["make-exercises", "--check", str(ROOT)]) == 0


def test_the_notebooks_are_stored_without_outputs() -> None:
    books = sorted((ROOT / "notebooks").rglob("*.ipynb"))
    assert len(books) == 6
    for book in books:
        nb = json.loads(book.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, book


def test_the_exercise_copies_have_the_blanks_and_no_solution_cells() -> None:
    for name in ("01_fastai_mlp_from_scratch", "02_fleuret_practical3", "03_backprop_ninja"):
        text = (ROOT / "notebooks" / "exercises" / f"{name}.py").read_text()
        solved = (ROOT / "notebooks" / f"{name}.py").read_text()
        assert "BEGIN SOLUTION" not in text and "assert result.ok" not in text
        assert text.count(": your code here") == solved.count("# BEGIN SOLUTION") > 0


def test_make_exercises_usage_errors_exit_2(tmp_path: Path) -> None:
    assert main([]) == 2
    assert main(["make-exercises", "--bogus"]) == 2
    pytest.importorskip("jupytext")
    assert main(["make-exercises", str(tmp_path)]) == 2  # no notebooks there
