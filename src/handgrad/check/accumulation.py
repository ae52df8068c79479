"""``check_accumulation``: per-sample backward passes, accumulated, equal the batched gradient.

As in Fleuret's practical, run forward and backward one sample at a time without zeroing
``.grad`` in between: every parameter's ``.grad`` must end up as the batched gradient, up to
the loss's reduction (a 'mean' over the batch divides by N, so the per-sample sum is N times
the batched gradient; 'sum' and 'none' sum). A backward that assigns ``.grad`` instead of
adding to it keeps the last sample only, and is named.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor

from handgrad import nn
from handgrad.check.compare import Tolerance, max_abs, tolerance_for
from handgrad.check.diagnose import NOT_ACCUMULATED, Diagnosis, diagnose
from handgrad.check.gradcheck import single_threaded
from handgrad.check.localize import loss_backward

# "To 1e-12 in float64": the per-sample sum reorders the batched sums, nothing more.
ACCUMULATION_RTOL = {torch.float64: 1e-12, torch.float32: 1e-5}


@dataclass
class AccumulationRow:
    """One parameter (or the input): accumulated per-sample gradient × scale vs batched."""

    name: str
    max_abs_diff: float
    max_rel_err: float
    ok: bool
    diagnosis: Diagnosis | None = None


@dataclass
class AccumulationReport:
    """The result of ``check_accumulation``; ``str()`` is a small table and a verdict line."""

    rows: list[AccumulationRow]
    batch: int
    reduction: str
    scale: float
    rtol: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def faulty(self) -> list[AccumulationRow]:
        return [row for row in self.rows if not row.ok]

    def __str__(self) -> str:
        width = max([len("gradient"), *(len(r.name) for r in self.rows)])
        lines = [
            f"accumulation check: {self.batch} per-sample backward passes × {self.scale:.6g} "
            f"(reduction {self.reduction!r}) against one batched pass, rtol {self.rtol:.0e}",
            f"{'gradient'.ljust(width)} | maxdiff  | rel err  | verdict",
        ]
        for r in self.rows:
            verdict = "ok" if r.ok else f"WRONG: {r.diagnosis.pattern if r.diagnosis else ''}"
            lines.append(
                f"{r.name.ljust(width)} | {r.max_abs_diff:.2e} | {r.max_rel_err:.2e} | {verdict}"
            )
        if self.ok:
            lines.append("OK: the accumulated per-sample gradients equal the batched gradient")
        else:
            first = self.faulty[0]
            lines.append(f"FAIL: {first.diagnosis.message if first.diagnosis else first.name}")
        return "\n".join(lines)


def _coupled(model: nn.Module) -> str | None:
    """A layer whose training-mode output for one sample depends on the rest of the batch."""
    for name, module in model.named_modules():
        if not module.training:
            continue
        if isinstance(module, nn.BatchNorm1d):
            return f"{name or 'the model'} (BatchNorm1d) normalizes with batch statistics"
        if isinstance(module, nn.Dropout) and module.p > 0:
            return f"{name or 'the model'} (Dropout) draws a new mask on every forward"
    return None


def check_accumulation(
    model: nn.Module,
    loss: nn.Loss,
    x: Tensor,
    target: Tensor,
    *,
    dtype: torch.dtype = torch.float64,
) -> AccumulationReport:
    """Per-sample forward/backward with accumulation against one batched pass.

    Works on a copy of ``model`` in ``dtype``. The batched gradient of a 'mean' loss is the
    accumulated per-sample gradient divided by N; of 'sum' (and 'none', summed) it is equal.

    Raises:
        ValueError: the batch has fewer than 2 samples, or a layer couples the samples in
            training mode (BatchNorm1d, Dropout): call ``model.eval()`` first.
    """
    tol: Tolerance = tolerance_for(dtype)
    rtol = ACCUMULATION_RTOL[dtype]
    if not isinstance(model, nn.Module) or not isinstance(loss, nn.Loss):
        raise TypeError("check_accumulation: model must be a handgrad module, loss a handgrad loss")
    if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[0] < 2:
        raise ValueError("check_accumulation: x must be a batch of at least 2 samples")
    coupled = _coupled(model)
    if coupled is not None:
        raise ValueError(
            f"check_accumulation: {coupled}, so one sample's gradient depends on the batch "
            "and per-sample passes cannot add up to the batched one; call model.eval() first"
        )
    with single_threaded():
        return _check_accumulation(
            copy.deepcopy(model).to(dtype=dtype), copy.deepcopy(loss), x, target, dtype, tol, rtol
        )


def _check_accumulation(
    model: nn.Module,
    loss: nn.Loss,
    x: Tensor,
    target: Tensor,
    dtype: torch.dtype,
    tol: Tolerance,
    rtol: float,
) -> AccumulationReport:
    x = x.detach().to(dtype)
    if target.is_floating_point():
        target = target.detach().to(dtype)
    n = int(x.shape[0])
    reduction = getattr(loss, "reduction", "mean")
    scale = 1.0 / n if reduction == "mean" else 1.0

    batched_input = _backward(model, loss, x, target, zero=True)
    batched = _grads(model, 1.0)

    model.zero_grad(set_to_none=False)  # zeros: user modules may add with .grad.add_
    per_sample = [
        _backward(model, loss, x[i : i + 1], target[i : i + 1], zero=False) for i in range(n)
    ]
    accumulated = _grads(model, scale)
    _backward(model, loss, x[n - 1 :], target[n - 1 :], zero=True)
    last_only = _grads(model, scale)

    floor = max([max_abs(g) for g in batched.values()] + [max_abs(batched_input), 0.0])
    rows = []
    for name, want in batched.items():
        rows.append(_row(name, accumulated[name], want, last_only[name], rtol, tol, floor, n))
    rows.append(
        _row("input", torch.cat(per_sample) * scale, batched_input, None, rtol, tol, floor, n)
    )
    return AccumulationReport(rows, n, reduction, scale, rtol)


def _grads(model: nn.Module, scale: float) -> dict[str, Tensor]:
    """Every parameter's .grad times ``scale`` (zeros where .grad is None)."""
    return {
        name: (p.grad if p.grad is not None else torch.zeros_like(p)) * scale
        for name, p in model.named_parameters()
    }


def _backward(model: nn.Module, loss: nn.Loss, x: Tensor, target: Tensor, zero: bool) -> Tensor:
    if zero:
        model.zero_grad(set_to_none=False)
    out = model(x)
    loss(out, target)
    return model.backward(loss_backward(loss, None), input_grad=True)


def _row(
    name: str,
    got: Tensor,
    want: Tensor,
    last_only: Tensor | None,
    rtol: float,
    tol: Tolerance,
    floor: float,
    n: int,
) -> AccumulationRow:
    scale = max(max_abs(want), 1e-2 * floor)
    if got.shape != want.shape:
        return AccumulationRow(
            name,
            float("inf"),
            float("inf"),
            False,
            Diagnosis(
                "shape",
                f"{name}: accumulated shape {tuple(got.shape)}, batched {tuple(want.shape)}",
            ),
        )
    diff = max_abs(got.double() - want.double())
    rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    if rel <= rtol:
        return AccumulationRow(name, diff, rel, True)
    if last_only is not None and max_abs(got.double() - last_only.double()) <= rtol * scale:
        diagnosis = Diagnosis(
            NOT_ACCUMULATED,
            f"{name}: not accumulated. After {n} per-sample backward passes .grad holds the "
            "last sample's gradient only: the backward assigns (.grad = …) where it must add "
            "(.grad += …)",
        )
    else:
        diagnosis = diagnose(name, got, want, tol=tol, scale=scale, sizes={"N": n})
    return AccumulationRow(name, diff, rel, False, diagnosis)
