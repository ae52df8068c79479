"""``handgrad.check.cases``, ``check.isolated`` and ``check.user_file`` called with plain
arguments: what ``handgrad check`` builds, runs and refuses, without the command line."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from handgrad import nn
from handgrad.check import cases, isolated
from handgrad.check.gradcheck import REFERENCES
from handgrad.check.user_file import import_file, one_line
from handgrad.cli import check_cmd
from handgrad.errors import HandgradError

LAYERS = """
import torch
from handgrad import nn
from helper_for_layers import FACTOR


class MyLinear(nn.Module):
    def __init__(self, d_in=5, d_out=3, factor=FACTOR):
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


class Wide(nn.Linear):
    def __init__(self):
        super().__init__(6, 4)


class Flat(nn.Module):
    def forward(self, x):
        return x.sum(1)

    def backward(self, grad_output):
        return grad_output[:, None].expand(-1, 3)


class MyLoss(nn.MSELoss):
    pass
"""


@pytest.fixture
def layers(tmp_path: Path) -> Path:
    (tmp_path / "helper_for_layers.py").write_text("FACTOR = 1.0\n")
    path = tmp_path / "layers.py"
    path.write_text(LAYERS)
    return path


def test_the_cli_choices_are_the_libraries() -> None:
    assert check_cmd.LOSSES == cases.LOSSES
    assert tuple(cases.DTYPES) == check_cmd.DTYPES
    assert sorted(check_cmd.REFERENCES) == sorted(REFERENCES)


def test_check_mlp_is_seeded_and_leaves_the_callers_random_stream_alone() -> None:
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = cases.check_mlp("8-6-4", act="tanh", loss="mse", batch=3, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = cases.check_mlp("8-6-4", act="tanh", loss="mse", batch=3, seed=7)
    other = cases.check_mlp("8-6-4", act="tanh", loss="mse", batch=3, seed=8)
    assert first.ok and cases.exit_code(first) == 0
    assert first.to_json() == again.to_json() and first.to_json() != other.to_json()
    assert "0.weight" in [r.name for r in first.rows]
    assert first.row("0.weight").shape == (6, 8)


def test_check_mlp_with_a_class_loss_checks_the_loss_input() -> None:
    report = cases.check_mlp("5-4-3", loss="cross_entropy", norm="layernorm", batch=2)
    assert report.ok
    assert report.row("loss (CrossEntropyLoss) input").shape == (2, 3)


def test_an_unknown_loss_or_dtype_is_refused_with_the_closest() -> None:
    with pytest.raises(ValueError, match=r"unknown loss 'mes' \(did you mean mse\?\)"):
        cases.check_mlp("4-2", loss="mes")
    with pytest.raises(ValueError, match="unknown dtype 'float16'"):
        cases.check_mlp("4-2", dtype="float16")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch": 0}, "--batch must be at least 1, got 0"),
        ({"fd_samples": 0}, "--fd-samples must be at least 1"),
        ({"dropout": 1.0}, r"--dropout: expected a probability in \[0, 1\)"),
        ({"seed": -1}, "--seed: expected an integer >= 0"),
        ({"model": "8-4", "module_args": "[1]"}, "--args: applies to --module only"),
        ({"model": "8-4", "input_shape": "2,2"}, "--input-shape: applies to --module only"),
        ({"model": "100000-100000-100000", "batch": 100000}, "needs about .* of memory"),
    ],
)
def test_check_options_refuses_with_one_line(options: dict, message: str) -> None:
    plain = {"batch": 4, "fd_samples": 24, "dropout": 0.0, "seed": 0, **options}
    with pytest.raises(HandgradError, match=message):
        cases.check_options(**plain)


def test_check_options_lets_a_module_through_without_building_anything() -> None:
    cases.check_options(batch=4, fd_samples=1, dropout=0.5, seed=0, input_shape="3,5")


def test_module_file_splits_the_spec_and_needs_the_file(layers: Path) -> None:
    assert cases.module_file(f"{layers}:MyLinear") == (layers, "MyLinear")
    with pytest.raises(HandgradError, match=r"expected FILE.py:CLASS"):
        cases.module_file(str(layers))
    with pytest.raises(HandgradError, match=r"no such file: nowhere.py"):
        cases.module_file("nowhere.py:X")


def test_load_class_names_what_the_file_defines(layers: Path) -> None:
    cls = cases.load_class(f"{layers}:MyLinear")
    assert issubclass(cls, nn.Module) and cls.__name__ == "MyLinear"
    with pytest.raises(HandgradError, match=r"has no class Nope; it defines .*MyLinear"):
        cases.load_class(f"{layers}:Nope")
    with pytest.raises(HandgradError, match=r"is not a handgrad.nn.Module subclass"):
        cases.load_class(f"{layers}:FACTOR")
    with pytest.raises(HandgradError, match="MyLoss is a loss"):
        cases.load_class(f"{layers}:MyLoss")


def test_construct_takes_a_json_list_or_object(layers: Path) -> None:
    cls = cases.load_class(f"{layers}:MyLinear")
    assert cases.construct(cls, "s", "[2, 7]").weight.shape == (2, 7)
    assert cases.construct(cls, "s", '{"d_out": 9}').weight.shape == (5, 9)
    assert cases.construct(cls, "s", None).weight.shape == (5, 3)
    with pytest.raises(HandgradError, match="--args: not valid JSON"):
        cases.construct(cls, "s", "[2,")
    with pytest.raises(HandgradError, match="expected a JSON list or object, got '3'"):
        cases.construct(cls, "s", "3")
    with pytest.raises(HandgradError, match=r"constructible with --args .*TypeError"):
        cases.construct(cls, "s", '{"width": 1}')


def test_parse_input_shape(layers: Path) -> None:
    wide = cases.construct(cases.load_class(f"{layers}:Wide"), "s", None)
    assert cases.parse_input_shape(None, wide, "s") == (4, 6)  # 4 rows of in_features
    assert cases.parse_input_shape("7x5", wide, "s") == (7, 5)
    assert cases.parse_input_shape("2,3,4", wide, "s") == (2, 3, 4)
    flat = cases.construct(cases.load_class(f"{layers}:Flat"), "s", None)
    with pytest.raises(HandgradError, match="give the input's shape with --input-shape"):
        cases.parse_input_shape(None, flat, "s")
    for bad, message in (("7,a", "expected sizes joined"), ("7,0", "must be positive")):
        with pytest.raises(HandgradError, match=message):
            cases.parse_input_shape(bad, wide, "s")
    with pytest.raises(HandgradError, match=r"needs about .* of memory"):
        cases.parse_input_shape("100000,100000,1000", wide, "s")


def test_loss_and_target_fit_the_models_output() -> None:
    model = nn.mlp([4, 3, 5], "relu")
    x = torch.randn(6, 4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    assert cases.loss_and_target("none", model, x, torch.float64, gen, None) == (None, None)
    loss, target = cases.loss_and_target("sse", model, x, torch.float64, gen, None)
    assert isinstance(loss, nn.SumSquaredLoss) and target is not None
    assert target.shape == (6, 5) and target.dtype == torch.float64
    loss, target = cases.loss_and_target("nll", model, x, torch.float32, gen, None)
    assert isinstance(loss, nn.NLLLoss) and target is not None
    assert target.shape == (6,) and int(target.min()) >= 0 and int(target.max()) < 5


def test_a_class_loss_needs_an_n_by_c_output(layers: Path) -> None:
    flat = cases.construct(cases.load_class(f"{layers}:Flat"), "s", None)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(HandgradError, match=r"needs a model output of shape \(N, C\), got \(4,\)"):
        cases.loss_and_target("cross_entropy", flat, x, torch.float64, gen, "s")


def test_check_module_in_this_process_finds_a_doubled_gradient(layers: Path) -> None:
    spec = f"{layers}:MyLinear"
    right = cases.check_module(spec, input_shape="7,5")
    wrong = cases.check_module(spec, input_shape="7,5", module_args='{"factor": 2.0}')
    assert right.ok and cases.exit_code(right) == 0
    assert not wrong.ok and cases.exit_code(wrong) == 1
    assert (
        wrong.first_faulty == "MyLinear" and wrong.row("weight").to_dict()["pattern"] == "factor 2"
    )


def test_import_file_puts_its_folder_on_the_path_only_while_importing(layers: Path) -> None:
    before = list(sys.path)
    module = import_file(layers, "--module", "_handgrad_test_")
    assert module.FACTOR == 1.0  # imported from its neighbour helper_for_layers.py
    assert sys.path == before
    exits = layers.parent / "exits.py"
    exits.write_text("raise SystemExit(3)\n")
    with pytest.raises(
        HandgradError, match=re.escape(f"--function: cannot import {exits}: SystemExit: 3")
    ):
        import_file(exits, "--function", "_handgrad_test_")
    assert sys.path == before
    with pytest.raises(HandgradError, match="--module: no such file"):
        import_file(layers.parent / "none.py", "--module", "_handgrad_test_")


def test_one_line_keeps_the_first_line() -> None:
    assert one_line(ValueError("first\nsecond")) == "ValueError: first"
    assert one_line(KeyError()) == "KeyError"


def test_the_child_gives_the_same_report_as_this_process(layers: Path) -> None:
    spec = f"{layers}:MyLinear"
    options = {"input_shape": "7,5", "module_args": '{"factor": 2.0}', "seed": 3}
    verdict = isolated.check_module_in_child(spec, options)
    here = cases.check_module(spec, **options)
    assert verdict.ok is False and cases.exit_code(verdict) == 1
    assert str(verdict) == str(here)
    assert json.loads(verdict.to_json()) == json.loads(here.to_json())


def test_a_file_that_exits_at_import_is_never_a_pass(tmp_path: Path) -> None:
    quits = tmp_path / "quits.py"
    quits.write_text("import os\nos._exit(0)\n")
    with pytest.raises(HandgradError, match="ended the check before it gave a verdict"):
        isolated.check_module_in_child(f"{quits}:X", {"input_shape": "2,2"})
    with pytest.raises(HandgradError, match="ended the check before it gave a result"):
        isolated.check_function_in_child(quits, seed=0, reference="both", fd_samples=4)


def test_a_function_file_is_checked_in_a_child() -> None:
    examples = Path(__file__).resolve().parents[1] / "examples"
    report = isolated.check_function_in_child(
        examples / "ninja_style_wrong.py", seed=0, reference="autograd", fd_samples=4
    )
    assert not report.ok and report.first_wrong == "counts"
    assert cases.exit_code(report) == 1


def test_function_file_refuses_a_missing_file_and_fd_alone(tmp_path: Path) -> None:
    with pytest.raises(HandgradError, match="--function: no such file"):
        isolated.function_file(str(tmp_path / "none.py"), "both")
    path = tmp_path / "f.py"
    path.write_text("")
    assert isolated.function_file(str(path), "autograd") == path
    with pytest.raises(HandgradError, match="--reference fd: --function always checks"):
        isolated.function_file(str(path), "fd")
