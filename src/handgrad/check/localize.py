"""Check one layer (or the loss) in isolation, so one wrong layer is blamed and no other.

Each layer is fed the input it sees in the model's forward pass and the *reference's* upstream
gradient dL/d(output), never the hand-written one: a wrong layer above cannot make it look
wrong. Its hand-written backward is then compared with

- autograd on its torch.nn twin (``handgrad.check.twins``), every entry; and
- float64 central finite differences of L = Σ output · upstream on sampled coordinates of its
  input and of each parameter, kink-aware (``handgrad.check.finite_diff``).

The backward runs twice: once onto zeroed ``.grad`` (the compared values) and once onto
``.grad`` preloaded with a random value, which must grow by the same amount; a backward that
assigns instead of accumulating is caught there.

Dropout in training mode: every forward of a layer runs under the same seed, so the
hand-written pass, the twin and every finite-difference evaluation drop the same units.
Buffers (BatchNorm's running statistics) are restored after every evaluation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from handgrad import nn
from handgrad.check import kept_dims, twins
from handgrad.check.compare import (
    ERROR,
    OK,
    SHAPE,
    SKIPPED,
    VACUOUS,
    WRONG,
    Comparison,
    Tolerance,
    compare,
    effective_scale,
    max_abs,
)
from handgrad.check.diagnose import (
    Candidate,
    Diagnosis,
    diagnose,
    diagnose_accumulation,
    diagnose_error,
    error_shapes,
)
from handgrad.check.finite_diff import (
    STEP,
    FDResult,
    Probe,
    full_gradient,
    judge,
    probe,
    sample_indices,
)
from handgrad.check.report import GradRow
from handgrad.check.slips import layer_candidates, loss_candidates

# Largest tensor whose gradient is computed by finite differences at every coordinate (for a
# layer without a twin: to pass a reference gradient down, or to diagnose a wrong one).
FULL_FD_LIMIT = 4096

AUTOGRAD = "autograd"
FINITE_DIFFERENCES = "finite differences"


@dataclass(frozen=True)
class Unit:
    """One layer of the model, checked on its own: ``name`` is its path (``"2"``, ``"0.1"``)."""

    name: str
    module: nn.Module

    @property
    def label(self) -> str:
        kind = type(self.module).__name__
        return f"{self.name} ({kind})" if self.name else kind

    @property
    def module_name(self) -> str:
        return self.name or type(self.module).__name__

    def param_name(self, local: str) -> str:
        return f"{self.name}.{local}" if self.name else local


def split_units(model: nn.Module, prefix: str = "") -> list[Unit]:
    """The layers of a Sequential (nested ones opened up), or the model itself as one unit."""
    if not isinstance(model, nn.Sequential):
        return [Unit(prefix, model)]
    units: list[Unit] = []
    for i, child in enumerate(model):
        name = f"{prefix}.{i}" if prefix else str(i)
        units += (
            split_units(child, name) if isinstance(child, nn.Sequential) else [Unit(name, child)]
        )
    return units


@dataclass(frozen=True)
class Settings:
    """How to check: which references, the tolerance, sampling and seeds."""

    use_autograd: bool
    use_fd: bool
    tol: Tolerance
    fd_samples: int
    seed: int
    generator: torch.Generator
    batch: int

    def unit_seed(self, index: int) -> int:
        """The seed every forward of unit ``index`` runs under (Dropout's mask)."""
        return self.seed * 1_000_003 + index + 1


@dataclass
class UnitCheck:
    """The rows of one layer and the reference input gradient to pass down to the layer below."""

    rows: list[GradRow]
    reference_input_grad: Tensor
    reference: str
    notes: list[str] = field(default_factory=list)


def seed_cpu(seed: int) -> None:
    """Seed the CPU generator that Dropout draws from (``torch.manual_seed`` also seeds every
    accelerator, and costs a thousand times more)."""
    torch.default_generator.manual_seed(seed)


@contextmanager
def kept_buffers(module: nn.Module) -> Iterator[None]:
    """Restore every buffer (running statistics, counters) when the block ends."""
    saved = {name: b.detach().clone() for name, b in module.named_buffers()}
    try:
        yield
    finally:
        for name, b in module.named_buffers():
            if name in saved and b.shape == saved[name].shape:
                b.copy_(saved[name])


def _kinked(module: nn.Module) -> bool:
    """Whether the layer is ReLU or LeakyReLU (with handgrad's forward): kinks at 0."""
    return twins.handgrad_base(type(module)) in (nn.ReLU, nn.LeakyReLU)


def _elementwise(module: nn.Module) -> bool:
    base = twins.handgrad_base(type(module))
    return base in (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU)


class _Probed:
    """A float64 copy of a layer and the function f = Σ (output − output₀) · upstream."""

    def __init__(self, module: nn.Module, x: Tensor, upstream: Tensor, seed: int) -> None:
        self.module = copy.deepcopy(module).to(dtype=torch.float64)
        self.x = x.detach().to(torch.float64).clone()
        self.upstream = upstream.detach().to(torch.float64)
        self.seed = seed
        self.out0 = self.forward(self.x)
        self.top = max_abs(self.out0)

    def forward(self, x: Tensor) -> Tensor:
        with kept_buffers(self.module), nn.no_saved_state():  # probes get no backward
            seed_cpu(self.seed)
            return self.module(x).detach().clone()

    def evaluate(self) -> tuple[float, float]:
        y = self.forward(self.x)
        delta = y - self.out0
        changed = delta != 0
        magnitude = ((y.abs() + self.top) * self.upstream.abs())[changed].sum()
        return float((delta * self.upstream).sum()), float(magnitude)

    def derivative_at(self, point: Tensor) -> Tensor:
        """f'(p) element-wise by central differences (for element-wise layers only)."""
        p = point.detach().to(torch.float64)
        return (self.forward(p + STEP) - self.forward(p - STEP)) / (2 * STEP)

    def one_sided(self, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Element-wise one-sided slopes · upstream where ``mask`` (element-wise layers only)."""
        step = mask.to(torch.float64) * STEP
        plus = (self.forward(self.x + step) - self.out0) / STEP * self.upstream
        minus = (self.out0 - self.forward(self.x - step)) / STEP * self.upstream
        return plus, minus


@dataclass
class _Gradient:
    """Everything known about one gradient before it becomes a row."""

    name: str
    kind: str
    local: str
    hand: Tensor | None
    expected_shape: tuple[int, ...]
    autograd: Tensor | None = None
    probes: list[Probe] | None = None
    kinks_autograd: set[int] = field(default_factory=set)
    structural: set[int] = field(default_factory=set)
    full_fd: Callable[[], Tensor] | None = None
    accumulation: Diagnosis | None = None


def check_unit(
    unit: Unit, index: int, x: Tensor, upstream: Tensor, settings: Settings, need_input: bool
) -> UnitCheck:
    """Check one layer, fed input ``x`` and the reference's ``upstream`` gradient.

    ``need_input``: whether a layer below needs this layer's reference input gradient (then a
    layer without a twin gets it by finite differences at every coordinate, if small enough).
    """
    module, tol = unit.module, settings.tol
    seed = settings.unit_seed(index)
    params = list(module.named_parameters())
    notes: list[str] = []

    # Hand-written, onto zeroed .grad.
    error: BaseException | None = None
    hand_input: Tensor | None = None
    nn.free_saved_state(module)  # a forward of the chain that got no backward, if any
    with kept_buffers(module):
        for _, p in params:
            p.grad = torch.zeros_like(p)
        seed_cpu(seed)
        out = module(x.clone())
        try:
            hand_input = module.backward(upstream.clone(), input_grad=True)
        except Exception as exc:  # a broken backward is a finding, not a crash
            error = exc
    hand_params = {
        local: (p.grad.detach().clone() if p.grad is not None else None) for local, p in params
    }
    kept = kept_dims.retry(module, x, upstream, error, lambda: seed_cpu(seed)) if error else None
    if kept is not None:  # a kept dimension torch refused: check the other rows all the same
        error, hand_input = None, kept.input_grad
        hand_params.update(kept.grads)

    gradients = [
        _Gradient(unit.param_name(local), "param", local, hand_params[local], tuple(p.shape))
        for local, p in params
    ]
    gradients.append(_Gradient(f"{unit.label} input", "input", "", hand_input, tuple(x.shape)))
    if error is None:
        _check_accumulation(module, x, upstream, seed, gradients, tol)

    # References.
    twin = twins.module_twin(module) if settings.use_autograd else None
    ref_input: Tensor | None = None
    if twin is not None:
        seed_cpu(seed)
        twin_out, ref_input, ref_params = twins.vjp(twin, x, upstream)
        for g in gradients:
            g.autograd = ref_input if g.kind == "input" else ref_params.get(g.local)
        diff = max_abs(twin_out.double() - out.detach().double())
        if twin_out.shape != out.shape or diff > tol.rtol * max(max_abs(twin_out), 1.0):
            notes.append(
                f"the forward of {unit.label} differs from torch.nn's (max difference "
                f"{diff:.2e}): autograd checks torch's function, finite differences yours"
            )
    elif settings.use_autograd:
        notes.append(
            f"{unit.label} has no torch.nn twin (it defines its own forward): "
            + (
                "its gradients are checked by finite differences only"
                if settings.use_fd
                else "its gradients are skipped; use reference='both' or 'fd'"
            )
        )

    probed: _Probed | None = None
    if settings.use_fd or (twin is not None and _kinked(module)):
        probed = _Probed(module, x, upstream, seed)
    if settings.use_fd and probed is not None:
        _probe_all(probed, gradients, settings, kinked=_kinked(module))
    if twin is not None and probed is not None and _kinked(module):
        _autograd_kinks(probed, gradients)

    rows, layer_scale = _rows(unit.label, unit.module_name, gradients, settings, error)
    if any(row.verdict in (WRONG, SHAPE) for row in rows):
        if probed is None and _elementwise(module):  # to evaluate f' at the output
            probed = _Probed(module, x, upstream, seed)
        _diagnose_rows(rows, gradients, module, x, upstream, out, probed, settings, layer_scale)
    if kept is not None:
        kept_dims.mark(rows, unit.param_name(kept.local), kept)

    reference = AUTOGRAD if ref_input is not None else FINITE_DIFFERENCES
    if ref_input is None:
        ref_input, reference = _fallback_input(
            unit, probed, hand_input, x, need_input, settings, notes
        )
    return UnitCheck(rows, ref_input.to(x.dtype), reference, notes)


def _check_accumulation(
    module: nn.Module,
    x: Tensor,
    upstream: Tensor,
    seed: int,
    gradients: list[_Gradient],
    tol: Tolerance,
) -> None:
    """Run the backward again onto preloaded .grad; a correct one adds the same gradient."""
    params = dict(module.named_parameters())
    firsts = {
        g.local: g.hand
        for g in gradients
        if g.kind == "param"
        and g.hand is not None
        and g.hand.shape == params[g.local].shape
        and bool(torch.isfinite(g.hand).all())
    }
    if not firsts:
        return
    gen = torch.Generator().manual_seed(seed)
    preload = {}
    with kept_buffers(module):
        for local, p in params.items():
            scale = max(max_abs(firsts[local]), 1e-3) if local in firsts else 1.0
            preload[local] = torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale
            p.grad = preload[local].clone()
        seed_cpu(seed)
        module(x.clone())
        try:
            module.backward(upstream.clone())
        except Exception:
            return
    for g in gradients:
        if g.local not in firsts:
            continue
        after = params[g.local].grad
        first = firsts[g.local]
        if after is None or after.shape != first.shape:
            continue
        scale = max(max_abs(first), max_abs(preload[g.local]))
        added = after.double() - preload[g.local].double()
        if max_abs(added - first.double()) > 4 * tol.rtol * scale:
            g.accumulation = diagnose_accumulation(
                g.name, first, after, preload[g.local], tol, max(max_abs(first), 1e-300)
            )


def _probe_all(
    probed: _Probed, gradients: list[_Gradient], settings: Settings, kinked: bool
) -> None:
    """Finite differences on sampled coordinates of the input and every parameter."""
    params64 = dict(probed.module.named_parameters())
    for g in gradients:
        tensor = probed.x if g.kind == "input" else params64[g.local]
        indices = sample_indices(tensor.numel(), settings.fd_samples, settings.generator)
        g.probes = probe(probed.evaluate, tensor, indices)
        if kinked and g.kind == "input":
            flat = tensor.reshape(-1)
            g.structural = {j for j in indices if abs(float(flat[j])) < STEP}
        if tensor.numel() <= FULL_FD_LIMIT:
            g.full_fd = _full_fd(probed, tensor)


def _full_fd(probed: _Probed, tensor: Tensor) -> Callable[[], Tensor]:
    return lambda: full_gradient(probed.evaluate, tensor)


def _autograd_kinks(probed: _Probed, gradients: list[_Gradient]) -> None:
    """At a ReLU input of exactly 0 any value between the one-sided slopes is right: there,
    replace autograd's choice by the nearest point of that interval to the hand value."""
    for g in gradients:
        if g.kind != "input" or g.autograd is None or g.hand is None:
            continue
        if g.hand.shape != g.autograd.shape:
            continue
        mask = probed.x == 0
        if not bool(mask.any()):
            continue
        plus, minus = probed.one_sided(mask)
        low, high = torch.minimum(plus, minus), torch.maximum(plus, minus)
        nearest = torch.minimum(torch.maximum(g.hand.double(), low), high)
        g.autograd = torch.where(mask, nearest.to(g.autograd.dtype), g.autograd)
        g.kinks_autograd = set(torch.nonzero(mask.reshape(-1)).reshape(-1).tolist())


def _rows(
    label: str,
    module_name: str,
    gradients: list[_Gradient],
    settings: Settings,
    error: BaseException | None,
) -> tuple[list[GradRow], float]:
    tol = settings.tol
    layer_scale = max(
        [max_abs(g.autograd) for g in gradients if g.autograd is not None]
        + [max((abs(p.central) for p in g.probes), default=0.0) for g in gradients if g.probes]
        + [0.0]
    )
    blamed = _blamed_row(gradients, error) if error is not None else -1
    rows = []
    for i, g in enumerate(gradients):
        reference = (
            AUTOGRAD
            if g.autograd is not None
            else FINITE_DIFFERENCES
            if g.probes is not None
            else "none"
        )
        row = GradRow(
            name=g.name,
            layer=label,
            module=module_name,
            kind=g.kind,
            shape=tuple(g.hand.shape) if g.hand is not None else (),
            expected_shape=g.expected_shape,
            reference=reference,
            verdict=OK,
        )
        rows.append(row)
        if error is not None:
            if i == blamed:
                row.verdict, row.diagnosis = ERROR, diagnose_error(g.name, error)
            else:
                row.verdict, row.note = SKIPPED, "backward raised"
            continue
        if g.hand is None:
            row.verdict = ERROR
            row.diagnosis = Diagnosis("missing", f"{g.name}: .grad is None after backward")
            continue
        if reference == "none":
            row.verdict, row.note = SKIPPED, "no reference"
            continue
        if tuple(g.hand.shape) != g.expected_shape:
            row.verdict = SHAPE
            continue
        _fill(row, g, tol, layer_scale)
    return rows, layer_scale


def _blamed_row(gradients: list[_Gradient], error: BaseException) -> int:
    """The row an exception belongs to: the parameter whose shape torch named, else the first."""
    shapes = error_shapes(error)
    if shapes is not None:
        for i, g in enumerate(gradients):
            if g.kind == "param" and g.expected_shape == shapes[1]:
                return i
    return 0


def _fill(row: GradRow, g: _Gradient, tol: Tolerance, layer_scale: float) -> None:
    """Metrics and verdict of one gradient whose shape is right."""
    assert g.hand is not None  # checked by the caller
    comparison: Comparison | None = None
    if g.autograd is not None:
        comparison = compare(g.hand, g.autograd, tol=tol, layer_scale=layer_scale)
        scale = effective_scale(g.autograd.double(), layer_scale, tol)
    else:
        fd_top = max((abs(p.central) for p in g.probes or []), default=0.0)
        scale = max(fd_top, tol.floor * layer_scale)
    fd: FDResult | None = None
    if g.probes is not None:
        fd = judge(
            g.probes,
            g.hand,
            rtol=tol.fd_rtol,
            scale=scale,
            structural_kinks=g.structural,
            peer=g.autograd,
        )
    row.fd = fd
    row.kinks = len(g.kinks_autograd | _fd_kinks(fd, g.hand))
    if comparison is not None:
        row.exact, row.approx = comparison.exact, comparison.approx
        row.max_abs_diff, row.max_rel_err = comparison.max_abs_diff, comparison.max_rel_err
        vacuous = comparison.vacuous
    else:
        assert fd is not None
        row.approx = fd.ok
        row.max_abs_diff = fd.max_abs_diff
        row.max_rel_err = fd.max_abs_diff / scale if scale > 0 else 0.0
        vacuous = not bool(g.hand.any()) and all(
            p.plus == 0 and p.minus == 0 for p in g.probes or []
        )
    if vacuous:
        row.verdict = VACUOUS
        return
    wrong = (comparison is not None and not comparison.approx) or (fd is not None and not fd.ok)
    if wrong:
        row.verdict = WRONG
        if fd is not None and not fd.ok and comparison is not None and comparison.approx:
            row.note = "finite differences disagree, autograd agrees"
    elif g.accumulation is not None:
        row.verdict, row.diagnosis = WRONG, g.accumulation
    elif not row.approx:
        row.verdict = WRONG


def _fd_kinks(fd: FDResult | None, hand: Tensor) -> set[int]:
    if fd is None:
        return set()
    shape = tuple(hand.shape)
    out = set()
    for c in fd.coordinates:
        if c.kink:
            flat = 0
            for i, size in zip(c.index, shape, strict=True):
                flat = flat * size + i
            out.add(flat)
    return out


def _diagnose_rows(
    rows: list[GradRow],
    gradients: list[_Gradient],
    module: nn.Module,
    x: Tensor,
    upstream: Tensor,
    out: Tensor,
    probed: _Probed | None,
    settings: Settings,
    layer_scale: float,
) -> None:
    """Name the pattern of every wrong or misshapen row of one layer."""
    tol = settings.tol
    for row, g in zip(rows, gradients, strict=True):
        if row.verdict not in (WRONG, SHAPE) or row.diagnosis is not None or g.hand is None:
            continue
        expected = _expected_tensor(g)
        if expected is None:
            if g.probes:
                hand = g.hand.reshape(-1)[[p.index for p in g.probes]]
                central = torch.tensor([p.central for p in g.probes], dtype=torch.float64)
                scale = effective_scale(central, layer_scale, tol)
                row.diagnosis = diagnose(
                    g.name, hand, central, tol=tol, scale=scale, sizes={"N": settings.batch}
                )
            continue
        candidates: list[Candidate] = []
        if row.verdict == WRONG:
            derivative = probed.derivative_at if probed and _elementwise(module) else None
            candidates = layer_candidates(
                module, g.kind, g.local, x, upstream, output=out, derivative_at=derivative
            )
        scale = effective_scale(expected.double(), layer_scale, tol)
        row.diagnosis = diagnose(
            g.name,
            g.hand,
            expected,
            tol=tol,
            scale=scale,
            sizes={"N": settings.batch},
            candidates=candidates,
        )
        if g.accumulation is not None and row.diagnosis.pattern != g.accumulation.pattern:
            row.note = f"also: {g.accumulation.pattern}"


def _expected_tensor(g: _Gradient) -> Tensor | None:
    if g.autograd is not None:
        return g.autograd
    if g.full_fd is not None:
        return g.full_fd()
    return None


def _fallback_input(
    unit: Unit,
    probed: _Probed | None,
    hand_input: Tensor | None,
    x: Tensor,
    need_input: bool,
    settings: Settings,
    notes: list[str],
) -> tuple[Tensor, str]:
    """The input gradient to pass down when the layer has no twin."""
    if not need_input:
        return torch.zeros_like(x), "none"
    if probed is not None and probed.x.numel() <= FULL_FD_LIMIT:
        return full_gradient(probed.evaluate, probed.x), FINITE_DIFFERENCES
    if hand_input is not None and hand_input.shape == x.shape:
        why = "finite differences are off" if probed is None else "its input is too large"
        notes.append(
            f"the layers below {unit.label} are fed its hand-written input gradient (it has no "
            f"twin, and {why})"
        )
        return hand_input.detach(), "hand-written"
    notes.append(f"the layers below {unit.label} are fed zeros: it gave no usable gradient")
    return torch.zeros_like(x), "none"


def loss_backward(loss: nn.Loss, upstream: Tensor | None) -> Tensor:
    """``loss.backward()``, or ``loss.backward(upstream)`` for a loss with reduction='none'."""
    backward: Callable[..., Tensor] = loss.backward
    return backward(upstream) if upstream is not None else backward()


def check_loss(
    loss: nn.Loss, out: Tensor, target: Tensor, r_up: Tensor | None, settings: Settings
) -> tuple[GradRow, Tensor, str, list[str]]:
    """Check the loss's backward at the model's output; return the row and dL/d(output).

    ``r_up`` weighs the loss values of a loss with reduction='none' (L = Σ values · r_up).
    """
    tol = settings.tol
    label = f"loss ({type(loss).__name__})"
    name = f"{label} input"
    notes: list[str] = []
    loss(out.clone(), target)
    g = _Gradient(name, "loss", "", None, tuple(out.shape))
    error: BaseException | None = None
    try:
        g.hand = loss_backward(loss, r_up)
    except Exception as exc:
        error = exc

    twin = twins.loss_twin(loss) if settings.use_autograd else None
    if twin is not None:
        _, g.autograd = twins.loss_gradient(twin, out, target, r_up)
    elif settings.use_autograd:
        notes.append(f"{label} has no torch.nn twin: it is checked by finite differences only")
    if settings.use_fd:
        fd_loss = copy.deepcopy(loss)
        out64 = out.detach().to(torch.float64).clone()
        target64 = target.to(torch.float64) if target.is_floating_point() else target
        up64 = r_up.to(torch.float64) if r_up is not None else None
        evaluate = _loss_function(fd_loss, out64, target64, up64)
        indices = sample_indices(out64.numel(), settings.fd_samples, settings.generator)
        g.probes = probe(evaluate, out64, indices)
        if out64.numel() <= FULL_FD_LIMIT:
            g.full_fd = _full_loss_fd(evaluate, out64)

    sizes = {"N": out.shape[0]} if out.dim() else {}
    if out.dim() == 2:
        sizes.update({"C": out.shape[1], "N·C": out.numel()})
    rows, layer_scale = _rows(label, "loss", [g], settings, error)
    row = rows[0]
    if row.verdict in (WRONG, SHAPE) and g.hand is not None:
        expected = _expected_tensor(g)
        if expected is not None:
            row.diagnosis = diagnose(
                name,
                g.hand,
                expected,
                tol=tol,
                scale=effective_scale(expected.double(), layer_scale, tol),
                sizes=sizes,
                candidates=loss_candidates(loss, out, target, r_up),
            )
    if g.autograd is not None:
        return row, g.autograd, AUTOGRAD, notes
    if g.full_fd is not None:
        return row, g.full_fd().to(out.dtype), FINITE_DIFFERENCES, notes
    if g.hand is not None and g.hand.shape == out.shape:
        notes.append(f"the model is fed {label}'s hand-written gradient (no other reference)")
        return row, g.hand.detach(), "hand-written", notes
    return row, torch.zeros_like(out), "none", notes


def _loss_function(
    loss: nn.Loss, out: Tensor, target: Tensor, upstream: Tensor | None
) -> Callable[[], tuple[float, float]]:
    """f = L(out) − L(out₀) (weighted by ``upstream`` for reduction='none'), and its magnitude."""
    with nn.no_saved_state():  # finite differences: forwards only
        value0 = loss(out, target).detach().clone()
    n = max(out.numel(), 1)
    depth = 1.0 + torch.log2(torch.tensor(float(n))).item()
    reduction = getattr(loss, "reduction", "mean")

    def evaluate() -> tuple[float, float]:
        with nn.no_saved_state():
            value = loss(out, target)
        top = max_abs(out)
        if upstream is not None:
            delta = float(((value - value0) * upstream).sum())
            magnitude = float((value.abs() * upstream.abs()).sum()) + top * float(
                upstream.abs().sum()
            )
        else:
            delta = float(value - value0)
            terms = n * top if reduction == "sum" else top
            magnitude = abs(float(value)) + terms
        return delta, magnitude * depth

    return evaluate


def _full_loss_fd(evaluate: Callable[[], tuple[float, float]], out: Tensor) -> Callable[[], Tensor]:
    return lambda: full_gradient(evaluate, out)
