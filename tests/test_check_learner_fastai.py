"""fastai style (seed 002): ``lin_grad`` and ``forward_and_backward`` set ``.g`` on tensors;
``grads_from_dot_g`` reads them and ``check_gradients`` names the line with the bug."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from handgrad.check import check_gradients, grads_from_dot_g


def relu(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_min(0.0)


def mse(output: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    return (output[:, 0] - targ).pow(2).mean()


def make_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(42)
    m, nh, n = 12, 6, 9
    return {
        "inp": torch.randn(n, m, generator=g),
        "targ": torch.randn(n, generator=g),
        "w1": torch.randn(m, nh, generator=g),
        "b1": torch.zeros(nh),
        "w2": torch.randn(nh, 1, generator=g),
        "b2": torch.zeros(1),
    }


def forward(inp, targ, w1, b1, w2, b2):  # type: ignore[no-untyped-def]
    l1 = inp @ w1 + b1
    l2 = relu(l1)
    out = l2 @ w2 + b2
    return mse(out, targ), {"l1": l1, "l2": l2, "out": out}


BUG: dict[str, str | None] = {"now": None}


def lin_grad(inp: Any, out: Any, w: Any, b: Any, layer: str) -> None:
    bug = BUG["now"]
    # grad of matmul with respect to input
    inp.g = out.g @ w.t()
    w.g = (inp.unsqueeze(-1) * out.g.unsqueeze(1)).sum(0)
    if bug == "transpose" and layer == "2":
        w.g = out.g.t() @ inp
    b.g = out.g.sum(0)
    if bug == "axis" and layer == "1":
        b.g = out.g.sum(1)


def forward_and_backward(inp: Any, targ: Any, w1: Any, b1: Any, w2: Any, b2: Any) -> dict:
    """The seed's cell (with ``loss = diff.pow(2).mean()``), one bug switched on."""
    bug = BUG["now"]
    # forward pass:
    l1 = inp @ w1 + b1
    l2 = relu(l1)
    out = l2 @ w2 + b2
    diff = out[:, 0] - targ
    # backward pass:
    out.g = 2.0 * diff[:, None] / inp.shape[0]
    if bug == "no_two":
        out.g = diff[:, None] / inp.shape[0]
    if bug == "no_mean":
        out.g = 2.0 * diff[:, None]
    if bug == "sign":
        out.g = 2.0 * (targ - out[:, 0])[:, None] / inp.shape[0]
    lin_grad(l2, out, w2, b2, "2")
    l1.g = (l1 > 0).float() * l2.g
    if bug == "no_mask":
        l1.g = l2.g.clone()
    lin_grad(inp, l1, w1, b1, "1")
    return {"l1": l1, "l2": l2, "out": out}


def run(
    bug: str | None, zero_rows: int = 0
) -> tuple[Any, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    BUG["now"] = bug
    inputs = make_inputs()
    inputs["inp"][:zero_rows] = 0.0  # then l1 = b1 = 0 exactly there: on the ReLU's kink
    work = {k: v.clone() for k, v in inputs.items()}  # the learner's own tensors, .g set on them
    acts = forward_and_backward(**work)
    before = {k: v.clone() for k, v in inputs.items()}
    report = check_gradients(forward, inputs, grads_from_dot_g({**work, **acts}))
    return report, inputs, before


def test_correct_version_passes_and_inputs_are_untouched() -> None:
    report, inputs, before = run(None)
    assert report.ok, str(report)
    assert report.rows[0].name == "out"
    assert {r.name for r in report.rows} == {"out", "l2", "l1", "w2", "b2", "w1", "b1", "inp"}
    assert all(torch.equal(inputs[k], before[k]) for k in inputs)
    assert not any(hasattr(t, "g") for t in inputs.values())


@pytest.mark.parametrize(
    ("bug", "where", "kind"),
    [
        ("no_two", "out", "factor"),
        ("no_mean", "out", "factor"),
        ("sign", "out", "sign"),
        ("transpose", "w2", "transpose"),
        ("axis", "b1", "shape"),
        ("no_mask", "l1", "unknown"),
    ],
)
def test_bug_is_named_at_its_own_line(bug: str, where: str, kind: str) -> None:
    report, inputs, before = run(bug)
    assert not report.ok
    assert report.first_wrong == where, str(report)
    assert report.row(where).kind == kind, report.row(where).verdict
    assert all(torch.equal(inputs[k], before[k]) for k in inputs)
    roots = [r.name for r in report.rows if r.kind not in ("ok", "inherited")]
    assert roots == [where], str(report)


def test_factor_n_names_the_batch_size() -> None:
    report, _, _ = run("no_mean")
    assert "N = 9" in report.row("out").verdict


def test_grads_from_dot_g_needs_a_backward() -> None:
    inputs = make_inputs()
    with pytest.raises(ValueError, match="run the backward first"):
        grads_from_dot_g(inputs)


def test_no_mask_is_named_as_the_missing_relu_derivative() -> None:
    report, _, _ = run("no_mask")
    assert "leaves out the derivative of relu" in report.row("l1").verdict


def test_relu_kink_accepts_the_learners_subgradient_and_what_follows() -> None:
    """clamp_min's autograd passes the gradient at exactly 0, the learner's (l1 > 0) does not:
    both are right there, and the rows computed from the learner's choice are right too."""
    report, _, _ = run(None, zero_rows=3)
    assert report.ok, str(report)
    note = report.row("l1").note
    assert note is not None and "sit exactly on a kink" in note
    assert not report.row("l1").exact
    report, _, _ = run("no_mask", zero_rows=3)
    assert report.first_wrong == "l1"


# -- the seed's refactor: layers as classes, ``backward`` setting ``.g`` on ``self.inp`` --------


class Relu:
    def __call__(self, inp: Any) -> Any:
        self.inp = inp
        self.out = inp.clamp_min(0.0)
        return self.out

    def backward(self) -> None:
        self.inp.g = (self.inp > 0).float() * self.out.g


class Lin:
    def __init__(self, w: Any, b: Any) -> None:
        self.w, self.b = w, b

    def __call__(self, inp: Any) -> Any:
        self.inp = inp
        self.out = inp @ self.w + self.b
        return self.out

    def backward(self) -> None:
        self.inp.g = self.out.g @ self.w.t()
        self.w.g = self.inp.t() @ self.out.g
        if BUG["now"] == "class_transpose":
            self.w.g = self.out.g.t() @ self.inp
        self.b.g = self.out.g.sum(0)


class Mse:
    def __call__(self, inp: Any, targ: Any) -> Any:
        self.inp = inp
        self.targ = targ
        self.out = (inp.squeeze() - targ).pow(2).mean()
        return self.out

    def backward(self) -> None:
        self.inp.g = 2.0 * (self.inp.squeeze() - self.targ).unsqueeze(-1) / self.targ.shape[0]
        if BUG["now"] == "class_no_two":
            self.inp.g = (self.inp.squeeze() - self.targ).unsqueeze(-1) / self.targ.shape[0]


class Model:
    def __init__(self, w1: Any, b1: Any, w2: Any, b2: Any) -> None:
        self.layers = [Lin(w1, b1), Relu(), Lin(w2, b2)]
        self.loss = Mse()

    def __call__(self, x: Any, targ: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return self.loss(x, targ)

    def backward(self) -> None:
        self.loss.backward()
        for layer in reversed(self.layers):
            layer.backward()


def model_forward(inp, targ, w1, b1, w2, b2):  # type: ignore[no-untyped-def]
    model = Model(w1, b1, w2, b2)
    loss = model(inp, targ)
    l1, l2, out = (layer.out for layer in model.layers)
    return loss, {"l1": l1, "l2": l2, "out": out}


@pytest.mark.parametrize(
    ("bug", "where", "kind"),
    [(None, None, "ok"), ("class_transpose", "w2", "transpose"), ("class_no_two", "out", "factor")],
)
def test_layers_as_classes(bug: str | None, where: str | None, kind: str) -> None:
    BUG["now"] = bug
    inputs = make_inputs()
    work = {k: v.clone() for k, v in inputs.items()}
    model = Model(work["w1"], work["b1"], work["w2"], work["b2"])
    model(work["inp"], work["targ"])
    model.backward()
    l1, l2, out = (layer.out for layer in model.layers)
    grads = grads_from_dot_g({**work, "l1": l1, "l2": l2, "out": out})
    report = check_gradients(model_forward, inputs, grads)
    assert report.first_wrong == where, str(report)
    if where is None:
        assert report.ok
    else:
        assert report.row(where).kind == kind
