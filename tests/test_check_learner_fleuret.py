"""Fleuret style (seed 003): ``forward_pass`` on one sample, ``backward_pass`` accumulating
into ``dl_dw1, dl_db1, dl_dw2, dl_db2`` over the samples; ``grads_from_accumulated`` turns the
sums (and, if given, each sample's ``dl_ds*``) into the gradients of the batched loss."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from handgrad.check import check_gradients, grads_from_accumulated

N, D, H, C = 6, 10, 7, 4


def sigma(x: torch.Tensor) -> torch.Tensor:
    return (2 / (1 + torch.exp(x.mul(-2)))) - 1  # tanh, as the seed writes it


def dsigma(x: torch.Tensor) -> torch.Tensor:
    return 1 - sigma(x).pow(2)


def loss(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (v - t).pow(2).sum()


BUG: dict[str, str | None] = {"now": None}


def dloss(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if BUG["now"] == "sign":
        return 2 * (t - v)
    if BUG["now"] == "half":
        return v - t
    return 2 * (v - t)


def forward_pass(w1, b1, w2, b2, x):  # type: ignore[no-untyped-def]
    s1 = w1.mv(x) + b1
    x1 = sigma(s1)
    s2 = w2.mv(x1) + b2
    x2 = sigma(s2)
    return x, s1, x1, s2, x2


def backward_pass(  # type: ignore[no-untyped-def]
    w1, b1, w2, b2, t, x, s1, x1, s2, x2, dl_dw1, dl_db1, dl_dw2, dl_db2
):
    """The seed's backward_pass; it also returns this sample's intermediate gradients."""
    bug = BUG["now"]
    x0 = x
    dl_dx2 = dloss(x2, t)
    dl_ds2 = dsigma(s2) * dl_dx2 if bug != "point2" else dsigma(x2) * dl_dx2
    dl_dx1 = w2.t().mv(dl_ds2)
    dl_ds1 = dsigma(s1) * dl_dx1 if bug != "point1" else dsigma(x1) * dl_dx1
    if bug == "copy":
        dl_dw2.copy_(dl_ds2.view(-1, 1).mm(x1.view(1, -1)))  # the last sample's only
    else:
        dl_dw2.add_(dl_ds2.view(-1, 1).mm(x1.view(1, -1)))
    if bug == "rebind":
        dl_db2 = dl_db2 + dl_ds2  # a new tensor: the accumulator stays 0
    else:
        dl_db2.add_(dl_ds2)
    dl_dw1.add_(dl_ds1.view(-1, 1).mm(x0.view(1, -1)))
    dl_db1.add_(dl_ds1)
    return {"dl_dx2": dl_dx2, "dl_ds2": dl_ds2, "dl_dx1": dl_dx1, "dl_ds1": dl_ds1}


def batched(w1, b1, w2, b2, x, t):  # type: ignore[no-untyped-def]
    """The batched truth: forward_pass on all samples at once (row n is sample n), so the loss
    is Σ_n loss(x2[n], t[n]) and is computed from the (N, ·) intermediates."""
    s1 = x @ w1.t() + b1
    x1 = sigma(s1)
    s2 = x1 @ w2.t() + b2
    x2 = sigma(s2)
    return loss(x2, t), {"s1": s1, "x1": x1, "s2": s2, "x2": x2}


def stacked(w1, b1, w2, b2, x, t):  # type: ignore[no-untyped-def]
    """A wrong batched forward: the stacked intermediates are copies the loss never uses."""
    outs = [forward_pass(w1, b1, w2, b2, x[n]) for n in range(x.shape[0])]
    s1, x1, s2, x2 = (torch.stack([o[i] for o in outs]) for i in range(1, 5))
    loss_value = sum(loss(o[4], t[n]) for n, o in enumerate(outs))
    return loss_value, {"s1": s1, "x1": x1, "s2": s2, "x2": x2}


def make_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        "w1": torch.empty(H, D).normal_(0, 0.5, generator=g),
        "b1": torch.empty(H).normal_(0, 0.5, generator=g),
        "w2": torch.empty(C, H).normal_(0, 0.5, generator=g),
        "b2": torch.empty(C).normal_(0, 0.5, generator=g),
        "x": torch.randn(N, D, generator=g),
        "t": torch.eye(C)[torch.randint(0, C, (N,), generator=g)] * 0.9,
    }


def run(bug: str | None, per_sample: bool, forward: Any = batched) -> tuple[Any, dict, dict]:
    BUG["now"] = bug
    inputs = make_inputs()
    before = {k: v.clone() for k, v in inputs.items()}
    w1, b1, w2, b2, x, t = inputs.values()
    dl_dw1 = torch.empty(w1.size())
    dl_db1 = torch.empty(b1.size())
    dl_dw2 = torch.empty(w2.size())
    dl_db2 = torch.empty(b2.size())
    dl_dw1.zero_()
    dl_db1.zero_()
    dl_dw2.zero_()
    dl_db2.zero_()
    samples = []
    for n in range(N):
        x0, s1, x1, s2, x2 = forward_pass(w1, b1, w2, b2, x[n])
        samples.append(
            backward_pass(w1, b1, w2, b2, t[n], x0, s1, x1, s2, x2, dl_dw1, dl_db1, dl_dw2, dl_db2)
        )
    grads = grads_from_accumulated(
        {"dl_dw1": dl_dw1, "dl_db1": dl_db1, "dl_dw2": dl_dw2, "dl_db2": dl_db2},
        samples if per_sample else (),
    )
    report = check_gradients(forward, inputs, grads)
    return report, inputs, before


def test_correct_version_passes() -> None:
    for per_sample in (False, True):
        report, inputs, before = run(None, per_sample)
        assert report.ok, str(report)
        assert all(torch.equal(inputs[k], before[k]) for k in inputs)
    assert [r.name for r in report.rows][:2] == ["x2", "s2"]


@pytest.mark.parametrize(
    ("bug", "where", "kind"),
    [
        ("sign", "x2", "sign"),
        ("half", "x2", "factor"),
        ("point2", "s2", "wrong_point"),
        ("point1", "s1", "wrong_point"),
        ("rebind", "b2", "zero"),
        ("copy", "w2", "unknown"),
    ],
)
def test_bug_is_named_at_its_own_line(bug: str, where: str, kind: str) -> None:
    report, inputs, before = run(bug, per_sample=True)
    assert not report.ok
    assert report.first_wrong == where, str(report)
    assert report.row(where).kind == kind, report.row(where).verdict
    assert all(torch.equal(inputs[k], before[k]) for k in inputs)


@pytest.mark.parametrize(
    ("bug", "where", "kind"), [("rebind", "b2", "zero"), ("copy", "w2", "unknown")]
)
def test_parameter_sums_alone_name_a_parameter_mistake(bug: str, where: str, kind: str) -> None:
    report, _, _ = run(bug, per_sample=False)
    assert report.first_wrong == where
    assert report.row(where).kind == kind
    assert [r.name for r in report.rows if not r.ok] == [where]


def test_accumulated_helper_reads_locals_and_rejects_nothing() -> None:
    dl_dw1 = torch.ones(2, 2)
    found = grads_from_accumulated({"dl_dw1": dl_dw1, "lr": 0.1, "w1": torch.zeros(2, 2)})
    assert list(found) == ["w1"] and found["w1"] is dl_dw1
    with pytest.raises(ValueError, match="no tensor named dl_d"):
        grads_from_accumulated({"w1": torch.zeros(2)})


def test_an_intermediate_the_loss_does_not_use_is_refused() -> None:
    with pytest.raises(ValueError, match="the loss is not computed from"):
        run(None, per_sample=True, forward=stacked)
