"""``gradcheck`` and ``check_accumulation``: rows, references, localization, guards, report."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor

from handgrad import nn
from handgrad.check import GradReport, check_accumulation, gradcheck
from handgrad.check import diagnose as d
from handgrad.check.compare import DRIFT, ERROR, INHERITED, OK, SHAPE, SKIPPED, VACUOUS, WRONG


def _data(n: int = 5, d_in: int = 6, classes: int = 3, seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=gen, dtype=torch.float64), torch.arange(n) % classes


def _mlp(spec: str = "6-5-3", act: str = "tanh", **kw) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.mlp(spec, act, **kw)


def test_rows_cover_every_gradient_in_backward_order() -> None:
    x, y = _data()
    report = gradcheck(_mlp(), nn.CrossEntropyLoss(), x, y)
    assert report.ok, str(report)
    assert [row.name for row in report.rows] == [
        "loss (CrossEntropyLoss) input",
        "2 (Linear) output", "2.weight", "2.bias", "2 (Linear) input",
        "1 (Tanh) output", "1 (Tanh) input",
        "0 (Linear) output", "0.weight", "0.bias", "0 (Linear) input",
    ]  # fmt: skip
    assert [row.kind for row in report.rows[:5]] == ["loss", "output", "param", "param", "input"]
    weight = report.row("0.weight")
    assert weight.shape == (5, 6) and weight.reference == "autograd"
    assert weight.exact is not None and weight.approx and weight.max_abs_diff is not None
    assert weight.fd is not None and weight.fd.checked == 24 and weight.fd.ok
    assert report.compared == 11 and report.skipped == 0
    assert report.first_faulty is None and report.diagnosis is None


def test_the_callers_model_and_random_state_are_untouched() -> None:
    model = _mlp("6-5-3", "relu", norm="batchnorm", dropout=0.2)
    model[0].weight.grad.fill_(0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    x, y = _data()
    report = gradcheck(model, nn.CrossEntropyLoss(), x.float(), y, dtype=torch.float64)
    assert report.ok, str(report)
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
        assert value.dtype == before[key].dtype
    assert torch.all(model[0].weight.grad == 0.5)
    assert model.training


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_dropout_and_normalization_in_both_modes(mode: str, dtype: torch.dtype) -> None:
    model = _mlp("6-7-7-3", "leaky_relu", norm="batchnorm", dropout=0.3)
    model = nn.Sequential(*model, nn.LayerNorm(3))
    if mode == "eval":
        model.eval()
    x, y = _data(n=6)
    report = gradcheck(model, nn.CrossEntropyLoss(label_smoothing=0.1), x, y, dtype=dtype)
    assert report.ok, str(report)


def test_reference_choices() -> None:
    x, y = _data()
    auto = gradcheck(_mlp(), nn.CrossEntropyLoss(), x, y, reference="autograd")
    assert auto.ok and all(row.fd is None for row in auto.rows)
    fd = gradcheck(_mlp(), nn.CrossEntropyLoss(), x, y, reference="fd")
    assert fd.ok
    param_rows = [row for row in fd.rows if row.kind != "output"]
    assert all(row.reference == "finite differences" and row.exact is None for row in param_rows)
    assert "finite differences" in fd.verdict_line()


class OwnLinear(nn.Module):
    """A user's layer with its own forward: no torch twin, so finite differences only."""

    def __init__(self, d_in: int = 6, d_out: int = 4, factor: float = 1.0) -> None:
        super().__init__()
        self.register_parameter("w", torch.randn(d_in, d_out))
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        self._x = x
        return x @ self.w

    def backward(self, grad_output: Tensor) -> Tensor:
        self.w.grad += self.factor * self._x.t() @ grad_output
        return grad_output @ self.w.t()


def test_a_module_without_twin_is_checked_by_finite_differences() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), OwnLinear(6, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = _data()
    report = gradcheck(model, nn.CrossEntropyLoss(), x, y)
    assert report.ok, str(report)
    assert report.row("2.w").reference == "finite differences"
    assert report.row("0.weight").reference == "autograd"
    assert any("2 (OwnLinear) has no torch.nn twin" in note for note in report.notes)
    # The layers below get a reference upstream gradient by finite differences everywhere.
    assert report.row("1 (ReLU) output").reference == "finite differences"

    skipped = gradcheck(model, nn.CrossEntropyLoss(), x, y, reference="autograd")
    assert skipped.row("2.w").verdict == SKIPPED and skipped.ok
    assert "skipped" in skipped.verdict_line()


def test_a_wrong_module_without_twin_is_diagnosed_from_finite_differences() -> None:
    torch.manual_seed(0)
    report = gradcheck(OwnLinear(factor=2.0), None, torch.randn(5, 6, dtype=torch.float64))
    assert not report.ok
    assert report.first_faulty == "OwnLinear"
    assert report.row("w").diagnosis is not None
    assert report.row("w").diagnosis.pattern == d.FACTOR_2
    assert "random upstream gradient" in str(report).splitlines()[0]


def test_one_wrong_layer_is_blamed_alone_and_its_error_is_shown_as_inherited() -> None:
    class SignFlip(nn.Linear):
        def backward(self, grad_output: Tensor) -> Tensor:
            return -super().backward(grad_output)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), SignFlip(5, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = _data()
    report = gradcheck(model, nn.CrossEntropyLoss(), x, y)
    verdicts = {row.name: row.verdict for row in report.rows}
    assert verdicts["2 (SignFlip) input"] == WRONG
    assert verdicts["1 (Tanh) output"] == INHERITED  # the chain carries the error down ...
    assert verdicts["1 (Tanh) input"] == OK  # ... but the layer below is not blamed
    assert verdicts["0.weight"] == OK
    assert report.faulty_layers == ["2 (SignFlip)"]
    assert "from 2 (SignFlip)" in report.row("0 (Linear) output").note


def test_two_wrong_layers_the_first_in_backward_order_is_named() -> None:
    class Twice(nn.Linear):
        def backward(self, grad_output: Tensor) -> Tensor:
            return super().backward(2 * grad_output)

    torch.manual_seed(0)
    model = nn.Sequential(Twice(6, 5), nn.Tanh(), Twice(5, 3))
    x, y = _data()
    report = gradcheck(model, nn.CrossEntropyLoss(), x, y)
    assert report.first_faulty == "2 (Twice)"
    assert report.faulty_layers == ["2 (Twice)", "0 (Twice)"]
    assert report.first_diagnosis is not None
    assert report.first_diagnosis.pattern == d.FACTOR_2
    assert "and 1 more faulty layer" in report.verdict_line()


def test_zero_gradients_fail_loudly_instead_of_passing() -> None:
    model = _mlp("6-4-3", "relu").double()
    x, _ = _data()
    target = model(x)  # a perfect fit: dL/dy is exactly zero everywhere
    report = gradcheck(model, nn.MSELoss(), x, target)
    assert not report.ok
    assert report.first_faulty is None  # nothing is wrong, nothing is proven either
    assert report.vacuous_rows and all(r.verdict == VACUOUS for r in report.vacuous_rows)
    assert report.verdict_line().startswith("FAIL: nothing proven for")


def test_a_dead_relu_layer_makes_the_rows_below_vacuous() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    model[0].bias.fill_(-100.0)  # every ReLU input negative
    x, y = _data()
    report = gradcheck(model, nn.CrossEntropyLoss(), x, y)
    assert not report.ok
    assert report.row("2.weight").verdict == VACUOUS
    assert report.row("0.weight").verdict == VACUOUS
    assert report.row("2 (Linear) input").verdict == OK


def test_a_misshapen_input_gradient_is_reported_as_such() -> None:
    class Transposed(nn.Linear):
        def backward(self, grad_output: Tensor) -> Tensor:
            return super().backward(grad_output).t()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), Transposed(4, 3))
    x, y = _data()
    report = gradcheck(model, nn.CrossEntropyLoss(), x, y)
    row = report.row("2 (Transposed) input")
    assert row.verdict == SHAPE and row.shape == (4, 5) and row.expected_shape == (5, 4)
    assert row.diagnosis is not None and row.diagnosis.pattern == d.TRANSPOSE
    assert report.row("1 (Tanh) output").verdict == INHERITED  # arrives misshapen ...
    assert report.row("0 (Linear) output").verdict == SKIPPED  # ... and Tanh's backward raised
    assert report.row("1 (Tanh) input").verdict == OK  # in isolation Tanh is right


def test_a_backward_that_raises_is_an_error_row_not_a_crash() -> None:
    class Unfinished(nn.Module):
        def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
            return 2 * x

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3), Unfinished())
    x, y = _data()
    report = gradcheck(model, nn.CrossEntropyLoss(), x, y)
    row = report.row("1 (Unfinished) input")
    assert row.verdict == ERROR and not report.ok
    assert report.first_diagnosis is not None
    assert "NotImplementedError" in report.first_diagnosis.message


def test_a_skipped_input_gradient_is_switched_on_for_the_check() -> None:
    model = _mlp()
    model.input_grad = False
    x, y = _data()
    report = gradcheck(model, nn.CrossEntropyLoss(), x, y)
    assert report.ok, str(report)
    assert report.row("0 (Linear) input").shape == (5, 6)
    assert any("input_grad was off on 0" in note for note in report.notes)
    assert model.input_grad is False


def test_loss_with_reduction_none_and_a_random_upstream() -> None:
    x, _ = _data()
    target = torch.randn(5, 3, dtype=torch.float64)
    report = gradcheck(_mlp(), nn.MSELoss("none"), x, target)
    assert report.ok, str(report)
    assert all(row.verdict != DRIFT for row in report.rows)


def test_table_is_aligned_and_ends_with_one_verdict_line() -> None:
    x, y = _data()
    report = gradcheck(_mlp(), nn.CrossEntropyLoss(), x, y)
    lines = str(report).splitlines()
    header, rule, *body = lines[1:-1]
    assert header.startswith("gradient") and set(rule) <= {"-", "+"}
    bars = [i for i, ch in enumerate(rule) if ch == "+"]
    for line in [header, *body]:
        assert [i for i, ch in enumerate(line) if ch == "|"][: len(bars)] == bars, line
    assert len(body) == len(report.rows)
    assert lines[-1] == report.verdict_line() and lines[-1].startswith("OK: all 11 gradients")


def test_json_has_exactly_the_documented_keys() -> None:
    x, y = _data()
    report: GradReport = gradcheck(_mlp(), nn.CrossEntropyLoss(), x, y)
    data = json.loads(report.to_json())
    assert set(data) == {"ok", "compared", "skipped", "first_faulty", "diagnosis", "rows"}
    assert data["ok"] is True and data["compared"] == 11 and len(data["rows"]) == 11
    assert data["rows"][2]["name"] == "2.weight" and data["rows"][2]["shape"] == [3, 5]


def test_bad_arguments_are_errors_for_people() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match="reference must be one of"):
        gradcheck(_mlp(), nn.CrossEntropyLoss(), x, y, reference="torch")
    with pytest.raises(ValueError, match="dtype must be"):
        gradcheck(_mlp(), nn.CrossEntropyLoss(), x, y, dtype=torch.float16)
    with pytest.raises(TypeError, match=r"handgrad\.nn\.Module"):
        gradcheck(torch.nn.Linear(6, 3), nn.CrossEntropyLoss(), x, y)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs a target"):
        gradcheck(_mlp(), nn.CrossEntropyLoss(), x, None)
    with pytest.raises(ValueError, match="fd_samples"):
        gradcheck(_mlp(), nn.CrossEntropyLoss(), x, y, fd_samples=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(
    "loss",
    [nn.CrossEntropyLoss(), nn.MSELoss(), nn.MSELoss("sum"), nn.MSELoss("none")],
    ids=["ce-mean", "mse-mean", "mse-sum", "mse-none"],
)
def test_per_sample_accumulation_equals_the_batched_gradient(loss: nn.Loss, dtype) -> None:
    model = nn.Sequential(*_mlp("6-5-5-3", "gelu"), nn.LayerNorm(3))
    x, y = _data(n=7)
    target = y if isinstance(loss, nn.CrossEntropyLoss) else torch.randn(7, 3).double()
    report = check_accumulation(model, loss, x, target, dtype=dtype)
    assert report.ok, str(report)
    assert report.scale == (1 / 7 if loss.reduction == "mean" else 1.0)
    if dtype == torch.float64:
        assert max(row.max_rel_err for row in report.rows) <= 1e-12
    assert str(report).splitlines()[-1].startswith("OK")


def test_accumulation_catches_a_backward_that_assigns() -> None:
    class Assigns(nn.Linear):
        def backward(self, grad_output: Tensor) -> Tensor:
            x = self.seen
            self.weight.grad = grad_output.t() @ x  # bug: = instead of +=
            self.bias.grad += grad_output.sum(0)
            return grad_output @ self.weight

        def __call__(self, x: Tensor) -> Tensor:
            self.seen = x
            return super().__call__(x)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), Assigns(4, 3))
    x, y = _data()
    report = check_accumulation(model, nn.CrossEntropyLoss(), x, y)
    assert not report.ok
    assert [row.name for row in report.faulty] == ["2.weight"]
    assert report.faulty[0].diagnosis is not None
    assert report.faulty[0].diagnosis.pattern == d.NOT_ACCUMULATED
    assert "last sample" in str(report)


def test_accumulation_refuses_layers_that_couple_the_batch() -> None:
    model = _mlp("6-5-3", norm="batchnorm")
    x, y = _data()
    with pytest.raises(ValueError, match=r"model\.eval"):
        check_accumulation(model, nn.CrossEntropyLoss(), x, y)
    assert check_accumulation(model.eval(), nn.CrossEntropyLoss(), x, y).ok


class SoftL1(nn.Loss):
    """L = mean(√(1 + d²) − 1), d = x − t: a user's loss with its own forward (no twin)."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        self._d = input - target
        return self._reduce(torch.sqrt(1 + self._d**2) - 1)

    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:  # type: ignore[override]
        return self._d / torch.sqrt(1 + self._d**2) / self._d.numel()


class Net(nn.Module):
    """A composite whose forward wires its children itself: checked as one unit."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 5)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(5, 2)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.fc2(self.act(self.fc1(x)))

    def backward(self, grad_output: Tensor) -> Tensor:
        return self.fc1.backward(self.act.backward(self.fc2.backward(grad_output)))


def test_a_composite_module_and_a_loss_without_twins_use_finite_differences() -> None:
    torch.manual_seed(0)
    x, _ = _data()
    report = gradcheck(Net(), SoftL1(), x, torch.randn(5, 2, dtype=torch.float64))
    assert report.ok, str(report)
    assert [row.name for row in report.rows if row.kind == "param"] == [
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
    ]  # fmt: skip
    assert report.row("loss (SoftL1) input").reference == "finite differences"
    assert report.verdict_line().endswith("(finite differences)")


def test_a_model_with_flattened_parameters() -> None:
    model = _mlp("6-5-3", "relu").flatten_parameters()
    x, y = _data()
    report = gradcheck(model, nn.CrossEntropyLoss(), x, y, dtype=torch.float32)
    assert report.ok, str(report)


def test_float32_is_judged_against_torchs_own_float32_where_the_truth_is_ill_conditioned() -> None:
    # BatchNorm of values far from 0 with a small spread: float32 computes x − μ with heavy
    # cancellation, torch as much as handgrad, so both miss the float64 finite differences by
    # more than float32's usual tolerance. The hand-written value is accepted when it is no
    # farther from that truth than twice torch's own float32 result.
    gen = torch.Generator().manual_seed(0)
    x = 20 * torch.randn(1, 8, generator=gen, dtype=torch.float64)
    x = x + 0.05 * torch.randn(2, 8, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(8), nn.GELU(), nn.Linear(8, 3))
    report = gradcheck(model, nn.CrossEntropyLoss(), x, torch.tensor([0, 2]), dtype=torch.float32)
    assert report.ok, str(report)


def test_a_bias_in_front_of_batchnorm_is_explained() -> None:
    model = _mlp("6-5-3", "tanh", norm="batchnorm").double()
    x, y = _data(n=2)
    two = gradcheck(model, nn.CrossEntropyLoss(), x, y[:2])
    # With two samples the reference gradient is zero up to rounding; whether every entry comes
    # out exactly 0.0 depends on the BLAS's order of summation. Either way the note explains it.
    if two.row("0.bias").verdict == VACUOUS:
        assert not two.ok
        assert any("exactly zero by construction" in note for note in two.notes)
    else:
        assert two.row("0.bias").verdict == OK
        assert any("zero up to rounding" in note for note in two.notes)
    # A zero scale after the normalization makes that gradient exactly zero on any machine.
    silenced = _mlp("6-5-3", "tanh", norm="batchnorm").double()
    silenced[1].weight.zero_()
    exact_zero = gradcheck(silenced, nn.CrossEntropyLoss(), x, y[:2])
    assert exact_zero.row("0.bias").verdict == VACUOUS and not exact_zero.ok
    assert any("exactly zero by construction" in note for note in exact_zero.notes)
    x, y = _data(n=6)
    rounding = gradcheck(model, nn.CrossEntropyLoss(), x, y)
    assert rounding.ok and rounding.row("0.bias").verdict == OK
    assert any("zero up to rounding" in note for note in rounding.notes)
