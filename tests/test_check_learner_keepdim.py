"""The known misdiagnosis, fixed: a bias gradient ``g.sum(0, keepdim=True)`` in a
``handgrad.nn.Module`` names the kept dimension (not "not summed over the batch (N = 1)") and
the layer's other gradients are still checked."""

from __future__ import annotations

import pytest
import torch

from handgrad import nn
from handgrad.check import diagnose as d
from handgrad.check import gradcheck


class KeptBias(nn.Linear):
    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        x = self._x_for_test
        assert self.weight.grad is not None and self.bias is not None
        self.weight.grad += grad_output.t() @ x
        self.bias.grad += grad_output.sum(0, keepdim=True)  # torch refuses (1, D) into (D,)
        return grad_output @ self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._x_for_test = x
        return super().forward(x)


class KeptBiasAssigned(KeptBias):
    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        x = self._x_for_test
        assert self.weight.grad is not None and self.bias is not None
        self.weight.grad += grad_output.t() @ x
        self.bias.grad = grad_output.sum(0, keepdim=True)
        return grad_output @ self.weight


class KeptBiasAndWrongWeight(KeptBias):
    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        x = self._x_for_test
        assert self.weight.grad is not None and self.bias is not None
        self.weight.grad += 2 * grad_output.t() @ x  # a second bug, found all the same
        self.bias.grad += grad_output.sum(0, keepdim=True)
        return grad_output @ self.weight


@pytest.mark.parametrize("cls", [KeptBias, KeptBiasAssigned])
def test_kept_dimension_is_named_and_the_other_rows_are_checked(cls: type) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(cls(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randn(7, 5, dtype=torch.float64)
    report = gradcheck(model, nn.MSELoss(), x, torch.randn(7, 3, dtype=torch.float64))
    assert not report.ok
    rows = {r.name: r for r in report.rows}
    bias = rows["0.bias"]
    assert bias.diagnosis is not None and bias.diagnosis.pattern == d.KEPT_DIM
    message = bias.diagnosis.message
    assert "keepdim=True" in message and "values are right" in message
    assert "N = 1" not in message and "not summed" not in message
    assert bias.shape == (1, 4)
    assert rows["0.weight"].verdict == "ok"
    assert not any(r.verdict == "skipped" for r in report.rows)


def test_a_second_bug_in_the_layer_is_still_found() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(KeptBiasAndWrongWeight(5, 4))
    x = torch.randn(7, 5, dtype=torch.float64)
    report = gradcheck(model, nn.MSELoss(), x, torch.randn(7, 4, dtype=torch.float64))
    rows = {r.name: r for r in report.rows}
    assert rows["0.weight"].verdict == "wrong"
    assert rows["0.weight"].diagnosis is not None
    assert rows["0.weight"].diagnosis.pattern == d.FACTOR_2


def test_diagnose_error_names_the_kept_dimension() -> None:
    b = torch.zeros(5)
    b.grad = torch.zeros(5)
    with pytest.raises(RuntimeError) as raised:
        b.grad += torch.ones(1, 5)
    found = d.diagnose_error("bias", raised.value)
    assert found.pattern == d.KEPT_DIM and "N = 1" not in found.message
    with pytest.raises(RuntimeError) as raised:
        b.grad += torch.ones(7, 5)
    assert d.diagnose_error("bias", raised.value).pattern == d.BIAS_NOT_SUMMED
