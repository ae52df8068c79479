"""``handgrad check`` in-process: the table, --json, --module from a user's file, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handgrad.cli.main import main

OWN_LINEAR = '''
import torch
from handgrad import nn


class MyLinear(nn.Module):
    """y = x W + b with its own forward (no torch twin)."""

    def __init__(self, d_in=5, d_out=3, factor=1.0):
        super().__init__()
        self.register_parameter("weight", torch.randn(d_in, d_out))
        self.register_parameter("bias", torch.randn(d_out))
        self.factor = factor

    def forward(self, x):
        self.x = x
        return x @ self.weight + self.bias

    def backward(self, grad_output):
        self.weight.grad += self.factor * self.x.t() @ grad_output
        self.bias.grad += grad_output.sum(0)
        return grad_output @ self.weight.t()


class NeedsArgs(nn.Module):
    def __init__(self, width):
        super().__init__()


class BadBias(nn.Linear):
    """torch.nn.Linear's forward, a bias gradient averaged instead of summed."""

    def __init__(self):
        super().__init__(5, 3)

    def __call__(self, x):
        self.seen = x
        return super().__call__(x)

    def backward(self, grad_output):
        self.weight.grad += grad_output.t() @ self.seen
        self.bias.grad += grad_output.mean(0)
        return grad_output @ self.weight


class Crashes(nn.Module):
    def forward(self, x):
        return x @ torch.ones(2, 2)

    def backward(self, grad_output):
        return grad_output


NotAModule = int
'''


@pytest.fixture
def layer_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_layer.py"
    path.write_text(OWN_LINEAR)
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_mlp_from_a_spec_prints_the_table_and_one_verdict_line(capsys) -> None:
    code, out, err = _run(capsys, "--model", "784-50-10", "--act", "tanh", "--loss", "mse")
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert lines[0].startswith("gradient check of Sequential of 3 layers with MSELoss: float64")
    assert lines[1].split("|")[0].strip() == "gradient"
    assert any(line.startswith("0.weight ") and "(50, 784)" in line for line in lines)
    assert lines[-1].startswith("OK: all 11 gradients match")


def test_json_prints_exactly_one_object(capsys) -> None:
    code, out, _ = _run(
        capsys,
        "--model",
        "8-6-4",
        "--loss",
        "cross_entropy",
        "--json",
        "--dtype",
        "float32",
        "--norm",
        "layernorm",
    )
    assert code == 0
    data = json.loads(out)  # the whole of stdout is one JSON document
    assert set(data) == {"ok", "compared", "skipped", "first_faulty", "diagnosis", "rows"}
    assert data["ok"] is True and data["first_faulty"] is None and data["diagnosis"] is None
    assert data["compared"] == len(data["rows"]) and data["skipped"] == 0


def test_a_users_module_without_twin_passes_by_finite_differences(capsys, layer_file) -> None:
    code, out, _ = _run(capsys, "--module", f"{layer_file}:MyLinear", "--input-shape", "7,5")
    assert code == 0, out
    assert "note: MyLinear has no torch.nn twin" in out
    assert "random upstream gradient" in out.splitlines()[0]


def test_a_wrong_user_module_exits_1_with_the_diagnosis(capsys, layer_file) -> None:
    code, out, _ = _run(
        capsys,
        "--module",
        f"{layer_file}:MyLinear",
        "--input-shape",
        "7,5",
        "--args",
        '{"factor": 2.0}',
        "--json",
    )
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False and data["first_faulty"] == "MyLinear"
    assert data["diagnosis"].startswith("weight is 2 × the reference")
    assert [r["pattern"] for r in data["rows"] if r["verdict"] == "wrong"] == ["factor 2"]


def test_a_wrong_subclass_of_a_handgrad_layer_has_both_references(capsys, layer_file) -> None:
    code, out, _ = _run(capsys, "--module", f"{layer_file}:BadBias", "--loss", "mse")
    assert code == 1
    last = out.strip().splitlines()[-1]
    assert last.startswith("FAIL: first faulty layer BadBias: bias is 1/N × the reference")
    assert "N = 4, the batch size" in last  # the default batch: 4 rows of in_features
    assert "autograd + finite differences" in out.splitlines()[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "one of the arguments --model --module --function is required"),
        (["--model", "784-x-10"], "model spec"),
        (["--model", "8-4", "--act", "tahn"], "invalid choice 'tahn' (did you mean tanh?)"),
        (["--model", "8-4", "--batch", "0"], "--batch must be at least 1"),
        (["--module", "nowhere.py:MyLinear"], "no such file"),
        (["--module", "{file}"], "expected FILE.py:CLASS"),
        (["--module", "{file}:Missing"], "has no class Missing; it defines"),
        (["--module", "{file}:NotAModule"], "not a handgrad.nn.Module subclass"),
        (
            ["--module", "{file}:NeedsArgs", "--input-shape", "2,2"],
            "must be constructible without arguments",
        ),
        (["--module", "{file}:MyLinear", "--args", "[5,"], "--args: not valid JSON"),
        (["--module", "{file}:MyLinear", "--input-shape", "7,a"], "--input-shape: expected"),
        (["--module", "{file}:Crashes"], "give the input's shape with --input-shape"),
        (
            ["--module", "{file}:Crashes", "--input-shape", "3,5", "--loss", "mse"],
            "forward failed: RuntimeError",
        ),
        (["--module", "{file}:Crashes", "--input-shape", "3,5"], "RuntimeError"),
    ],
)
def test_bad_usage_exits_2_with_one_line(capsys, layer_file, argv, message) -> None:
    code, out, err = _run(capsys, *[a.replace("{file}", str(layer_file)) for a in argv])
    assert code == 2
    assert out == ""
    assert message in err
    # --module says first that it runs the file (in a child process), then the one error line.
    lines = [line for line in err.strip().splitlines() if "runs its top-level code" not in line]
    assert len(lines) == 1 and "Traceback" not in err


def test_a_file_that_cannot_be_imported_exits_2(capsys, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def oops(:\n")
    code, _, err = _run(capsys, "--module", f"{broken}:X", "--input-shape", "2,2")
    assert code == 2 and "cannot import" in err and "SyntaxError" in err
    exits = tmp_path / "exits.py"
    exits.write_text("raise SystemExit(3)\n")
    code, _, err = _run(capsys, "--module", f"{exits}:X", "--input-shape", "2,2")
    assert code == 2 and "cannot import" in err


def test_help_says_the_file_is_imported(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "The file is imported" in " ".join(out.split())
    assert "Exit status: 0 all gradients right, 1 a gradient is wrong, 2 bad usage" in out
