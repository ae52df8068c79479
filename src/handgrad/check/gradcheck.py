"""``gradcheck``: every gradient of a model, checked layer by layer against two references."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from handgrad import nn
from handgrad.check.compare import (
    DRIFT,
    INHERITED,
    OK,
    SKIPPED,
    VACUOUS,
    compare,
    max_abs,
    tolerance_for,
)
from handgrad.check.localize import (
    Settings,
    Unit,
    check_loss,
    check_unit,
    loss_backward,
    seed_cpu,
    split_units,
)
from handgrad.check.report import GradReport, GradRow

REFERENCES = ("both", "autograd", "fd")
_REFERENCE_NAMES = {
    "both": "autograd + finite differences",
    "autograd": "autograd",
    "fd": "finite differences",
}


def gradcheck(
    model: nn.Module,
    loss: nn.Loss | None,
    x: Tensor,
    target: Tensor | None = None,
    *,
    reference: str = "both",
    dtype: torch.dtype = torch.float64,
    fd_samples: int = 24,
    seed: int = 0,
) -> GradReport:
    """Check every hand-written gradient of ``model`` (and ``loss``) and say where it is wrong.

    The model is copied and converted to ``dtype``; the caller's model, its ``.grad`` and the
    global random state are left untouched. Each layer is checked in isolation (fed the
    reference's upstream gradient), against autograd on its torch.nn twin and against float64
    central finite differences on up to ``fd_samples`` coordinates per gradient, kink-aware.

    Args:
        model: a handgrad module; a Sequential is checked layer by layer.
        loss: a handgrad loss, or None to check the model alone with a random upstream
            gradient R (L = Σ output · R).
        x: the input batch, (N, *).
        target: what ``loss`` expects (ignored without a loss).
        reference: ``"both"``, ``"autograd"`` or ``"fd"`` (finite differences).
        dtype: ``torch.float64`` (default) or ``torch.float32``; tolerances follow it.
        fd_samples: coordinates per gradient checked by finite differences.
        seed: for the sampled coordinates, R, and Dropout's mask.

    Dropout in training mode: every forward of a layer runs under the same seed, so the
    hand-written pass, the twin and each finite-difference evaluation drop the same units.
    BatchNorm in training mode: its running statistics are restored after every evaluation.
    The check runs single-threaded (see ``single_threaded``).

    Returns:
        A ``GradReport``: rows in backward order, ``ok``, ``first_faulty``, ``diagnosis``;
        ``str(report)`` is the table.

    Raises:
        TypeError: ``model``/``loss`` are not handgrad modules, or ``x`` is not a tensor.
        ValueError: an unknown ``reference`` or ``dtype``, or ``fd_samples`` < 1.

    Example:
        >>> report = gradcheck(nn.mlp("6-5-3", "tanh"), nn.CrossEntropyLoss(), x, y)
        >>> report.ok, report.first_faulty
        (True, None)
    """
    _validate(model, loss, x, target, reference, fd_samples)
    tol = tolerance_for(dtype)
    with torch.random.fork_rng(devices=[]), single_threaded():
        model = copy.deepcopy(model).to(dtype=dtype)
        loss = copy.deepcopy(loss) if loss is not None else None
        # The copies' forwards are the check's own: any forward the caller left waiting for a
        # backward (the loss just printed, say) is not carried into them.
        nn.free_saved_state(model)
        if loss is not None:
            nn.free_saved_state(loss)
        x = x.detach().to(dtype).clone()
        if target is not None and target.is_floating_point():
            target = target.detach().to(dtype)
        settings = Settings(
            use_autograd=reference in ("both", "autograd"),
            use_fd=reference in ("both", "fd"),
            tol=tol,
            fd_samples=fd_samples,
            seed=seed,
            generator=torch.Generator().manual_seed(seed),
            batch=int(x.shape[0]) if x.dim() else 1,
        )
        return _check(model, loss, x, target, settings, reference)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one thread, then restore the caller's setting.

    A check is thousands of small evaluations, for which one thread is much faster (threads
    only add synchronization), and it makes every re-evaluation bit-for-bit reproducible,
    which the finite differences rely on.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _validate(
    model: object,
    loss: object,
    x: object,
    target: object,
    reference: str,
    fd_samples: int,
) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"gradcheck: model must be a handgrad.nn.Module, got {type(model)}")
    if loss is not None and not isinstance(loss, nn.Loss):
        raise TypeError(f"gradcheck: loss must be a handgrad.nn.Loss or None, got {type(loss)}")
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"gradcheck: x must be a floating-point tensor, got {x!r:.60}")
    if loss is not None and not isinstance(target, Tensor):
        raise TypeError(f"gradcheck: a loss needs a target tensor, got {type(target)}")
    if reference not in REFERENCES:
        raise ValueError(f"gradcheck: reference must be one of {REFERENCES}, got {reference!r}")
    if not isinstance(fd_samples, int) or fd_samples < 1:
        raise ValueError(f"gradcheck: fd_samples must be a positive integer, got {fd_samples!r}")


def _check(
    model: nn.Module,
    loss: nn.Loss | None,
    x: Tensor,
    target: Tensor | None,
    settings: Settings,
    reference: str,
) -> GradReport:
    units = split_units(model)
    notes = _enable_input_grads(units)
    inputs, out = _forward(units, x, settings)
    rows: list[GradRow] = []
    # The hand-written chain, as a training step runs it (each layer still holds what its
    # backward needs from the forward above): the output rows compare it.
    r_up = _loss_weights(loss, out, target, settings)
    chain, broken_at = _hand_chain(units, loss, out, target, r_up, settings)

    if loss is not None and target is not None:
        loss_row, upstream, upstream_ref, loss_notes = check_loss(loss, out, target, r_up, settings)
        rows.append(loss_row)
        notes += loss_notes
        title = f"{_describe(model, units)} with {type(loss).__name__}"
    else:
        upstream = chain[-1] if chain else torch.zeros_like(out)
        upstream_ref = "random R"
        title = f"{_describe(model, units)} with a random upstream gradient (L = Σ output · R)"

    for i in reversed(range(len(units))):
        unit = units[i]
        if loss is not None or i < len(units) - 1:
            rows.append(
                _output_row(unit, chain, broken_at, i, upstream, upstream_ref, rows, settings)
            )
        result = check_unit(unit, i, inputs[i], upstream, settings, need_input=i > 0)
        rows += result.rows
        notes += result.notes
        upstream, upstream_ref = result.reference_input_grad, result.reference

    notes += _zero_bias_hints(units, rows)
    return GradReport(
        rows=rows,
        title=title,
        dtype=x.dtype,
        references=_REFERENCE_NAMES[reference],
        batch=settings.batch,
        fd_samples=settings.fd_samples,
        notes=notes,
    )


def _enable_input_grads(units: list[Unit]) -> list[str]:
    """Turn ``input_grad`` back on (a first layer may skip dL/dx to save time): check it too."""
    notes = []
    for unit in units:
        for name, module in unit.module.named_modules():
            if getattr(module, "input_grad", True) is False:
                module.input_grad = True  # type: ignore[attr-defined]
                where = f"{unit.name}.{name}" if unit.name and name else unit.name or name
                notes.append(f"input_grad was off on {where}; the check turns it on to check dL/dx")
    return notes


def _zero_bias_hints(units: list[Unit], rows: list[GradRow]) -> list[str]:
    """Explain a bias in front of a BatchNorm in training: its gradient is zero by construction
    (the normalization subtracts the batch mean), so checking it proves little or nothing."""
    verdicts = {row.name: row.verdict for row in rows}
    notes = []
    for unit, after in itertools.pairwise(units):
        name = unit.param_name("bias")
        if name not in verdicts:
            continue
        if not (isinstance(after.module, nn.BatchNorm1d) and after.module.training):
            continue
        why = f"{name} feeds {after.label}, which subtracts the batch mean in training: its "
        if verdicts[name] == VACUOUS:
            notes.append(
                why + "gradient is exactly zero by construction, so no check can prove its "
                "backward (use bias=False there, or check in eval mode)"
            )
        else:
            notes.append(
                why + "gradient is zero in exact arithmetic, so its row only shows that the "
                "hand-written value is zero up to rounding"
            )
    return notes


def _describe(model: nn.Module, units: list[Unit]) -> str:
    if isinstance(model, nn.Sequential):
        return f"Sequential of {len(units)} layers"
    return type(model).__name__


def _forward(units: list[Unit], x: Tensor, settings: Settings) -> tuple[list[Tensor], Tensor]:
    """Each layer's input in the hand-written forward pass, and the model's output."""
    inputs = []
    h = x
    for i, unit in enumerate(units):
        inputs.append(h.detach().clone())
        seed_cpu(settings.unit_seed(i))
        h = unit.module(h)
    return inputs, h.detach().clone()


def _loss_weights(
    loss: nn.Loss | None, out: Tensor, target: Tensor | None, settings: Settings
) -> Tensor | None:
    """R for a loss with reduction='none' (L = Σ values · R); None for a scalar loss."""
    if loss is None or target is None:
        return None
    value = copy.deepcopy(loss)(out.clone(), target)
    if value.dim() == 0:
        return None
    return torch.randn(value.shape, generator=settings.generator, dtype=value.dtype)


def _hand_chain(
    units: list[Unit],
    loss: nn.Loss | None,
    out: Tensor,
    target: Tensor | None,
    r_up: Tensor | None,
    settings: Settings,
) -> tuple[list[Tensor], int | None]:
    """dL/d(output of each layer) as the hand-written backward passes compute them in turn.

    Returns the gradients by layer index (empty when the loss's backward raised) and the index
    of the layer whose backward raised, if any.
    """
    gen = torch.Generator().manual_seed(settings.seed + 1)
    if loss is not None and target is not None:
        chain_loss = copy.deepcopy(loss)
        chain_loss(out.clone(), target)
        try:
            grad = loss_backward(chain_loss, r_up)
        except Exception:
            return [], len(units)
    else:
        grad = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    # Each layer still holds what its backward needs from ``_forward``.
    chain: list[Tensor] = [torch.empty(0)] * len(units)
    for i in reversed(range(len(units))):
        chain[i] = grad.detach().clone()
        try:
            grad = units[i].module.backward(grad, input_grad=True)
        except Exception:
            for unit in units[:i]:  # their forwards get no backward now
                nn.free_saved_state(unit.module)
            return chain, i
    return chain, None


def _output_row(
    unit: Unit,
    chain: list[Tensor],
    broken_at: int | None,
    i: int,
    upstream: Tensor,
    upstream_ref: str,
    rows_above: list[GradRow],
    settings: Settings,
) -> GradRow:
    """The gradient arriving at layer ``i``'s output along the hand-written chain."""
    row = GradRow(
        name=f"{unit.label} output",
        layer=unit.label,
        module=unit.module_name,
        kind="output",
        shape=tuple(upstream.shape),
        expected_shape=tuple(upstream.shape),
        reference=upstream_ref,
        verdict=OK,
    )
    if not chain or (broken_at is not None and broken_at > i):
        row.verdict, row.note = SKIPPED, "a backward above raised"
        return row
    hand = chain[i]
    row.shape = tuple(hand.shape)
    result = compare(hand, upstream, tol=settings.tol, layer_scale=max_abs(upstream))
    row.exact, row.approx = result.exact, result.approx
    row.max_abs_diff, row.max_rel_err = result.max_abs_diff, result.max_rel_err
    if result.vacuous:
        row.note = "all zeros"
    if not result.approx:
        faulty_above = [r.layer for r in rows_above if r.faulty]
        if faulty_above:
            row.verdict, row.note = INHERITED, f"from {faulty_above[-1]}"
        else:
            row.verdict, row.note = DRIFT, "every layer above checks out"
    return row
