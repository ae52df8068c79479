"""``check_gradients``: its contract (errors, inputs untouched, dtype tolerance, order, report)."""

from __future__ import annotations

import json

import pytest
import torch

from handgrad.check import LearnerReport, check_gradients


def make() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(6, 4, generator=g),
        "w": torch.randn(4, 3, generator=g),
        "y": torch.randint(0, 3, (6,), generator=g),
    }


def forward(x, w, y):  # type: ignore[no-untyped-def]
    logits = x @ w
    h = torch.tanh(logits)
    loss = -h[range(x.shape[0]), y].mean()
    return loss, {"h": h, "logits": logits}  # not in forward order: the report orders them


def backward(x, w, y, bug: str | None = None):  # type: ignore[no-untyped-def]
    n = x.shape[0]
    _, t = forward(x, w, y)
    h = t["h"]
    dh = torch.zeros_like(h)
    dh[range(n), y] = -1.0 / n
    dlogits = (1 - h**2) * dh
    dw = x.T @ dlogits
    dx = dlogits @ w.T
    return {"w": dw, "x": dx, "h": dh, "logits": dlogits}


def test_rows_in_backward_order_and_right() -> None:
    inputs = make()
    report = check_gradients(forward, inputs, backward(**inputs))
    assert report.ok
    names = [r.name for r in report.rows]
    assert names.index("h") < names.index("logits") < names.index("w")
    assert names.index("logits") < names.index("x")
    for r in report.rows:
        assert r.kind == "ok" and r.verdict == "ok" and r.approx
        assert r.shape == r.expected_shape


def test_inputs_are_never_modified_even_when_they_require_grad() -> None:
    inputs = make()
    inputs["w"].requires_grad_(True)  # the ninja notebook's parameters do
    before = {k: v.detach().clone() for k, v in inputs.items()}
    grads = {k: v.detach() for k, v in backward(**inputs).items()}
    check_gradients(forward, inputs, grads)
    for k, v in inputs.items():
        assert torch.equal(v.detach(), before[k])
    assert inputs["w"].grad is None and inputs["w"].requires_grad
    assert not inputs["x"].requires_grad


def test_judged_at_the_tolerance_of_the_learners_dtype() -> None:
    inputs64 = {k: (v.double() if v.is_floating_point() else v) for k, v in make().items()}
    grads = backward(**inputs64)
    off = {**grads, "w": grads["w"] * (1 + 3e-6)}
    report64 = check_gradients(forward, inputs64, off)
    assert not report64.ok and report64.first_wrong == "w"
    assert report64.row("w").kind == "factor"
    off32 = {k: v.float() for k, v in off.items()}
    assert check_gradients(forward, inputs64, off32).ok  # within float32's rounding


@pytest.mark.parametrize(
    ("grads", "message"),
    [
        ({}, "nothing would be compared"),
        ({"hh": torch.zeros(6, 3)}, r"neither an input nor an intermediate.*did you mean h"),
        ({"y": torch.zeros(6)}, "has no gradient"),
        ({"w": None}, r"was the backward run"),
        ({"w": torch.zeros(4, 3, dtype=torch.int64)}, "a gradient is floating"),
    ],
)
def test_bad_grads_raise_value_error(grads: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_gradients(forward, make(), grads)


def test_bad_forwards_raise_value_error() -> None:
    inputs = make()
    dw = {"w": torch.zeros(4, 3)}
    with pytest.raises(ValueError, match="scalar loss"):
        check_gradients(lambda x, w, y: x @ w, inputs, dw)
    with pytest.raises(ValueError, match="forward raised ZeroDivisionError"):
        check_gradients(lambda x, w, y: 1 / 0, inputs, dw)
    with pytest.raises(ValueError, match="both an input and an intermediate"):
        check_gradients(lambda x, w, y: ((x @ w).sum(), {"w": w}), inputs, dw)
    with pytest.raises(ValueError, match="the loss is not computed from"):
        check_gradients(
            lambda x, w, y: ((x @ w).sum(), {"c": (x @ w).clone().detach()}),
            inputs,
            {"c": torch.zeros(6, 3)},
        )
    with pytest.raises(ValueError, match="non-empty dict"):
        check_gradients(forward, {}, dw)


def test_report_json_round_trip_and_shape_rows() -> None:
    inputs = make()
    grads = backward(**inputs)
    grads["w"] = grads["w"].T.contiguous()
    report = check_gradients(forward, inputs, grads)
    assert report.first_wrong == "w" and report.row("w").kind == "transpose"
    data = json.loads(report.to_json())
    assert data["ok"] is False and data["first_wrong"] == "w"
    w = next(r for r in data["rows"] if r["name"] == "w")
    assert w["maxdiff"] is None and w["shape"] == [3, 4] and w["expected_shape"] == [4, 3]
    again = LearnerReport.from_dict(data)
    assert str(again) == str(report)


def test_autograd_blind_spot_is_reported_by_finite_differences() -> None:
    """A forward written with .detach() hides a term from autograd; finite differences see it."""
    inputs = make()

    def detached(x, w, y):  # type: ignore[no-untyped-def]
        h = x @ w
        return (h * h.detach()).sum()  # the value is Σ h², autograd's gradient is h·x

    h = inputs["x"] @ inputs["w"]
    report = check_gradients(detached, inputs, {"w": 2 * inputs["x"].T @ h}, fd=True)
    assert not report.ok
    assert "finite differences agree with yours" in (report.row("w").note or "")


def test_dropped_keepdim_is_a_shape_error() -> None:
    """(N,) for a (N, 1) tensor: the values are right but it broadcasts along the wrong axis."""
    inputs = make()

    def fwd(x, w, y):  # type: ignore[no-untyped-def]
        s = (x @ w).sum(1, keepdim=True)
        return (s**2).sum(), {"s": s}

    s = (inputs["x"] @ inputs["w"]).sum(1, keepdim=True)
    report = check_gradients(fwd, inputs, {"s": (2 * s).reshape(-1)})
    row = report.row("s")
    assert row.kind == "shape" and "keep the dimension" in row.verdict


def test_a_float64_gradient_of_a_float32_forward_is_held_to_float32() -> None:
    inputs = make()  # float32
    grads = {k: v.double() for k, v in backward(**inputs).items()}
    assert check_gradients(forward, inputs, grads).ok


def test_one_tensor_under_two_names_is_refused() -> None:
    def twice(x, w, y):  # type: ignore[no-untyped-def]
        h = x @ w
        return h.sum(), {"h": h, "out": h}

    with pytest.raises(ValueError, match="are the same tensor"):
        check_gradients(twice, make(), {"h": torch.ones(6, 3)})
