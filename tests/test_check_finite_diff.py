"""Kink-aware central differences: exact on smooth functions, and at a ReLU kink a correct
subgradient is accepted (never an error) while a wrong value still fails."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from handgrad import nn
from handgrad.check import gradcheck
from handgrad.check.compare import TOLERANCES
from handgrad.check.finite_diff import STEP, full_gradient, judge, probe, sample_indices

F64 = TOLERANCES[torch.float64]


def _function(f, x: Tensor, u: Tensor):
    """evaluate() for L = Σ f(x) · u, relative to its value at the current x."""
    out0 = f(x).clone()

    def evaluate() -> tuple[float, float]:
        y = f(x)
        return float(((y - out0) * u).sum()), float((y.abs() * u.abs()).sum())

    return evaluate


def test_central_differences_agree_with_a_smooth_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    u = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    evaluate = _function(torch.sin, x, u)
    probes = probe(evaluate, x, list(range(x.numel())))
    right = judge(probes, torch.cos(x) * u, rtol=F64.fd_rtol, scale=1.0)
    assert right.ok and right.checked == 20 and right.kinks == 0
    assert right.max_abs_diff < 1e-8
    wrong = judge(probes, torch.cos(x) * u + 1e-4, rtol=F64.fd_rtol, scale=1.0)
    assert wrong.agreed == 0
    assert torch.allclose(full_gradient(evaluate, x), torch.cos(x) * u, atol=1e-8)


def test_probing_restores_every_coordinate_exactly() -> None:
    x = torch.tensor([0.1, 1e5, -3.3, 0.0], dtype=torch.float64)
    before = x.clone()
    probe(_function(torch.exp, x, torch.ones(4, dtype=torch.float64)), x, [0, 1, 2, 3])
    assert torch.equal(x, before)


def test_sampling_takes_everything_when_small_and_k_distinct_otherwise() -> None:
    gen = torch.Generator().manual_seed(0)
    assert sample_indices(5, 8, gen) == [0, 1, 2, 3, 4]
    picked = sample_indices(1000, 8, gen)
    assert len(set(picked)) == 8 and all(0 <= j < 1000 for j in picked)


# x exactly at the kink, and within the step of it on either side.
KINK_INPUTS = torch.tensor([0.0, 0.0, 3e-7, -4e-7, 0.7, -0.5], dtype=torch.float64)


@pytest.mark.parametrize("convention", ["x > 0", "x >= 0"])
def test_relu_kink_accepts_either_subgradient(convention: str) -> None:
    x = KINK_INPUTS.clone()
    u = torch.tensor([1.5, -2.0, 1.0, 1.0, 0.5, 2.0], dtype=torch.float64)
    mask = x > 0 if convention == "x > 0" else x >= 0
    hand = u * mask
    probes = probe(_function(torch.relu, x, u), x, list(range(6)))
    result = judge(probes, hand, rtol=F64.fd_rtol, scale=2.0)
    assert result.ok, result.failures
    assert result.kinks == 4  # the two zeros and the two within 1e-6 of zero
    # Plain central differences would have failed here: they average the two slopes.
    central_misses = [abs(float(hand[p.index]) - p.central) > 1e-3 for p in probes]
    assert any(central_misses)


def test_structural_kinks_are_judged_by_one_sided_slopes() -> None:
    x = KINK_INPUTS.clone()
    u = torch.ones(6, dtype=torch.float64)
    probes = probe(_function(torch.relu, x, u), x, list(range(6)))
    near_zero = {j for j in range(6) if abs(float(x[j])) < STEP}
    result = judge(probes, u * (x > 0), rtol=F64.fd_rtol, scale=1.0, structural_kinks=near_zero)
    assert result.ok and result.kinks == 4


def test_a_wrong_value_at_a_kink_is_still_an_error() -> None:
    x = torch.zeros(3, dtype=torch.float64)
    u = torch.ones(3, dtype=torch.float64)
    probes = probe(_function(torch.relu, x, u), x, [0, 1, 2])
    for bad in (2.0, -1.0, 1.5):
        result = judge(probes, torch.full((3,), bad, dtype=torch.float64), rtol=1e-6, scale=1.0)
        assert result.agreed == 0, bad


def test_leaky_relu_kink_interval_is_between_the_two_slopes() -> None:
    x = torch.zeros(3, dtype=torch.float64)
    u = torch.ones(3, dtype=torch.float64)
    f = torch.nn.LeakyReLU(0.1)
    probes = probe(_function(f, x, u), x, [0, 1, 2])
    inside = judge(probes, torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64), rtol=1e-6, scale=1.0)
    assert inside.ok and inside.kinks == 3
    outside = judge(
        probes, torch.tensor([0.0, 1.2, -0.1], dtype=torch.float64), rtol=1e-6, scale=1.0
    )
    assert outside.agreed == 0


class ReLUAtZeroTakesOne(nn.ReLU):
    """A correct ReLU backward with the other convention at 0: 1[x ≥ 0]."""

    def __call__(self, x: Tensor) -> Tensor:
        self.seen = x
        return super().__call__(x)

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output * (self.seen >= 0)


class AbsScale(nn.Module):
    """y = |x| · s, its own forward (no torch twin): finite differences find its kink alone."""

    def __init__(self) -> None:
        super().__init__()
        self.register_parameter("s", torch.tensor([1.5]))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        self._x = x
        return x.abs() * self.s

    def backward(self, grad_output: Tensor) -> Tensor:
        self.s.grad += (grad_output * self._x.abs()).sum().reshape(1)
        return grad_output * torch.sign(self._x) * self.s  # sign(0) = 0: a subgradient


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("relu", [nn.ReLU, ReLUAtZeroTakesOne], ids=["x>0", "x>=0"])
def test_relu_network_on_data_with_zeros_has_no_false_alarm(relu: type, dtype) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(relu(), nn.Linear(6, 5), relu(), relu(), nn.Linear(5, 3))
    x = torch.randn(8, 6, dtype=torch.float64)
    x[x.abs() < 0.6] = 0.0  # many inputs exactly at the kink
    report = gradcheck(
        model, nn.CrossEntropyLoss(), x, torch.arange(8) % 3, dtype=dtype, fd_samples=48
    )
    assert report.ok, str(report)
    assert report.row("0 (" + relu.__name__ + ") input").kinks > 0
    assert report.row("3 (" + relu.__name__ + ") input").kinks > 0  # a ReLU fed by a ReLU


def test_a_module_without_twin_has_its_kinks_found_by_finite_differences() -> None:
    x = torch.tensor([[0.0, 0.3, -2.0], [0.0, -1e-7, 1.0]], dtype=torch.float64)
    report = gradcheck(AbsScale(), None, x)
    assert report.ok, str(report)
    row = report.row("AbsScale input")
    assert row.reference == "finite differences"
    assert row.kinks == 3
    assert any("finite differences only" in note for note in report.notes)


class ReLUWrongAtZero(nn.ReLU):
    """Wrong only at the kink: −dL/dy where x = 0 lies outside [0, dL/dy]."""

    def __call__(self, x: Tensor) -> Tensor:
        self.seen = x
        return super().__call__(x)

    def backward(self, grad_output: Tensor) -> Tensor:
        x = self.seen
        return torch.where(x > 0, grad_output, torch.where(x == 0, -grad_output, 0.0))


def test_a_gradient_wrong_only_at_the_kink_is_caught() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), ReLUWrongAtZero(), nn.Linear(5, 2))
    x = torch.zeros(3, 4, dtype=torch.float64)  # with zero input and zero bias, every x is 0
    model[0].bias.zero_()
    report = gradcheck(model, nn.MSELoss(), x, torch.randn(3, 2, dtype=torch.float64))
    assert not report.ok
    assert report.first_faulty_module == "1"
