"""``handgrad check --function FILE``: the examples, --json, exit codes, files that misbehave."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handgrad.cli.main import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["fastai_style", "fleuret_style", "ninja_style"])
def test_examples_pass(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, _ = run(capsys, "--function", str(EXAMPLES / f"{name}.py"))
    assert code == 0, out
    assert "exact:" in out and "approximate:" in out
    assert "gradients are right" in out


def test_wrong_example_names_dcounts_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--function", str(EXAMPLES / "ninja_style_wrong.py"), "--json")
    assert code == 1
    data = json.loads(out)  # stdout is that one object
    assert data["ok"] is False and data["first_wrong"] == "counts"
    kinds = {row["name"]: row["kind"] for row in data["rows"]}
    assert kinds["counts"] == "missing_branch" and kinds["logits"] == "inherited"


GOOD = """
import torch
print("hello from the learner's file")

def make_inputs():
    return {"x": torch.randn(4, 3), "w": torch.randn(3, 2)}

def forward(x, w):
    h = x @ w
    return (h ** 2).sum(), {"h": h}

def backward(x, w, h):
    dh = 2 * h
    return {"h": dh, "w": x.T @ dh, GRAD_X}
"""


OK = GOOD.replace("GRAD_X", '"x": dh @ w.T')


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mine.py"
    path.write_text(text)
    return str(path)


def test_prints_go_to_stderr_and_json_is_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, GOOD.replace("GRAD_X", '"x": dh @ w.T'))
    code, out, err = run(capsys, "--function", path, "--json")
    assert code == 0
    assert json.loads(out)["ok"] is True
    assert "hello from the learner's file" in err
    assert "runs its top-level code" in err.splitlines()[0]


def test_a_wrong_gradient_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("GRAD_X", '"x": dh @ w.T * 2'))
    code, out, _ = run(capsys, "--function", path)
    assert code == 1
    assert "<- first wrong" in out and "factor" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("import os\nos._exit(0)\n" + OK, "ended the check before it gave a result"),
        ("import sys\nsys.exit(0)\n" + OK, "cannot import"),
        ("import torch\ndef forward(x): return x.sum()\n", "must define make_inputs(), backward()"),
        (GOOD.replace("GRAD_X", '"y": dh'), "neither an input nor an intermediate"),
        (OK.replace("def backward(x, w, h):", "def backward(x, w):"), "add **rest"),
        (GOOD.replace("GRAD_X", '"x": 1 / 0'), "ZeroDivisionError"),
    ],
)
def test_bad_files_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    code, out, err = run(capsys, "--function", path, "--json", "--reference", "autograd")
    assert code == 2
    assert out == ""
    lines = [line for line in err.splitlines() if line.startswith("handgrad: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_no_such_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "--function", str(tmp_path / "nope.py"))
    assert code == 2 and "no such file" in err


def test_help_gives_the_contract_and_says_the_file_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    assert "--function FILE" in out
    for needle in ("make_inputs()", "forward(**inputs)", "backward(**inputs, **intermediates)"):
        assert needle in out
    assert "Importing the file runs it" in out
