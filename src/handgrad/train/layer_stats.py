"""Per-layer statistics of a training step, and ``layers.jsonl``, the run file that keeps them.

For every layer of a model (every child of its ``Sequential``, activations included) one step
yields one record::

    {"step": 100, "layer": "1", "type": "ReLU", "samples": 64,
     "mean": 0.41, "std": 0.77,             # of the layer's output, over batch and units
     "dead": 0.125,                         # ReLU: units that are 0 for every sample (else null)
     "saturated": null, "saturated_values": null,  # Tanh / Sigmoid only (thresholds below)
     "hist": [40 counts], "hist_range": [0.0, 10.0], "below": 0, "above": 3,
     "grad_norm": 0.0123,                   # ‖dL/d(output)‖ over the whole batch
     "params": {"weight": {"norm": 9.1, "grad_norm": 0.3, "update_ratio": 0.0011}, ...}}

Definitions (fixed, so that runs compare):

- **dead** (``ReLU`` only): the fraction of output units (columns of the ``(N, D)`` output)
  that are exactly 0 for every one of the ``N`` samples. A unit dead on a batch of one sample
  says little: the doctor judges it only where ``samples >= 32``.
- **saturated** (``Tanh``: ``|y| > 0.99``, where tanh' < 0.02; ``Sigmoid``: ``y < 0.01`` or
  ``y > 0.99``, where σ' < 0.0099): the fraction of units saturated on at least 90 % of the
  samples; ``saturated_values`` is the fraction of all ``N·D`` outputs beyond the threshold.
- **hist**: ``HIST_BINS`` = 40 equal bins over a range fixed by the layer's type (``Tanh``
  [-1, 1], ``Sigmoid`` [0, 1], ``ReLU`` [0, 10] as fastai's ``ActivationStats``, anything
  else [-10, 10]); values outside the range are counted in ``below`` / ``above``, never folded
  into the edge bins. One histogram per record, a column of the "colorful dimension" plot.
- **update_ratio**: ``‖w_after − w_before‖ / ‖w_before‖`` for each parameter, the step the
  optimizer really took (``|lr·step| / |w|``; the "about 1e-3" rule of thumb); null when the
  step is not known or ``w`` is 0.

Every figure is computed in float64 from the tensors given, so the handgrad model and its torch
twin give the same figures to rounding. Two collectors gather those tensors:

- :class:`SequentialProbe` runs a handgrad ``Sequential`` child by child, keeping each child's
  output and the gradient that reaches it: exactly ``Sequential.forward``/``backward`` (same
  calls in the same order), so a step taken through it is the step the loop would take.
- :class:`TorchProbe` does the same on ``handgrad.reference.to_torch(model)`` with
  ``register_forward_hook`` / ``register_full_backward_hook``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from handgrad import nn
from handgrad.errors import HandgradError

LAYERS = "layers.jsonl"
HIST_BINS = 40
TANH_SATURATION = 0.99  # |tanh(s)| > 0.99  <=>  |s| > 2.65, tanh'(s) < 0.02
SIGMOID_SATURATION = 0.01  # σ(s) < 0.01 or > 0.99  <=>  |s| > 4.6, σ'(s) < 0.0099
SATURATED_SHARE = 0.9  # a unit is saturated when beyond the threshold on >= 90% of the samples
HIST_RANGES: dict[str, tuple[float, float]] = {
    "Tanh": (-1.0, 1.0),
    "Sigmoid": (0.0, 1.0),
    "ReLU": (0.0, 10.0),
}
DEFAULT_RANGE = (-10.0, 10.0)

Record = dict[str, Any]


def hist_range(kind: str) -> tuple[float, float]:
    """The fixed histogram range of a layer type (``"Tanh"`` → (-1, 1), ...)."""
    return HIST_RANGES.get(kind, DEFAULT_RANGE)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _norm(t: Tensor) -> float | None:
    """‖t‖₂ summed in float64 (no float64 copy of a large float32 tensor is made)."""
    t = t.detach()
    dtype = torch.float64 if t.is_floating_point() else None
    return _finite(float(torch.linalg.vector_norm(t, dtype=dtype).item()))


def _as_rows(t: Tensor) -> Tensor:
    """``(N, ...)`` → ``(N, D)`` in float64 (a 0- or 1-dim tensor is one row)."""
    t = t.detach().double()
    if t.dim() == 0:
        return t.reshape(1, 1)
    if t.dim() == 1:
        return t.reshape(1, -1)
    return t.reshape(t.shape[0], -1)


def histogram(y: Tensor, kind: str) -> tuple[list[int], int, int]:
    """``(counts, below, above)`` of ``y``'s values over :func:`hist_range` in ``HIST_BINS``
    bins; NaNs are counted nowhere. A value equal to the upper edge falls in the last bin."""
    lo, hi = hist_range(kind)
    flat = y.detach().double().reshape(-1)
    nan = torch.isnan(flat)
    if bool(nan.any()):
        flat = flat[~nan]
    below = int((flat < lo).sum().item())
    above = int((flat > hi).sum().item())
    counts = torch.histc(flat, bins=HIST_BINS, min=lo, max=hi)  # outside [lo, hi]: not counted
    return [int(c) for c in counts.tolist()], below, above


def saturation(y: Tensor, kind: str) -> tuple[float, float] | None:
    """``(saturated units, saturated values)`` fractions for ``Tanh``/``Sigmoid``, else None."""
    rows = _as_rows(y)
    if kind == "Tanh":
        beyond = rows.abs() > TANH_SATURATION
    elif kind == "Sigmoid":
        beyond = (rows < SIGMOID_SATURATION) | (rows > 1 - SIGMOID_SATURATION)
    else:
        return None
    per_unit = beyond.double().mean(dim=0)  # (D,) share of the samples beyond, per unit
    units = float((per_unit >= SATURATED_SHARE).double().mean().item())
    return units, float(beyond.double().mean().item())


def dead_fraction(y: Tensor, kind: str) -> float | None:
    """``ReLU``: the fraction of units that are 0 for every sample of the batch; else None."""
    if kind != "ReLU":
        return None
    rows = _as_rows(y)
    return float((rows == 0).all(dim=0).double().mean().item())


def layer_figures(
    *,
    step: int,
    name: str,
    kind: str,
    output: Tensor,
    grad_output: Tensor | None,
    params: Mapping[str, Tensor],
    grads: Mapping[str, Tensor | None],
    before: Mapping[str, Tensor] | None = None,
) -> Record:
    """One ``layers.jsonl`` record for one layer at one step.

    Args:
        step: optimizer steps done when the record is written (the step measured is the
            ``step``-th: its batch, its gradients, its update).
        name: the layer's name in ``model.named_modules()`` (``"0"``, ``"1"``, ...).
        kind: its type name (``"Linear"``, ``"ReLU"``, ...).
        output: its output on the batch, ``(N, ...)``.
        grad_output: dL/d(output), the same shape, or None when unknown.
        params: its own parameters by short name (``"weight"``, ``"bias"``), after the step.
        grads: their gradients (None for a parameter the backward left without one).
        before: the parameters before the step (for ``update_ratio``), or None.
    """
    rows = _as_rows(output)
    counts, below, above = histogram(rows, kind)
    sat = saturation(rows, kind)
    figures: Record = {
        "step": int(step),
        "layer": name,
        "type": kind,
        "samples": int(rows.shape[0]),
        "mean": _finite(float(rows.mean().item())) if rows.numel() else None,
        "std": _finite(float(rows.std(correction=0).item())) if rows.numel() else None,
        "dead": dead_fraction(rows, kind),
        "saturated": sat[0] if sat is not None else None,
        "saturated_values": sat[1] if sat is not None else None,
        "hist": counts,
        "hist_range": list(hist_range(kind)),
        "below": below,
        "above": above,
        "grad_norm": _norm(grad_output) if grad_output is not None else None,
        "params": {},
    }
    for pname, p in params.items():
        grad = grads.get(pname)
        ratio: float | None = None
        if before is not None and pname in before:
            w0 = before[pname].detach()
            size = _norm(w0)
            if size is not None and size > 0:
                change = _norm(p.detach() - w0)  # the step, in the parameters' dtype
                ratio = _finite(change / size) if change is not None else None
        figures["params"][pname] = {
            "norm": _norm(p),
            "grad_norm": _norm(grad) if grad is not None else None,
            "update_ratio": ratio,
        }
    return figures


# -- the handgrad collector -----------------------------------------------------------------
def _own_params(module: Any) -> dict[str, Tensor]:
    """A module's own parameters by short name (handgrad ``_param_names`` or torch's)."""
    if isinstance(module, nn.Module):
        return {n: getattr(module, n) for n in module._param_names}
    return dict(module.named_parameters(recurse=False))


@dataclass
class _Kept:
    outputs: list[Tensor] = field(default_factory=list)
    grads: list[Tensor] = field(default_factory=list)


def _kept_records(
    step: int,
    layers: list[tuple[str, Any]],
    kept: list[_Kept],
    before: list[dict[str, Tensor]] | None,
) -> list[Record]:
    """One record per ``(name, layer)`` from its kept outputs ``(B, *)`` and the gradients
    that reached them (joined over micro-batches, each row flattened to ``(B, features)``);
    ``before``: each layer's parameters before the step, for the update ratios."""
    out = []
    for i, (name, layer) in enumerate(layers):
        outputs, grads = kept[i].outputs, kept[i].grads
        params = _own_params(layer)
        out.append(
            layer_figures(
                step=step,
                name=name,
                kind=type(layer).__name__,
                output=torch.cat([o.reshape(o.shape[0], -1) for o in outputs]),
                grad_output=torch.cat([g.reshape(g.shape[0], -1) for g in grads])
                if len(grads) == len(outputs)
                else None,
                params=params,
                grads={n: p.grad for n, p in params.items()},
                before=before[i] if before is not None else None,
            )
        )
    return out


class SequentialProbe:
    """Run a handgrad ``Sequential`` child by child and keep what each child produced.

    ``probe.forward(x)`` equals ``model(x)`` and ``probe.backward(g)`` equals
    ``model.backward(g)`` (the same children's calls in the same order); in between, each
    child's output and the gradient that reaches it are kept. Over several micro-batches (one
    optimizer step accumulated over them) they are kept per micro-batch and joined.

    Example (the loop's step, measured)::

        probe = SequentialProbe(model)
        out = probe.forward(xb)                 # (B, C)
        value = loss(out, yb)
        probe.backward(loss.backward())         # grads accumulate as in model.backward
        before = probe.snapshot()
        opt.step()
        records = probe.records(step + 1, before)   # before opt.zero_grad()
        opt.zero_grad()
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Sequential):
            raise TypeError(
                f"SequentialProbe: needs a handgrad Sequential, got {type(model).__name__}"
            )
        self.model = model
        self.layers: list[tuple[str, nn.Module]] = list(model.named_children())
        self._kept = [_Kept() for _ in self.layers]

    def clear(self) -> None:
        """Forget what the previous step kept."""
        self._kept = [_Kept() for _ in self.layers]

    def forward(self, *inputs: Tensor) -> Tensor:
        """``model(*inputs)``, keeping each child's output. Shapes as the model's."""
        x: Tensor | None = None
        for i, (_, layer) in enumerate(self.layers):
            x = layer(*inputs) if i == 0 else layer(x)
            self._kept[i].outputs.append(x)
        if x is None:
            return inputs[0]
        return x

    def backward(self, grad_output: Tensor) -> Tensor | None:
        """``model.backward(grad_output)``, keeping the gradient that reaches each output.

        dL/d(output of child i) is what child i+1's backward returned (the loss's gradient for
        the last child); the first child's own return value is passed back as Sequential does.
        """
        grad: Tensor | None = grad_output
        for i in range(len(self.layers) - 1, -1, -1):
            if grad is None:
                raise ValueError(
                    f"SequentialProbe: layer {self.layers[i + 1][0]} returned no input "
                    "gradient, so the layers before it cannot be measured"
                )
            self._kept[i].grads.append(grad)
            grad = self.layers[i][1].backward(grad)
        return grad

    def snapshot(self) -> list[dict[str, Tensor]]:
        """Copies of every layer's parameters (call before ``opt.step()``)."""
        return [{n: p.detach().clone() for n, p in _own_params(m).items()} for _, m in self.layers]

    def records(self, step: int, before: list[dict[str, Tensor]] | None = None) -> list[Record]:
        """One record per layer from what was kept (call before ``opt.zero_grad()``)."""
        if any(not kept.outputs for kept in self._kept):
            raise ValueError("SequentialProbe.records: call forward and backward first")
        return _kept_records(step, self.layers, self._kept, before)


def probe_step(
    probe: SequentialProbe,
    loss: Any,
    opt: Any,
    batches: Iterable[tuple[Tensor, Tensor]],
    step: int,
) -> tuple[float, list[Record]]:
    """One optimizer step through ``probe`` over its micro-batches; ``(summed loss, records)``.

    The same calls as the loop's ``forward_backward`` per micro-batch, then ``opt.step()`` and
    ``opt.zero_grad()``; ``step`` is the number of steps done after it.
    """
    probe.clear()
    total = 0.0
    for xb, yb in batches:
        value = loss(probe.forward(xb), yb)
        probe.backward(loss.backward())
        total += float(value)
    before = probe.snapshot()
    opt.step()
    records = probe.records(step, before)
    opt.zero_grad()
    probe.clear()
    return total, records


# -- the torch twin's collector -------------------------------------------------------------
class TorchProbe:
    """Forward and full backward hooks on each child of a ``torch.nn.Sequential``.

    Example::

        twin = handgrad.reference.to_torch(model)
        with TorchProbe(twin) as probe:
            torch_loss(twin(x), y).backward()
            before = probe.snapshot()
            torch_opt.step()
            records = probe.records(step, before)
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.layers: list[tuple[str, torch.nn.Module]] = list(model.named_children())
        self._kept = [_Kept() for _ in self.layers]
        self._handles: list[Any] = []
        for i, (_, layer) in enumerate(self.layers):
            self._handles.append(layer.register_forward_hook(self._forward_hook(i)))
            self._handles.append(layer.register_full_backward_hook(self._backward_hook(i)))

    def _forward_hook(self, i: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, inputs: Any, output: Tensor) -> None:
            self._kept[i].outputs.append(output.detach().clone())

        return hook

    def _backward_hook(self, i: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, grad_input: Any, grad_output: Any) -> None:
            self._kept[i].grads.append(grad_output[0].detach().clone())

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> TorchProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def clear(self) -> None:
        self._kept = [_Kept() for _ in self.layers]

    def snapshot(self) -> list[dict[str, Tensor]]:
        return [{n: p.detach().clone() for n, p in _own_params(m).items()} for _, m in self.layers]

    def records(self, step: int, before: list[dict[str, Tensor]] | None = None) -> list[Record]:
        return _kept_records(step, self.layers, self._kept, before)


# -- a measured step of either engine -------------------------------------------------------
class EngineMeter:
    """Take a training step on an engine of ``handgrad.train.engines`` and measure it.

    ``meter.step(batches, step)`` makes the calls the loop's plain step makes (each
    micro-batch's forward and backward, then ``opt.step()`` and ``opt.zero_grad()``), so a run
    measured at some steps is bit for bit the run measured at none. On the handgrad engine the
    forward and backward go child by child through a :class:`SequentialProbe`; on the autograd
    engine the torch twin's own step runs with the hooks of a :class:`TorchProbe`, registered
    for that step only. The records are read between ``opt.step()`` and ``opt.zero_grad()``.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._probe: SequentialProbe | None = None
        if engine.name == "handgrad":
            self._probe = SequentialProbe(engine.model)

    @staticmethod
    def supports(engine: Any) -> bool:
        """Whether the engine's model is a Sequential (what the probes walk)."""
        if engine.name == "handgrad":
            return isinstance(engine.model, nn.Sequential)
        return isinstance(getattr(engine, "twin", None), torch.nn.Sequential)

    def step(
        self, batches: Iterable[tuple[Tensor, Tensor]], step: int
    ) -> tuple[list[Tensor], list[Record]]:
        """One optimizer step over its micro-batches: ``(each micro-batch's loss, records)``;
        ``step`` is the number of steps done after it."""
        records: list[Record] = []
        engine = self.engine
        if self._probe is not None:
            probe, loss = self._probe, engine.loss
            probe.clear()
            values = []
            for xb, yb in batches:
                value = loss(probe.forward(xb), yb)  # 0-dim
                probe.backward(loss.backward())
                values.append(value)
            before = probe.snapshot()
            engine.step(after_update=lambda: records.extend(probe.records(step, before)))
            probe.clear()
            return values, records
        import warnings

        with warnings.catch_warnings():
            # torch: the first layer's full backward hook fires with no input gradient (its
            # input is data); the output gradient it is given is all the probe reads.
            warnings.simplefilter("ignore", UserWarning)
            with TorchProbe(engine.twin) as tprobe:
                values = [engine.forward_backward(xb, yb) for xb, yb in batches]
                before = tprobe.snapshot()
                engine.step(after_update=lambda: records.extend(tprobe.records(step, before)))
        return values, records


# -- layers.jsonl ---------------------------------------------------------------------------
def append_layers(run: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append records to ``run/layers.jsonl``, one JSON object per line."""
    with open(run / LAYERS, "a") as f:
        for record in records:
            f.write(json.dumps(record, allow_nan=False) + "\n")
        f.flush()


def read_layers(run: Path) -> list[Record]:
    """The records of ``run/layers.jsonl`` ([] when the run has none).

    A last line cut short by a crash is ignored; any other bad line is an error.

    Raises:
        HandgradError: a line that is not a JSON object with ``step``, ``layer`` and ``type``.
    """
    path = run / LAYERS
    if not path.exists():
        return []
    lines = path.read_text().split("\n")
    out: list[Record] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise HandgradError(f"{path}: line {i + 1} is not valid JSON") from None
        if not isinstance(record, dict) or not {"step", "layer", "type"} <= record.keys():
            raise HandgradError(f"{path}: line {i + 1} is not a layer record")
        out.append(record)
    return out


def truncate_layers(run: Path, upto: int) -> None:
    """Keep only the records with ``step <= upto`` (a resumed run drops what a crash left
    after its checkpoint, as ``records.rewrite_metrics`` does for ``metrics.jsonl``)."""
    if not (run / LAYERS).exists():
        return
    from handgrad.train.records import atomic_write

    kept = [r for r in read_layers(run) if r["step"] <= upto]
    atomic_write(run / LAYERS, "".join(json.dumps(r) + "\n" for r in kept).encode())


def by_layer(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Records grouped by layer name (in first-seen order), each list in step order."""
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(str(r["layer"]), []).append(r)
    for rs in groups.values():
        rs.sort(key=lambda r: r["step"])
    return groups


def label(record: Mapping[str, Any]) -> str:
    """``"0 (Linear)"``: a layer's name and type, as the doctor and the report show them."""
    return f"{record['layer']} ({record['type']})"


def stats_steps(total: int, eval_every: int, first: int = 10) -> Iterator[int]:
    """The steps (counted after the update, 1-based) at which the loop measures: every step
    of the first ``first``, then powers of two, then every ``eval_every``-th step and the last.
    """
    seen: set[int] = set()
    for s in range(1, total + 1):
        power = s & (s - 1) == 0 and s < eval_every
        if (s <= first or power or s % eval_every == 0 or s == total) and s not in seen:
            seen.add(s)
            yield s
