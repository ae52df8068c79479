"""``diagnose`` names the pattern between a wrong gradient and its reference, with evidence."""

from __future__ import annotations

import pytest
import torch

from handgrad import nn
from handgrad.check import diagnose as d
from handgrad.check import slips
from handgrad.check.compare import TOLERANCES, compare

F64 = TOLERANCES[torch.float64]
SIZES = {"N": 5, "C": 3, "N·C": 15}


def _ref(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def _diagnose(actual: torch.Tensor, expected: torch.Tensor, **kw) -> d.Diagnosis:
    scale = float(expected.abs().max()) if expected.numel() else 1.0
    return d.diagnose("g", actual, expected, tol=F64, scale=scale, sizes=SIZES, **kw)


@pytest.mark.parametrize(
    ("factor", "pattern", "words"),
    [
        (2.0, d.FACTOR_2, "2 × the reference"),
        (0.5, d.FACTOR_HALF, "a factor 2 is missing"),
        (5.0, d.FACTOR_N, "the 1/N of a mean over the batch is missing"),
        (0.2, d.FACTOR_INV_N, "an extra 1/N"),
        (-1.0, d.SIGN, "sign flipped"),
        (-2.0, d.SIGN, "−2 × the reference"),
        (15.0, d.FACTOR_NC, "N·C = 15"),
        (1 / 3, "factor 1/C", "an extra division by C"),
        (3.7, d.FACTOR, "constant multiple"),
    ],
)
def test_constant_factors_are_named(factor: float, pattern: str, words: str) -> None:
    r = _ref(5, 3)
    found = _diagnose(factor * r, r)
    assert found.pattern == pattern
    assert words in found.message
    assert found.factor == pytest.approx(factor)
    assert "fitted factor" in found.message  # the evidence


def test_a_factor_that_does_not_fit_everywhere_is_not_claimed() -> None:
    r = _ref(5, 3)
    noisy = 2 * r
    noisy[0, 0] += 0.3
    assert _diagnose(noisy, r).pattern == d.UNRECOGNISED


def test_unrecognised_names_the_largest_differing_entries() -> None:
    r = _ref(4, 3)
    a = r.clone()
    a[2, 1] += 5.0
    a[0, 0] -= 1.0
    found = _diagnose(a, r)
    assert found.pattern == d.UNRECOGNISED
    assert "2 of 12 entries differ" in found.message
    assert found.message.index("[2, 1]") < found.message.index("[0, 0]")


def test_transpose_of_a_square_matrix_by_value() -> None:
    r = _ref(4, 4)
    assert _diagnose(r.t().clone(), r).pattern == d.TRANSPOSE


def test_shapes_transpose_bias_sum_and_kept_dimension() -> None:
    w = _ref(3, 6)
    assert _diagnose(w.t().clone(), w).pattern == d.TRANSPOSE
    per_sample = _ref(5, 3)
    found = _diagnose(per_sample, per_sample.sum(0))
    assert found.pattern == d.BIAS_NOT_SUMMED and "N = 5" in found.message
    b = _ref(3)
    assert _diagnose(b.unsqueeze(0), b).pattern == d.KEPT_DIM
    other = _diagnose(_ref(2, 2), _ref(3))
    assert other.pattern == d.SHAPE and "(2, 2)" in other.message


def test_zeros_and_non_finite_values() -> None:
    r = _ref(3, 2)
    assert _diagnose(torch.zeros(3, 2, dtype=torch.float64), r).pattern == d.ZEROS
    a = r.clone()
    a[1, 1] = float("nan")
    found = _diagnose(a, r)
    assert found.pattern == d.NOT_FINITE and "1 entries" in found.message


def test_a_candidate_slip_wins_over_the_generic_patterns() -> None:
    r = _ref(4, 3)
    slip = _ref(4, 3) * 0.1 + 1.0
    found = _diagnose(slip, r, candidates=[d.Candidate("my slip", "is my slip", slip)])
    assert found.pattern == "my slip" and "is my slip" in found.message


def test_errors_from_wrongly_shaped_grads_are_read() -> None:
    p = torch.zeros(3, 6)
    with pytest.raises(RuntimeError) as assigned:
        p.grad = torch.zeros(6, 3)
    found = d.diagnose_error("2.weight", assigned.value)
    assert found.pattern == d.TRANSPOSE and "(6, 3)" in found.message
    assert d.error_shapes(assigned.value) == ((6, 3), (3, 6))

    bias = torch.zeros(3)
    with pytest.raises(RuntimeError) as added:
        bias += torch.ones(5, 3)
    found = d.diagnose_error("2.bias", added.value)
    assert found.pattern == d.BIAS_NOT_SUMMED and "N = 5" in found.message

    found = d.diagnose_error("1 (Mine)", NotImplementedError("Mine does not implement backward"))
    assert found.pattern == d.RAISED and "NotImplementedError" in found.message


def test_batchnorm_candidates_are_the_terms_of_its_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    bn = nn.BatchNorm1d(4).double()
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64) * 2 + 1
    u = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    bn(x)
    right = bn.backward(u, input_grad=True)
    found = {c.pattern: c.tensor for c in slips.layer_candidates(bn, "input", "", x, u)}
    terms = (
        found[d.STATS_AS_CONSTANTS]
        - (found[d.STATS_AS_CONSTANTS] - found[d.MEAN_TERM_DROPPED])
        - (found[d.STATS_AS_CONSTANTS] - found[d.VARIANCE_TERM_DROPPED])
    )
    assert torch.allclose(terms, right, atol=1e-12)  # the terms add up to the true gradient


def test_cross_entropy_candidates() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 2, 1, 1, 0])
    loss = nn.CrossEntropyLoss()
    loss(x, t)
    right = loss.backward()
    found = {c.pattern: c.tensor for c in slips.loss_candidates(loss, x, t, None)}
    assert torch.allclose(found[d.ONE_HOT_TERM_MISSING] + found[d.SOFTMAX_TERM_MISSING], right)


def test_comparison_metrics_follow_the_ninja_table() -> None:
    r = _ref(3, 4)
    same = compare(r.clone(), r, tol=F64, layer_scale=1.0)
    assert same.exact and same.approx and same.max_abs_diff == 0.0
    close = compare(r + 1e-13, r, tol=F64, layer_scale=1.0)
    assert not close.exact and close.approx and close.max_abs_diff == pytest.approx(1e-13)
    far = compare(r * 1.01, r, tol=F64, layer_scale=1.0)
    assert not far.approx and far.max_rel_err == pytest.approx(0.01)
    zero = torch.zeros(3, 4, dtype=torch.float64)
    assert compare(zero, zero, tol=F64, layer_scale=0.0).vacuous
    assert not compare(r, r.t(), tol=F64, layer_scale=1.0).shape_ok
