"""Check a learner's own backward pass, written as plain functions or notebook cells.

``check_gradients(forward, inputs, grads)`` takes the forward pass in plain torch operations,
the tensors it depends on, and the learner's gradients by name, and says which are right and
where the mistake is made::

    def forward(x, y, w1, b1, w2, b2):
        z1 = x @ w1 + b1; h1 = torch.tanh(z1); z2 = h1 @ w2 + b2
        return ((z2 - y) ** 2).sum(), {"z1": z1, "h1": h1, "z2": z2}

    report = check_gradients(forward, inputs, {"z2": dz2, "h1": dh1, "z1": dz1, "w1": dw1})
    print(report)            # a table like the ninja notebook's cmp lines, with a verdict
    report.first_wrong       # "h1": the gradient whose own line is wrong

How it judges (the reference is autograd, the one place autograd runs for learner code):

- Every gradient is compared with autograd on ``forward`` re-run on float64 copies of the
  inputs (``exact`` is against autograd in the learner's own dtype, as ``cmp`` does), at the
  tolerance of the learner's dtype: max |yours − r| ≤ rtol · max(max |r|, κ · U), U the largest
  upstream gradient entering the tensor's uses (what a rounding error is relative to; it lets a
  gradient that is zero in exact arithmetic, like makemore's dlogit_maxes, pass).
- Each wrong gradient is then judged *locally*: recomputed from the learner's own gradients of
  the named tensors it feeds (autograd through the forward's graph between them, the learner's
  gradients injected where the named tensors are). Right locally means the line is right and
  the error comes from upstream: the row says ``wrong because `dX` is wrong: fix that first``.
  Wrong locally is a mistake made in that line, and the row names it (``learner_diagnose``).
- A gradient whose values are right and whose shape differs only by kept dimensions of size 1
  (``db2 = dz2.sum(0, keepdim=True)`` for b2 of shape (10,)) is right, with a note.
- Finite differences (float64, central, kink-aware) are the second opinion for the inputs'
  gradients when the forward is cheap enough: they decide at a kink (a ReLU input at exactly
  0, where any one-sided slope is right) and report when they disagree with autograd.

Helpers for the other two styles: ``grads_from_dot_g`` reads fastai's ``.g`` attributes, and
``grads_from_accumulated`` takes Fleuret's ``dl_d*`` tensors accumulated over samples.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from handgrad.check.compare import TOLERANCES, Tolerance, max_abs
from handgrad.check.finite_diff import judge, probe, sample_indices
from handgrad.check.learner_diagnose import (
    Context,
    diagnose_shape,
    diagnose_values,
    squeezed_shape,
)
from handgrad.check.learner_graph import Graph, Pass, kink_points
from handgrad.check.learner_report import LearnerReport, LearnerRow
from handgrad.errors import did_you_mean

__all__ = [
    "LearnerReport",
    "LearnerRow",
    "check_gradients",
    "grads_from_accumulated",
    "grads_from_dot_g",
]

# float16 / bfloat16 learners: rounding at ~1e-3 relative.
_HALF = Tolerance(rtol=2e-2, floor=1e-1, fd_rtol=2e-2, diagnose_rtol=2e-2)

# Seconds finite differences may take in all (fd=None); the forward is timed once.
FD_BUDGET = 1.0


def _tolerance(dtype: torch.dtype) -> Tolerance:
    if dtype in TOLERANCES:
        return TOLERANCES[dtype]
    if dtype in (torch.float16, torch.bfloat16):
        return _HALF
    raise ValueError(f"check_gradients: a gradient must be a floating tensor, got dtype {dtype}")


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Tensors the forward creates (``torch.ones(n)``) follow the copies' dtype."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


def split_output(out: Any) -> tuple[Tensor, dict[str, Tensor]]:
    """(loss, intermediates) from what ``forward`` returned: the loss, or (loss, dict).

    Raises:
        ValueError: not a scalar loss, or intermediates that are not a dict name -> tensor.
    """
    intermediates: Any = {}
    if isinstance(out, tuple | list):
        if len(out) != 2:
            raise ValueError(
                "check_gradients: forward must return the loss or (loss, intermediates), "
                f"got a sequence of {len(out)} items"
            )
        out, intermediates = out
    if not isinstance(out, Tensor) or out.numel() != 1:
        what = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out)
        raise ValueError(f"check_gradients: forward must return a scalar loss, got {what}")
    if not isinstance(intermediates, Mapping):
        raise ValueError(
            "check_gradients: the intermediates forward returns must be a dict name -> tensor, "
            f"got {type(intermediates).__name__}"
        )
    for key, value in intermediates.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ValueError(
                f"check_gradients: intermediate {key!r} must be a tensor under a string name, "
                f"got {type(value).__name__}"
            )
    return out.reshape(()), dict(intermediates)


def _copies(
    inputs: Mapping[str, Tensor], dtype: torch.dtype | None, wanted: set[str]
) -> dict[str, Tensor]:
    """Detached copies (float ones in ``dtype`` if given), the wanted ones requiring grad."""
    out = {}
    for name, t in inputs.items():
        c = t.detach().clone()
        if c.is_floating_point():
            if dtype is not None:
                c = c.to(dtype)
            if name in wanted:
                c.requires_grad_(True)
        out[name] = c
    return out


def _run(
    forward: Callable[..., Any], inputs: dict[str, Tensor], dtype: torch.dtype
) -> tuple[Tensor, dict[str, Tensor]]:
    with torch.enable_grad(), _default_dtype(dtype):
        try:
            out = forward(**inputs)
        except (ValueError, TypeError):
            raise
        except Exception as exc:
            lines = str(exc).strip().splitlines()
            text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
            raise ValueError(f"check_gradients: forward raised {text}") from exc
    return split_output(out)


def _validate(inputs: Any, grads: Any) -> None:
    if not isinstance(inputs, Mapping) or not inputs:
        raise ValueError("check_gradients: inputs must be a non-empty dict name -> tensor")
    for name, t in inputs.items():
        if not isinstance(name, str) or not isinstance(t, Tensor):
            raise ValueError(
                f"check_gradients: input {name!r} must be a tensor under a string name, "
                f"got {type(t).__name__}"
            )
    if not isinstance(grads, Mapping):
        raise ValueError("check_gradients: grads must be a dict name -> dL/d(name)")
    if not grads:
        raise ValueError("check_gradients: grads is empty, so nothing would be compared")
    for name, g in grads.items():
        if not isinstance(g, Tensor):
            hint = " (was the backward run? .g is set by it)" if g is None else ""
            raise ValueError(
                f"check_gradients: grads[{name!r}] must be a tensor, got {type(g).__name__}{hint}"
            )
        if not g.is_floating_point():
            raise ValueError(
                f"check_gradients: grads[{name!r}] has dtype {g.dtype}; a gradient is floating"
            )


def _fit(g: Tensor, shape: tuple[int, ...]) -> tuple[Tensor | None, bool]:
    """The learner's gradient in the tensor's shape: as is, or with kept size-1 dimensions
    dropped (then the flag is True); None when the shapes differ otherwise."""
    if tuple(g.shape) == shape:
        return g, False
    if squeezed_shape(g.shape) == squeezed_shape(shape) and g.dim() > len(shape):
        return g.reshape(shape), True
    return None, False


def _batch_size(tensors: Sequence[Tensor]) -> int:
    firsts = Counter(t.shape[0] for t in tensors if t.dim() >= 1 and t.shape[0] > 1)
    return firsts.most_common(1)[0][0] if firsts else 1


def check_gradients(
    forward: Callable[..., Any],
    inputs: Mapping[str, Tensor],
    grads: Mapping[str, Tensor],
    *,
    fd: bool | None = None,
    fd_samples: int = 12,
    seed: int = 0,
    batch_size: int | None = None,
) -> LearnerReport:
    """Check the learner's gradients ``grads`` of the loss ``forward(**inputs)``.

    Args:
        forward: the forward pass in plain torch operations, called with the inputs as keyword
            arguments; returns the scalar loss, or ``(loss, intermediates)``, intermediates a
            dict name -> tensor computed on the way (``"logits"``, ``"h"``, ...).
        inputs: name -> tensor, everything the loss depends on (parameters and data, integer
            targets included). Never modified (forward is run on copies).
        grads: name -> the learner's dL/d(name), for any subset of the inputs and
            intermediates (fastai style: ``grads_from_dot_g``; Fleuret style:
            ``grads_from_accumulated``).
        fd: finite differences on the inputs' gradients: True, False, or None (default) for
            "when the forward is cheap enough" (``FD_BUDGET`` seconds in all).
        fd_samples: coordinates per input gradient checked by finite differences.
        seed: seed of the sampled coordinates.
        batch_size: N, for naming a factor N or 1/N (default: the most common leading size
            of the intermediates).

    Returns:
        a ``LearnerReport``: ``ok``, ``rows`` in backward order, ``first_wrong``.

    Raises:
        ValueError: nothing to compare, a name that is neither an input nor an intermediate,
            a gradient that is not a floating tensor, or a forward that cannot be run.
    """
    _validate(inputs, grads)
    wanted = set(grads)
    floating_inputs = [t for t in inputs.values() if t.is_floating_point()]
    for name in wanted & set(inputs):
        if not inputs[name].is_floating_point():
            raise ValueError(
                f"check_gradients: input {name!r} has dtype {inputs[name].dtype}: it has no "
                "gradient (integer targets and indices are not differentiated)"
            )

    # Every floating input requires grad (even one with no gradient given): the graph through
    # the intermediates is recorded only then.
    inputs64 = _copies(inputs, torch.float64, set(inputs))
    loss, inter = _run(forward, inputs64, torch.float64)
    clash = sorted(set(inter) & set(inputs))
    if clash:
        raise ValueError(
            f"check_gradients: {', '.join(clash)} is both an input and an intermediate; "
            "give each tensor one name"
        )
    known = list(inputs) + list(inter)
    for name in grads:
        if name not in inputs and name not in inter:
            raise ValueError(
                f"check_gradients: grads has {name!r}, which is neither an input nor an "
                f"intermediate of forward{did_you_mean(name, known)}; known names: "
                + ", ".join(known)
            )
    if not loss.requires_grad:
        raise ValueError(
            "check_gradients: the loss does not depend, through differentiable operations, on "
            "any floating input"
        )

    named = {n: inputs64[n] for n in grads if n in inputs64} | inter
    seen: dict[int, str] = {}
    for name, t in {**inputs64, **inter}.items():
        if id(t) in seen:
            raise ValueError(
                f"check_gradients: {seen[id(t)]!r} and {name!r} are the same tensor; give each "
                "tensor one name"
            )
        seen[id(t)] = name
    graph = Graph(loss, named)
    for name in grads:
        if graph.position(name) == len(graph.nodes):
            raise ValueError(
                f"check_gradients: grads has {name!r}, but the loss is not computed from "
                f"forward's {name!r} (no differentiable path leads from it to the loss): "
                "return the very tensor the loss is computed from, not a copy or a stack of "
                "values used separately"
            )
    order = sorted(grads, key=lambda n: (graph.position(n), list(grads).index(n)))
    all_named = list(named)
    truth = graph.backprop(all_named)
    same_dtype = _same_dtype_grads(forward, inputs, grads, floating_inputs)
    notes: list[str] = []
    if same_dtype is None and any(g.dtype != torch.float64 for g in grads.values()):
        notes.append("exact: compared with the float64 reference (autograd in your dtype failed)")

    # The learner's gradients in the tensors' shapes, injected where the tensors are.
    fitted: dict[str, Tensor] = {}
    for name in grads:
        g, _ = _fit(grads[name].detach(), tuple(named[name].shape))
        if g is not None:
            fitted[name] = g.to(torch.float64)

    # The forward's own precision bounds the learner's: the inputs' dtype's tolerance is the
    # least a gradient computed from them is held to.
    working = _tolerance(floating_inputs[0].dtype) if floating_inputs else None
    sizes = {"N": batch_size or _batch_size(list(inter.values()) or floating_inputs)}
    rows: dict[str, LearnerRow] = {}
    roots: list[str] = []
    fd_state = _FD(forward, inputs64, loss, fd, fd_samples, seed, grads)
    accepted: dict[str, Tensor] = {}  # gradients right at a kink: the truth below follows them
    for name in order:
        row, root = _check_one(
            name, grads, named, graph, truth, fitted, same_dtype, sizes, fd_state, working
        )
        rows[name] = row
        if row.ok and row.note and "kink" in row.note and name in fitted:
            accepted[name] = fitted[name]
            truth = graph.backprop(all_named, accepted)
        misshapen = [
            u
            for u in order
            if u in rows and u not in fitted and not rows[u].ok and u in graph.downstream(name)
        ]
        if root and misshapen:
            # Computed from a gradient whose shape is wrong: it cannot be judged on its own.
            row.kind = "inherited"
            row.verdict = (
                f"wrong, and computed from `d{misshapen[0]}`, whose shape is wrong: fix that "
                "first (this line cannot be judged before)"
            )
            root = False
        if root:
            roots.append(name)
    for name in order:
        row = rows[name]
        if row.kind != "inherited" or row.verdict:
            continue
        below = graph.downstream(name)
        blamed = [r for r in roots if r in below]
        if blamed:
            row.verdict = f"wrong because `d{blamed[0]}` is wrong: fix that first"
            if len(blamed) > 1:
                row.verdict += " (also " + ", ".join(f"`d{b}`" for b in blamed[1:]) + ")"
        else:
            row.verdict = "wrong because a gradient it is computed from is wrong: fix that first"
    notes += fd_state.notes()
    dtypes = sorted({str(g.dtype).replace("torch.", "") for g in grads.values()})
    return LearnerReport(
        [rows[n] for n in order], roots[0] if roots else None, "/".join(dtypes), notes
    )


def _same_dtype_grads(
    forward: Callable[..., Any],
    inputs: Mapping[str, Tensor],
    grads: Mapping[str, Tensor],
    floating_inputs: list[Tensor],
) -> dict[str, Tensor] | None:
    """Autograd in the inputs' own dtype (what ``cmp`` compares with), for ``exact``."""
    dtype = floating_inputs[0].dtype if floating_inputs else torch.float64
    if dtype == torch.float64:
        return None
    try:
        copies = _copies(inputs, None, set(inputs))
        loss, inter = _run(forward, copies, dtype)
        named = {n: copies[n] for n in grads if n in copies} | inter
        tensors = [named[n] for n in grads]
        got = torch.autograd.grad(loss, tensors, allow_unused=True)
    except Exception:
        return None
    return {
        n: (torch.zeros_like(named[n]) if g is None else g.detach())
        for n, g in zip(grads, got, strict=True)
    }


def _scale(
    r: Tensor, contributions: Sequence[Tensor | None], upstream_top: float, tol: Tolerance
) -> float:
    parts = max((max_abs(c) for c in contributions if c is not None), default=0.0)
    return max(max_abs(r), tol.floor * max(parts, upstream_top))


def _at_kinks(
    a: Tensor, r: Tensor, value: Tensor, graph: Graph, name: str, result: Pass
) -> tuple[Tensor, int]:
    """``r`` with each entry that sits on a kink of a ReLU-like use (input exactly at the kink,
    where any slope between the one-sided ones is right) moved to the point of that interval
    nearest the learner's ``a``; and how many entries are on a kink."""
    adjusted, count = r, 0
    for i, use in enumerate(graph.uses[name]):
        c, up = result.contributions[name][i], result.upstream[name][i]
        if c is None or up is None or c.shape != r.shape or up.shape != r.shape:
            continue
        for point in kink_points(use.node, use.slot):
            mask = value.detach() == point
            if not bool(mask.any()):
                continue
            rest = adjusted - c
            low = rest + torch.clamp(up, max=0.0)
            high = rest + torch.clamp(up, min=0.0)
            nearest = torch.minimum(torch.maximum(a.double(), low), high)
            adjusted = torch.where(mask, nearest, adjusted)
            count += int(mask.sum())
    return adjusted, count


def _check_one(
    name: str,
    grads: Mapping[str, Tensor],
    named: Mapping[str, Tensor],
    graph: Graph,
    truth: Pass,
    fitted: Mapping[str, Tensor],
    same_dtype: Mapping[str, Tensor] | None,
    sizes: Mapping[str, int],
    fd: _FD,
    working: Tolerance | None,
) -> tuple[LearnerRow, bool]:
    """The row of one gradient, and whether its own line is wrong (a root)."""
    g = grads[name].detach()
    tol = _tolerance(g.dtype)
    if working is not None and working.rtol > tol.rtol:
        tol = working  # a float64 gradient of a float32 forward is only as exact as float32
    r = truth.grads[name]
    shape = tuple(r.shape)
    gc, kept = _fit(g, shape)
    scale = _scale(r, truth.contributions[name], truth.upstream_top[name], tol)
    note = None
    if kept:
        note = (
            f"d{name} has shape {tuple(g.shape)}, the tensor {shape}: the values are right "
            f"once the kept dimension is dropped; .grad in torch would have the shape {shape} "
            "(sum without keepdim=True, or squeeze it before the update)"
        )
    kinks = 0
    if gc is not None:
        r, kinks = _at_kinks(gc, r, named[name], graph, name, truth)
    if gc is None:
        maxdiff, approx, exact = math.inf, False, False
    else:
        maxdiff = max_abs(gc.double() - r)
        approx = maxdiff <= tol.rtol * scale and bool(torch.isfinite(gc).all())
        exact_ref = same_dtype[name] if same_dtype is not None else r.to(g.dtype)
        exact = tuple(exact_ref.shape) == shape and torch.equal(gc, exact_ref.to(g.dtype))

    def row(
        kind: str, verdict: str, local: float | None = None, extra: str | None = None
    ) -> LearnerRow:
        text = "; ".join(t for t in (note, extra) if t) or None
        return LearnerRow(
            name, tuple(g.shape), shape, exact, approx, maxdiff, kind, verdict, local, text
        )

    if approx and gc is not None:
        extra = fd.second_opinion(name, gc, r, tol, scale)
        if kinks:
            extra = "; ".join(
                t
                for t in (
                    f"{kinks} entr{'y' if kinks == 1 else 'ies'} of `{name}` sit exactly on a "
                    "kink (a ReLU or clamp input at its threshold), where any value between the "
                    "one-sided derivatives is right; yours is one",
                    extra,
                )
                if t
            )
        return row("ok", "ok", extra=extra), False
    if gc is not None and name in fd.leaves:
        rescued = fd.at_kinks(name, gc, r, tol, scale)
        if rescued is not None:
            return row("ok", "ok", extra=rescued), False
        fd_note = fd.against_autograd(name, gc, r, tol, scale)
    else:
        fd_note = None

    # Judge the line locally: recompute from the learner's own upstream gradients.
    replaced = {n: t for n, t in fitted.items() if n != name}
    local = graph.backprop([name], replaced)
    r_loc = local.grads[name]
    if gc is not None:
        r_loc, _ = _at_kinks(gc, r_loc, named[name], graph, name, local)
    scale_loc = _scale(r_loc, local.contributions[name], local.upstream_top[name], tol)
    local_diff = max_abs(gc.double() - r_loc) if gc is not None else None
    if local_diff is not None and local_diff <= tol.rtol * scale_loc:
        return row("inherited", "", local_diff, fd_note), False
    uses = [
        (f"`{u.leads_to}`" if u.leads_to else f"its use in a {u.op}", c)
        for u, c in zip(graph.uses[name], local.contributions[name], strict=True)
    ]
    pairs = []
    below = graph.downstream(name)
    for y_name in below:
        y = named[y_name]
        if y.shape != named[name].shape or not y.is_floating_point():
            continue
        dy = replaced.get(y_name, truth.grads.get(y_name))
        if dy is not None:
            pairs.append((y_name, named[name].detach(), y.detach(), dy))
    ctx = Context(uses, local.upstream[name], pairs)
    if gc is None:
        kind, verdict = diagnose_shape(f"d{name}", g, r_loc, tol, scale_loc, ctx)
    else:
        kind, verdict = diagnose_values(f"d{name}", name, gc, r_loc, tol, scale_loc, sizes, ctx)
    return row(kind, verdict, local_diff, fd_note), True


class _FD:
    """Finite differences of the float64 forward on the inputs' coordinates (kink-aware)."""

    def __init__(
        self,
        forward: Callable[..., Any],
        inputs64: Mapping[str, Tensor],
        loss: Tensor,
        enabled: bool | None,
        samples: int,
        seed: int,
        grads: Mapping[str, Tensor],
    ) -> None:
        self.forward = forward
        self.base = {n: t.detach().clone() for n, t in inputs64.items()}
        self.loss0 = float(loss.detach())
        self.samples = max(1, samples)
        self.generator = torch.Generator().manual_seed(seed)
        self.leaves = [n for n in grads if n in inputs64 and inputs64[n].is_floating_point()]
        numel = max((t.numel() for t in inputs64.values()), default=1)
        self.depth = 1.0 + math.log2(max(numel, 1))
        self.checked = 0
        self.disagreements: list[str] = []
        self.requested = enabled
        self.enabled = bool(enabled) and bool(self.leaves)
        self.remaining = math.inf  # forward evaluations left in the time budget
        self.out_of_time = False
        if enabled is None and self.leaves:
            started = time.perf_counter()
            self.loss0 += self._evaluate()[0]  # the same value, and a warm timing
            seconds = time.perf_counter() - started
            self.remaining = FD_BUDGET / max(seconds, 1e-6)
            self.samples = min(self.samples, int(self.remaining / (2 * len(self.leaves))))
            self.enabled = self.samples >= 2

    def _evaluate(self) -> tuple[float, float]:
        with torch.no_grad(), _default_dtype(torch.float64):
            loss, _ = split_output(self.forward(**self.base))
        value = float(loss)
        return value - self.loss0, (abs(value) + abs(self.loss0) + 1e-300) * self.depth

    def _probe(self, name: str, indices: list[int]) -> Any:
        """The probes at ``indices`` of input ``name``, or None past the time budget."""
        if 2 * len(indices) > self.remaining:
            self.out_of_time = True
            return None
        self.remaining -= 2 * len(indices)
        saved = self.base[name]
        self.base[name] = saved.clone().contiguous()
        try:
            return probe(self._evaluate, self.base[name], indices)
        finally:
            self.base[name] = saved

    def at_kinks(self, name: str, g: Tensor, r: Tensor, tol: Tolerance, scale: float) -> str | None:
        """If every entry where ``g`` differs from autograd is at a kink where ``g`` lies between
        the one-sided slopes, a sentence saying so; else None."""
        if not self.enabled:
            return None
        diff = (g.double() - r).abs().reshape(-1)
        bad = torch.nonzero(diff > tol.rtol * scale).reshape(-1).tolist()
        if not bad or len(bad) > 32:
            return None
        probes = self._probe(name, bad)
        if probes is None:
            return None
        result = judge(probes, g, rtol=tol.fd_rtol, scale=scale)
        if result.ok and result.kinks == len(bad):
            return (
                f"d{name} differs from autograd at {len(bad)} kink(s) of the forward (e.g. a "
                "ReLU input at exactly 0), where finite differences accept any value between "
                "the one-sided slopes: yours is one"
            )
        return None

    def second_opinion(
        self, name: str, g: Tensor, r: Tensor, tol: Tolerance, scale: float
    ) -> str | None:
        """Sampled finite differences on an input's gradient judged right by autograd."""
        if not self.enabled or name not in self.leaves:
            return None
        indices = sample_indices(g.numel(), self.samples, self.generator)
        if not indices:
            return None
        probes = self._probe(name, indices)
        if probes is None:
            return None
        result = judge(probes, g, rtol=tol.fd_rtol, scale=scale, peer=r.to(g.dtype))
        self.checked += len(indices)
        if not result.ok:
            where = result.failures[0]
            self.disagreements.append(name)
            return (
                f"finite differences disagree at {list(where.index)} (yours {where.hand:.6g}, "
                f"finite differences {where.central:.6g}): is the forward differentiable there?"
            )
        return None

    def against_autograd(
        self, name: str, g: Tensor, r: Tensor, tol: Tolerance, scale: float
    ) -> str | None:
        """For an input's gradient autograd calls wrong: a note if finite differences side
        with the learner (then the forward is not differentiable the way it computes)."""
        if not self.enabled:
            return None
        indices = sample_indices(g.numel(), self.samples, self.generator)
        probes = self._probe(name, indices)
        if probes is None:
            return None
        self.checked += len(indices)
        yours = judge(probes, g, rtol=tol.fd_rtol, scale=scale)
        theirs = judge(probes, r, rtol=tol.fd_rtol, scale=scale)
        if yours.ok and not theirs.ok:
            self.disagreements.append(name)
            return (
                "finite differences agree with yours, not with autograd: the forward is not "
                "differentiable the way it is written (a .detach(), .data or in-place change?)"
            )
        return None

    def notes(self) -> list[str]:
        if not self.leaves:
            return []
        if self.requested is False:
            return ["finite differences off (fd=False): autograd alone is the reference"]
        if not self.enabled:
            return ["finite differences skipped (the forward is too slow for them; fd=True forces)"]
        if self.checked:
            agree = (
                "agree"
                if not self.disagreements
                else "disagree for " + ", ".join(self.disagreements)
            )
            budget = " (the time budget stopped them early)" if self.out_of_time else ""
            return [
                f"finite differences (float64, {self.checked} sampled coordinates of the inputs' "
                f"gradients) {agree}{budget}"
            ]
        if self.out_of_time:
            return ["finite differences skipped (past the time budget; fd=True forces)"]
        return []


def grads_from_dot_g(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """fastai style: ``{name: t.g}`` for every tensor that carries a ``.g`` attribute.

    Example::

        forward_and_backward(x, y)           # sets l1.g, l2.g, out.g, w1.g, ...
        grads = grads_from_dot_g({"x": x, "w1": w1, "b1": b1, "l1": l1, "out": out})

    Raises:
        ValueError: no tensor has a ``.g`` (the backward was not run), or a ``.g`` that is not
            a tensor.
    """
    found: dict[str, Tensor] = {}
    for name, t in tensors.items():
        g = getattr(t, "g", None)
        if g is None:
            continue
        if not isinstance(g, Tensor):
            raise ValueError(f"grads_from_dot_g: {name}.g is a {type(g).__name__}, not a tensor")
        found[name] = g
    if not found:
        raise ValueError(
            "grads_from_dot_g: none of " + ", ".join(tensors) + " has a .g: run the backward first"
        )
    return found


def grads_from_accumulated(
    accumulated: Mapping[str, Any],
    per_sample: Sequence[Mapping[str, Tensor]] = (),
    *,
    prefix: str = "dl_d",
) -> dict[str, Tensor]:
    """Fleuret style: gradients accumulated over samples, keyed by the tensors' names.

    Args:
        accumulated: ``{"dl_dw1": dl_dw1, ...}`` (``locals()`` works: non-tensors and names
            without the prefix are ignored): Σ_n dl_n/dw over the samples, compared with the
            gradient of the batched loss Σ_n l_n (the forward given to ``check_gradients``).
        per_sample: optionally, one mapping per sample of that sample's gradients of its own
            intermediates (``{"dl_ds1": ...}``); they are stacked along a new first dimension,
            the gradient of the batched forward's intermediate (``s1`` of shape (N, H), row n
            sample n's). The batched forward must compute the loss *from* that (N, H) tensor
            (``s1 = x @ w1.t() + b1``), not stack per-sample copies the loss never uses.
        prefix: what the gradients' names start with.

    Returns:
        ``{"w1": dl_dw1, ..., "s1": stacked dl_ds1}``.
    """
    found = {
        key[len(prefix) :]: value
        for key, value in accumulated.items()
        if key.startswith(prefix) and isinstance(value, Tensor) and len(key) > len(prefix)
    }
    if per_sample:
        names = [k for k in per_sample[0] if k.startswith(prefix)]
        for key in names:
            rows = [sample[key] for sample in per_sample]
            found[key[len(prefix) :]] = torch.stack([t.detach().reshape(t.shape) for t in rows])
    if not found:
        raise ValueError(f"grads_from_accumulated: no tensor named {prefix}... was given")
    return found
