"""Backprop ninja style (seed 004 and Karpathy's makemore exercise): intermediate gradients
``dh2, dz2, dw2, ...`` checked by ``check_gradients``; each bug is named at its own line."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from handgrad.check import check_gradients

# -- seed 004: a 2-layer tanh MLP with a sum-of-squares loss -------------------------------


def sigma(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x)


def dsigma(x: torch.Tensor) -> torch.Tensor:
    return 1.0 - torch.tanh(x) ** 2


def loss(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.sum(torch.pow(v - t, 2))


def dloss(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -2.0 * (t - v)


def mlp_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1337)
    return {
        "x1": torch.randn(5, 20, generator=g),
        "y1": torch.randn(5, 10, generator=g) * 0.9,
        "w1": torch.randn(20, 8, generator=g) * 0.5,
        "b1": torch.randn(8, generator=g),
        "w2": torch.randn(8, 10, generator=g) * 0.5,
        "b2": torch.randn(10, generator=g),
    }


def mlp_forward(x1, y1, w1, b1, w2, b2):  # type: ignore[no-untyped-def]
    z1 = x1 @ w1 + b1
    h1 = sigma(z1)
    z2 = h1 @ w2 + b2
    h2 = sigma(z2)
    return loss(h2, y1), {"z1": z1, "h1": h1, "z2": z2, "h2": h2}


def mlp_backward(inputs: dict[str, torch.Tensor], bug: str | None) -> dict[str, torch.Tensor]:
    """The seed's cell, with one bug switched on."""
    x1, y1, w1, w2 = (inputs[k] for k in ("x1", "y1", "w1", "w2"))
    _, t = mlp_forward(**inputs)
    z1, h1, z2, h2 = (t[k].detach() for k in ("z1", "h1", "z2", "h2"))
    dl = 1.0
    dh2 = dloss(h2, y1) * dl
    if bug == "sign":
        dh2 = 2.0 * (y1 - h2)
    if bug == "half":
        dh2 = h2 - y1
    dz2 = dsigma(z2) * dh2 if bug != "point" else dsigma(h2) * dh2
    dw2 = h1.T @ dz2 if bug != "transpose" else dz2.T @ h1
    db2 = dz2.sum(0, keepdim=True) if bug != "axis" else dz2.sum(1, keepdim=True)
    dh1 = dz2 @ w2.T if bug != "factor" else 2 * dz2 @ w2.T
    dz1 = dsigma(z1) * dh1 if bug != "output_form" else (1 - z1**2) * dh1
    dw1 = x1.T @ dz1 if bug != "zero" else torch.zeros_like(w1)
    db1 = dz1.sum(0, keepdim=True)
    return {"h2": dh2, "z2": dz2, "w2": dw2, "b2": db2, "h1": dh1, "z1": dz1, "w1": dw1, "b1": db1}


def _snapshot(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in inputs.items()}


def _untouched(inputs: dict[str, torch.Tensor], before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(inputs[k], before[k]) and not inputs[k].requires_grad for k in inputs)


def test_mlp_correct_passes_with_a_note_on_the_kept_dimension() -> None:
    inputs = mlp_inputs()
    before = _snapshot(inputs)
    grads = mlp_backward(inputs, None)
    report = check_gradients(mlp_forward, inputs, grads)
    assert report.ok and report.first_wrong is None
    assert [r.name for r in report.rows][:2] == ["h2", "z2"]
    assert report.row("h2").exact  # dloss is what autograd computes, bit for bit
    b2 = report.row("b2")
    assert b2.shape == (1, 10) and b2.expected_shape == (10,)
    assert b2.note is not None and ".grad in torch would have the shape (10,)" in b2.note
    assert _untouched(inputs, before)


@pytest.mark.parametrize(
    ("bug", "where", "kind"),
    [
        ("sign", "h2", "sign"),
        ("half", "h2", "factor"),
        ("point", "z2", "wrong_point"),
        ("transpose", "w2", "transpose"),
        ("axis", "b2", "shape"),
        ("factor", "h1", "factor"),
        ("output_form", "z1", "wrong_point"),
        ("zero", "w1", "zero"),
    ],
)
def test_mlp_bug_is_named_at_its_own_line(bug: str, where: str, kind: str) -> None:
    inputs = mlp_inputs()
    before = _snapshot(inputs)
    report = check_gradients(mlp_forward, inputs, mlp_backward(inputs, bug))
    assert not report.ok
    assert report.first_wrong == where
    row = report.row(where)
    assert row.kind == kind, row.verdict
    assert not row.approx
    wrong_below = [r for r in report.rows if r.kind not in ("ok", kind) and r.name != where]
    assert all(r.kind == "inherited" for r in wrong_below), [(r.name, r.kind) for r in wrong_below]
    for r in wrong_below:
        assert r.verdict == f"wrong because `d{where}` is wrong: fix that first"
    assert _untouched(inputs, before)


def test_mlp_table_reads_like_cmp_with_a_verdict_column() -> None:
    inputs = mlp_inputs()
    report = check_gradients(mlp_forward, inputs, mlp_backward(inputs, "point"))
    lines = str(report).splitlines()
    rows = lines[: len(report.rows)]
    assert all(line.count("|") == 4 for line in rows)
    assert len({line.index("| exact") for line in rows}) == 1  # aligned
    z2 = next(line for line in rows if line.startswith("z2 "))
    assert "exact: False" in z2 and "approximate: False" in z2 and "wrong_point" in z2
    assert "<- first wrong" in z2
    assert "wrong because `dz2` is wrong: fix that first" in str(report)
    html = report._repr_html_()
    assert html.count("<tr") == len(report.rows) + 1
    highlighted = [row for row in html.split("<tr") if "background" in row]
    assert len(highlighted) == 1 and "<td>z2</td>" in highlighted[0]


# -- makemore: the cross-entropy broken into atomic steps -----------------------------------

N, BLOCK, VOCAB, EMB, HIDDEN = 8, 3, 27, 4, 16


def makemore_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2147483647)
    return {
        "C": torch.randn(VOCAB, EMB, generator=g),
        "W1": torch.randn(BLOCK * EMB, HIDDEN, generator=g) * 0.2,
        "b1": torch.randn(HIDDEN, generator=g) * 0.1,
        "W2": torch.randn(HIDDEN, VOCAB, generator=g) * 0.1,
        "b2": torch.randn(VOCAB, generator=g) * 0.1,
        "Xb": torch.randint(0, VOCAB, (N, BLOCK), generator=g),
        "Yb": torch.randint(0, VOCAB, (N,), generator=g),
    }


def makemore_forward(C, W1, b1, W2, b2, Xb, Yb):  # type: ignore[no-untyped-def]
    n = Xb.shape[0]
    emb = C[Xb]
    embcat = emb.view(emb.shape[0], -1)
    hpreact = embcat @ W1 + b1
    h = torch.tanh(hpreact)
    logits = h @ W2 + b2
    logit_maxes = logits.max(1, keepdim=True).values
    norm_logits = logits - logit_maxes
    counts = norm_logits.exp()
    counts_sum = counts.sum(1, keepdims=True)
    counts_sum_inv = counts_sum**-1
    probs = counts * counts_sum_inv
    logprobs = probs.log()
    loss = -logprobs[range(n), Yb].mean()
    return loss, {
        "emb": emb,
        "embcat": embcat,
        "hpreact": hpreact,
        "h": h,
        "logits": logits,
        "logit_maxes": logit_maxes,
        "norm_logits": norm_logits,
        "counts": counts,
        "counts_sum": counts_sum,
        "counts_sum_inv": counts_sum_inv,
        "probs": probs,
        "logprobs": logprobs,
    }


def makemore_backward(inputs: dict[str, torch.Tensor], bug: str | None) -> dict[str, torch.Tensor]:
    """Exercise 1 of Karpathy's backprop ninja, with one bug switched on."""
    C, W1, W2, Xb, Yb = (inputs[k] for k in ("C", "W1", "W2", "Xb", "Yb"))
    n = Xb.shape[0]
    _, t = makemore_forward(**inputs)
    t = {k: v.detach() for k, v in t.items()}
    emb, embcat, h, logits = t["emb"], t["embcat"], t["h"], t["logits"]
    counts, counts_sum, counts_sum_inv, probs = (
        t["counts"],
        t["counts_sum"],
        t["counts_sum_inv"],
        t["probs"],
    )
    dlogprobs = torch.zeros_like(t["logprobs"])
    dlogprobs[range(n), Yb] = -1.0 / n if bug != "mean" else -1.0
    dprobs = (1.0 / probs) * dlogprobs
    axis = 1 if bug != "axis" else 0
    dcounts_sum_inv = (counts * dprobs).sum(axis, keepdim=True)
    dcounts = counts_sum_inv * dprobs
    dcounts_sum = (-(counts_sum**-2)) * dcounts_sum_inv
    if bug == "sign":
        dcounts_sum = counts_sum**-2 * dcounts_sum_inv
    if bug != "branch":
        dcounts += torch.ones_like(counts) * dcounts_sum
    dnorm_logits = counts * dcounts
    dlogits = dnorm_logits.clone()
    dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)
    if bug != "max_branch":  # a branch whose gradient is zero: leaving it out is no mistake
        dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits if bug != "transpose" else dlogits.T @ h
    db2 = dlogits.sum(0) if bug != "keepdim" else dlogits.sum(0, keepdim=True)
    dhpreact = (1.0 - h**2) * dh if bug != "point" else (1.0 - t["hpreact"] ** 2) * dh
    dW1 = embcat.T @ dhpreact
    db1 = dhpreact.sum(0)
    dembcat = dhpreact @ W1.T
    demb = dembcat.view(emb.shape)
    dC = torch.zeros_like(C)
    if bug != "zero":
        for k in range(Xb.shape[0]):
            for j in range(Xb.shape[1]):
                dC[Xb[k, j]] += demb[k, j]
    return {
        "logprobs": dlogprobs,
        "probs": dprobs,
        "counts_sum_inv": dcounts_sum_inv,
        "counts_sum": dcounts_sum,
        "counts": dcounts,
        "norm_logits": dnorm_logits,
        "logit_maxes": dlogit_maxes,
        "logits": dlogits,
        "h": dh,
        "W2": dW2,
        "b2": db2,
        "hpreact": dhpreact,
        "W1": dW1,
        "b1": db1,
        "embcat": dembcat,
        "emb": demb,
        "C": dC,
    }


@pytest.mark.parametrize("bug", [None, "max_branch", "keepdim"])
def test_makemore_correct_versions_pass(bug: str | None) -> None:
    inputs = makemore_inputs()
    before = _snapshot(inputs)
    report = check_gradients(makemore_forward, inputs, makemore_backward(inputs, bug))
    assert report.ok, str(report)
    assert report.rows[0].name == "logprobs"
    assert report.row("logit_maxes").approx  # zero in exact arithmetic, rounding noise here
    if bug == "keepdim":
        assert report.row("b2").note is not None
    assert _untouched(inputs, before)


@pytest.mark.parametrize(
    ("bug", "where", "kind"),
    [
        ("branch", "counts", "missing_branch"),
        ("mean", "logprobs", "factor"),
        ("axis", "counts_sum_inv", "shape"),
        ("sign", "counts_sum", "sign"),
        ("transpose", "W2", "transpose"),
        ("point", "hpreact", "wrong_point"),
        ("zero", "C", "zero"),
    ],
)
def test_makemore_bug_is_named_at_its_own_line(bug: str, where: str, kind: str) -> None:
    inputs = makemore_inputs()
    before = _snapshot(inputs)
    report = check_gradients(makemore_forward, inputs, makemore_backward(inputs, bug))
    assert not report.ok
    assert report.first_wrong == where, str(report)
    assert report.row(where).kind == kind, report.row(where).verdict
    assert _untouched(inputs, before)


def test_makemore_missing_branch_says_which_use() -> None:
    inputs = makemore_inputs()
    report = check_gradients(makemore_forward, inputs, makemore_backward(inputs, "branch"))
    verdict = report.row("counts").verdict
    assert "`counts` is used 2 times" in verdict
    assert "through `probs`" in verdict and "not the one through `counts_sum`" in verdict
    for name in ("norm_logits", "logits", "h", "W1", "C"):
        row = report.row(name)
        assert row.kind == "inherited"
        assert row.verdict == "wrong because `dcounts` is wrong: fix that first"


def test_makemore_factor_names_the_batch_size() -> None:
    inputs = makemore_inputs()
    report = check_gradients(makemore_forward, inputs, makemore_backward(inputs, "mean"))
    verdict = report.row("logprobs").verdict
    assert f"N = {N}" in verdict and "1/N of a mean" in verdict
