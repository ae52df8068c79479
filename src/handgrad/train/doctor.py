"""``handgrad doctor RUN``: why a run does (not) learn, in words a learner can act on.

:func:`diagnose` reads a run directory's ``config.json``, ``metrics.jsonl`` and, when present,
``layers.jsonl`` (``handgrad.train.layer_stats``) and returns a :class:`Diagnosis`: a list of
:class:`Finding` objects, each with a fixed ``kind``, the layer it concerns (``"0 (Linear)"``,
as in ``named_modules()``), the step since when (and until when, if it ended), the figure, and
a message saying what to try. :func:`diagnose_records` does the same on records in memory.

Failure findings (``ok`` is False, ``handgrad doctor`` exits 1) and the rule each follows:

- ``diverged``: a training loss that is not finite, or above 10x its value at step 0.
- ``lr_too_large``: the training loss rose above where it started (at any evaluation); the
  message names the largest update ratio above ``LARGE_UPDATE`` (30 %) if one was measured.
  (A large update ratio alone is no sign: tiny weights escaping a plateau grow 30 % a step.)
- ``lr_too_small``: the training loss moved by less than 2 % over the whole run and the
  weights moved by less than ``SMALL_UPDATE`` (1e-5) of their size per step (median over the
  measured steps); without ``layers.jsonl``, a loss that barely moved under a learning rate
  below 1e-5.
- ``stalled``: the training error stayed within 0.5 points of the same value, at 50 % or
  more, over the last ``FLAT_RECORDS`` (5) or more evaluations up to the end of the run.
- ``dead_units``: a ReLU layer with ``DEAD`` (30 %) or more of its units dead (zero on every
  sample of a measured batch of at least 32) at the last measurement.
- ``saturated_units``: a Tanh/Sigmoid layer with ``SATURATED`` (30 %) or more saturated units
  at the last measurement.
- ``vanishing_gradients``: at the last measurement, the gradient reaching the first Linear's
  output is below 1e-3 of the gradient reaching the last Linear's output.
- ``exploding_gradients``: a layer's output gradient grew to more than 1e3 times its first
  measured value, or stopped being finite.
- ``targets_out_of_range``: mean/sum-of-squares targets that the output activation cannot
  reach: one-hot 1s (or larger) or digit values under tanh, any 0/1 target under sigmoid.

Advice findings (they do not make a run fail):

- ``plateau``: a stretch of ``FLAT_RECORDS`` or more evaluations at a flat error of 50 % or
  more that then lifted (the error fell by 10 points or more): from when to when, why (from
  the per-layer statistics, when recorded), and what would have avoided it.
- ``overfitting``: the validation loss rose 10 % above its minimum while the training loss
  kept falling.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handgrad.errors import HandgradError
from handgrad.train import layer_stats as ls
from handgrad.train import records as rec

FAILURES = (
    "diverged",
    "lr_too_large",
    "lr_too_small",
    "stalled",
    "dead_units",
    "saturated_units",
    "vanishing_gradients",
    "exploding_gradients",
    "targets_out_of_range",
)
ADVICE = ("plateau", "overfitting")
KINDS = FAILURES + ADVICE

DIVERGED = 10.0  # a loss 10x its step-0 value
SMALL_UPDATE = 1e-5
LARGE_UPDATE = 0.3
FLAT_LOSS = 0.02
FLAT_ERROR = 0.005
FAR_FROM_GOOD = 0.5
FLAT_RECORDS = 5
LIFTED = 0.10
DEAD = 0.3
SATURATED = 0.3
MIN_SAMPLES = 32
VANISHING = 1e-3
EXPLODING = 1e3
OVERFIT = 1.10

Record = dict[str, Any]


@dataclass
class Finding:
    """One thing the doctor found.

    Attributes:
        kind: one of ``KINDS``.
        layer: ``"0 (Linear)"``, or None for the run as a whole.
        step: the step since when it holds (None when not tied to a step).
        until: the step it ended at, for something that ended (a lifted plateau).
        value: the figure behind it (its unit is in the message).
        message: what it means and what to try, for a learner.
    """

    kind: str
    layer: str | None
    step: int | None
    value: float | None
    message: str
    until: int | None = None

    @property
    def failure(self) -> bool:
        return self.kind in FAILURES

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": "failure" if self.failure else "advice",
            "layer": self.layer,
            "step": self.step,
            "until": self.until,
            "value": self.value,
            "message": self.message,
        }

    def when(self) -> str:
        if self.step is None:
            return ""
        if self.until is not None:
            return f"steps {self.step}-{self.until}"
        return f"since step {self.step}"

    def line(self) -> str:
        tag = "FAIL  " if self.failure else "advice"
        where = f" {self.layer}" if self.layer else ""
        when = f" {self.when()}" if self.step is not None else ""
        return f"{tag} {self.kind}{where}{when}: {self.message}"


@dataclass
class Diagnosis:
    """The doctor's findings on one run, and what it could not judge."""

    run: str
    findings: list[Finding] = field(default_factory=list)
    not_judged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.failure for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "run": self.run,
            "findings": [f.to_json() for f in self.findings],
            "not_judged": list(self.not_judged),
        }

    def text(self) -> str:
        head = f"handgrad doctor {self.run}: " + (
            "no failure found" if self.ok else "found what keeps this run from learning"
        )
        lines = [head, *("  " + f.line() for f in self.findings)]
        if not self.findings:
            lines.append("  nothing to report: the loss fell and no layer looks unhealthy")
        lines.extend(f"  not judged: {n}" for n in self.not_judged)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return findings_html(self)


def findings_html(diagnosis: Diagnosis) -> str:
    """The findings as an HTML table (Jupyter shows it for a :class:`Diagnosis`)."""
    e = html.escape
    status = "ok: no failure found" if diagnosis.ok else "not ok: failures found"
    rows = []
    for f in diagnosis.findings:
        sev = "failure" if f.failure else "advice"
        value = "" if f.value is None else f"{f.value:.4g}"
        rows.append(
            f'<tr class="{sev}"><td>{sev}</td><td><code>{e(f.kind)}</code></td>'
            f"<td>{e(f.layer or '')}</td><td>{e(f.when())}</td><td>{e(value)}</td>"
            f"<td>{e(f.message)}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="6">nothing to report</td></tr>')
    notes = "".join(f"<li>not judged: {e(n)}</li>" for n in diagnosis.not_judged)
    return (
        f'<div class="doctor"><p><b>handgrad doctor</b> {e(diagnosis.run)}: {e(status)}</p>'
        '<table class="findings"><thead><tr><th>severity</th><th>kind</th><th>layer</th>'
        "<th>when</th><th>value</th><th>what it means, what to try</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        f"{f'<ul>{notes}</ul>' if notes else ''}</div>"
    )


# -- reading a run --------------------------------------------------------------------------
def read_run(run: Path) -> tuple[dict[str, Any], list[Record], list[Record]]:
    """``(config, metrics, layers)`` of a run directory.

    Raises:
        HandgradError: not a run directory, or a damaged file.
    """
    path = Path(run)
    if not path.is_dir():
        raise HandgradError(f"{path}: no such run directory")
    config_path = path / rec.CONFIG
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise HandgradError(f"{path}: not a run directory (no {rec.CONFIG})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise HandgradError(f"{config_path}: cannot be read as JSON ({exc})") from None
    if not isinstance(config, dict):
        raise HandgradError(f"{config_path}: not a JSON object")
    metrics = rec.read_metrics(path)
    if not metrics:
        raise HandgradError(f"{path}: no {rec.METRICS} records; nothing to judge")
    return config, metrics, ls.read_layers(path)


def diagnose(run: Path) -> Diagnosis:
    """The findings on the run in directory ``run``."""
    config, metrics, layers = read_run(run)
    return diagnose_records(config, metrics, layers, run=str(run))


def divergence(metrics: Sequence[Record]) -> Finding | None:
    """The ``diverged`` finding on the records so far, or None: what the loop calls after
    each evaluation to stop a run whose loss blew up (non-finite, or 10x its step-0 value)."""
    if not metrics:
        return None
    d = Diagnosis(run="")
    _diverged(sorted(metrics, key=lambda r: r.get("step", 0)), d)
    return d.findings[0] if d.findings else None


# -- the rules --------------------------------------------------------------------------------
def _loss(r: Mapping[str, Any]) -> float | None:
    value = r.get("train_loss")
    return float(value) if isinstance(value, int | float) else None


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def diagnose_records(
    config: Mapping[str, Any],
    metrics: Sequence[Record],
    layers: Sequence[Record] = (),
    *,
    run: str = "",
) -> Diagnosis:
    """The findings from a run's config (the ``config.json`` dict), its metrics records
    (``metrics.jsonl``) and its layer records (``layers.jsonl``; may be empty)."""
    d = Diagnosis(run=run)
    metrics = sorted(metrics, key=lambda r: r.get("step", 0))
    groups = ls.by_layer(layers)
    if not groups:
        d.not_judged.append(
            "dead_units, saturated_units, vanishing_gradients, exploding_gradients and the "
            "update sizes: the run has no layers.jsonl (per-layer statistics were off or the "
            "run is older); lr_too_small/lr_too_large are judged from the loss alone"
        )
    if len(metrics) < FLAT_RECORDS:
        d.not_judged.append(
            f"stalled and plateau: the run has {len(metrics)} evaluations, fewer than the "
            f"{FLAT_RECORDS} a flat stretch needs (evaluate more often: --eval-every)"
        )
    _targets(config, d)
    blown = _diverged(metrics, d)
    _lr_too_large(metrics, groups, d, blown)
    _lr_too_small(config, metrics, groups, d)
    _flat_error(config, metrics, groups, d)
    _dead(groups, d)
    _saturated(groups, d)
    _vanishing(groups, d)
    _exploding(groups, d)
    _overfitting(metrics, d)
    return d


def _targets(config: Mapping[str, Any], d: Diagnosis) -> None:
    loss = config.get("loss")
    out_act = config.get("out_act")
    if loss not in ("mse", "sum_squared") or out_act not in ("tanh", "sigmoid"):
        return
    targets = config.get("targets", "auto")
    widths = str(config.get("model", "")).replace(",", "-").split("-")
    if targets == "auto":
        targets = "value" if widths[-1:] == ["1"] else "onehot"
    scale = float(config.get("target_scale", 1.0))
    where = f"{_out_act_index(config, len(widths))} (Tanh)" if out_act == "tanh" else None
    if out_act == "tanh" and targets == "onehot" and scale >= 1:
        d.findings.append(
            Finding(
                "targets_out_of_range",
                where,
                None,
                scale,
                f"the one-hot targets put {_fmt(scale)} at the label, but tanh only reaches "
                "±1 as its input goes to infinity: the loss keeps pushing the last layer's "
                "weights up and its units into saturation, where tanh's gradient vanishes. "
                "Scale the targets into tanh's range, as Fleuret's practical does "
                "(--target-scale 0.9), or use --out-act none with --loss cross_entropy",
            )
        )
    elif out_act == "tanh" and targets == "value":
        d.findings.append(
            Finding(
                "targets_out_of_range",
                where,
                None,
                9.0,
                "the targets are digit values up to 9, which tanh (at most 1) cannot output; "
                "use --out-act none for a regression on the digit, or one-hot targets",
            )
        )
    elif out_act == "sigmoid" and targets in ("onehot", "value"):
        d.findings.append(
            Finding(
                "targets_out_of_range",
                None,
                None,
                scale,
                "the sigmoid output reaches 0 and 1 only at infinite inputs, so 0/1 (or "
                "larger) targets under a squared loss push its units into saturation; scale "
                "the targets inside (0, 1) or use --out-act none with --loss cross_entropy",
            )
        )


def _out_act_index(config: Mapping[str, Any], n_widths: int) -> int:
    """The index of the output activation in ``nn.mlp``'s Sequential for this config."""
    hidden = n_widths - 2
    per_hidden = 2 if config.get("act", "relu") != "none" else 1
    per_hidden += config.get("norm", "none") != "none"
    per_hidden += bool(config.get("dropout"))
    return int(bool(config.get("input_dropout"))) + hidden * per_hidden + 1


def _diverged(metrics: Sequence[Record], d: Diagnosis) -> bool:
    first = _loss(metrics[0])
    for r in metrics:
        value = _loss(r)
        bad_batch = r.get("step", 0) > 0 and r.get("batch_loss", 0.0) is None
        blown = value is None or (first is not None and first > 0 and value > DIVERGED * first)
        if blown or bad_batch:
            shown = "not finite" if value is None or bad_batch else _fmt(value)
            start = _fmt(first) if first is not None else "?"
            d.findings.append(
                Finding(
                    "diverged",
                    None,
                    int(r["step"]),
                    value,
                    f"the training loss is {shown} at step {r['step']} (it was {start} at "
                    "step 0): the steps are so large that each one overshoots and the weights "
                    "run away. Lower the learning rate by 10x (--lr), add gradient clipping, "
                    "or use Adam, which bounds each weight's step by the learning rate",
                )
            )
            return True
    return False


def _weight_ratios(groups: Mapping[str, list[Record]]) -> list[tuple[str, int, float]]:
    """``(layer label, step, update ratio)`` of every Linear weight measurement."""
    out = []
    for rs in groups.values():
        for r in rs:
            w = r.get("params", {}).get("weight")
            if w and w.get("update_ratio") is not None:
                out.append((ls.label(r), int(r["step"]), float(w["update_ratio"])))
    return out


def _lr_too_large(
    metrics: Sequence[Record], groups: Mapping[str, list[Record]], d: Diagnosis, blown: bool
) -> None:
    first = _loss(metrics[0])
    if first is None:
        return
    rose = [r for r in metrics[1:] if (v := _loss(r)) is not None and v > first]
    if not rose:
        return
    r = rose[0]
    value = _loss(r)
    assert value is not None
    msg = (
        f"the training loss rose to {_fmt(value)} at step {r['step']}, above the "
        f"{_fmt(first)} it started from: the learning rate is too large for this model"
    )
    step, layer = int(r["step"]), None
    large = [x for x in _weight_ratios(groups) if x[2] > LARGE_UPDATE]
    if large:
        worst = max(large, key=lambda x: x[2])
        msg += (
            f"; one step moved {worst[0]}'s weights by {_fmt(worst[2])} of their size "
            f"(step {worst[1]}; the rule of thumb is about 1e-3)"
        )
    msg += ". Try a learning rate 3-10x smaller (--lr), or the LR finder's suggestion"
    d.findings.append(Finding("lr_too_large", layer, step, value, msg))


def _lr_too_small(
    config: Mapping[str, Any],
    metrics: Sequence[Record],
    groups: Mapping[str, list[Record]],
    d: Diagnosis,
) -> None:
    losses = [v for r in metrics if (v := _loss(r)) is not None]
    if len(losses) < 2 or losses[0] <= 0:
        return
    moved = abs(losses[-1] - losses[0]) / losses[0]
    if moved >= FLAT_LOSS:
        return
    ratios = _weight_ratios(groups)
    lr = config.get("lr")
    if ratios:
        median = statistics.median(x[2] for x in ratios)
        if median >= SMALL_UPDATE:
            return
        d.findings.append(
            Finding(
                "lr_too_small",
                None,
                0,
                median,
                f"each step moved the weights by about {median:.1e} of their size (median "
                f"over the measured steps; the rule of thumb is about 1e-3) and the training "
                f"loss moved by only {100 * moved:.2f}% over the run: the learning rate "
                f"({lr}) is far too small. Try 100-1000x larger (--lr), or run the LR finder",
            )
        )
    elif isinstance(lr, int | float) and lr < 1e-5:
        d.findings.append(
            Finding(
                "lr_too_small",
                None,
                0,
                float(lr),
                f"the training loss moved by only {100 * moved:.2f}% over the run under a "
                f"learning rate of {lr}: it is likely far too small (the update sizes were not "
                "recorded to confirm it). Try 100-1000x larger (--lr)",
            )
        )


def _flat_stretches(metrics: Sequence[Record]) -> list[tuple[int, int]]:
    """Index ranges ``[i, j]`` of maximal runs of records whose train error stays within
    ``FLAT_ERROR`` of the run's first value and at ``FAR_FROM_GOOD`` or more."""
    errors = [r.get("train_error") for r in metrics]
    out = []
    i = 0
    while i < len(errors):
        e0 = errors[i]
        if not isinstance(e0, int | float) or e0 < FAR_FROM_GOOD:
            i += 1
            continue
        j = i
        while j + 1 < len(errors):
            e = errors[j + 1]
            if not isinstance(e, int | float) or abs(e - e0) > FLAT_ERROR:
                break
            j += 1
        if j - i + 1 >= FLAT_RECORDS:
            out.append((i, j))
        i = j + 1
    return out


def _why_flat(
    config: Mapping[str, Any], groups: Mapping[str, list[Record]], lo: int, hi: int
) -> tuple[str, str]:
    """``(why, what would have avoided it)`` for a flat stretch from step lo to step hi."""
    ratio = _grad_ratio_at(groups, lo, hi)
    std = config.get("init_std")
    avoid = []
    if isinstance(std, int | float) and std < 1e-3:
        avoid.append(f"a larger initialisation than N(0, {std:g}) (--init torch, or kaiming)")
    if ratio is not None and ratio[0] < VANISHING:
        why = (
            f"the gradient reaching the first layer was {ratio[0]:.1e} of the gradient at the "
            f"output layer (at step {ratio[1]}): with tiny weights in the layers above, almost "
            "no gradient flows down, so the first layer barely learns while the last one only "
            "fits the class frequencies"
        )
    elif groups:
        why = "the per-layer statistics show no vanishing gradient; the steps were too small"
    else:
        why = "layers.jsonl was not recorded, so the cause inside the network cannot be told"
    avoid.append("a larger learning rate or Adam (its step does not shrink with the gradient)")
    return why, "; ".join(avoid)


def _grad_ratio_at(
    groups: Mapping[str, list[Record]], lo: int, hi: int
) -> tuple[float, int] | None:
    """The smallest first-Linear / last-Linear output gradient ratio measured in [lo, hi]."""
    linears = [rs for rs in groups.values() if rs and rs[0]["type"] == "Linear"]
    if len(linears) < 2:
        return None
    first = {r["step"]: r.get("grad_norm") for r in linears[0]}
    last = {r["step"]: r.get("grad_norm") for r in linears[-1]}
    best: tuple[float, int] | None = None
    for step in sorted(first):
        a, b = first.get(step), last.get(step)
        if lo <= step <= hi and a is not None and b:
            ratio = a / b
            if best is None or ratio < best[0]:
                best = (ratio, int(step))
    return best


def _flat_error(
    config: Mapping[str, Any],
    metrics: Sequence[Record],
    groups: Mapping[str, list[Record]],
    d: Diagnosis,
) -> None:
    for i, j in _flat_stretches(metrics):
        lo, hi = int(metrics[i]["step"]), int(metrics[j]["step"])
        level = float(metrics[i]["train_error"])
        one_class = " (about what predicting a single class gives)" if level >= 0.85 else ""
        why, avoid = _why_flat(config, groups, lo, hi)
        if j == len(metrics) - 1:
            d.findings.append(
                Finding(
                    "stalled",
                    None,
                    lo,
                    level,
                    f"the training error has stayed at {100 * level:.1f}%{one_class} from step "
                    f"{lo} to the end of the run (step {hi}): {why}. It may lift later (train "
                    f"longer to see), but to learn now try {avoid}",
                )
            )
            continue
        after = [
            float(e) for r in metrics[j + 1 :] if isinstance(e := r.get("train_error"), int | float)
        ]
        if after and level - min(after) >= LIFTED:
            low = min(after)
            d.findings.append(
                Finding(
                    "plateau",
                    None,
                    lo,
                    level,
                    f"the training error sat at {100 * level:.1f}%{one_class} from step {lo} "
                    f"to step {hi}, then the plateau lifted (down to {100 * low:.1f}% later): "
                    f"{why}. What would have avoided it: {avoid}",
                    until=hi,
                )
            )


def _judged(rs: Sequence[Record]) -> list[Record]:
    return [r for r in rs if r.get("samples", 0) >= MIN_SAMPLES]


def _since(rs: Sequence[Record], key: str, threshold: float) -> int:
    """The first step from which ``r[key] >= threshold`` held up to the last record."""
    step = int(rs[-1]["step"])
    for r in reversed(rs):
        v = r.get(key)
        if v is None or v < threshold:
            break
        step = int(r["step"])
    return step


def _dead(groups: Mapping[str, list[Record]], d: Diagnosis) -> None:
    small = False
    for rs in groups.values():
        if rs[0]["type"] != "ReLU":
            continue
        judged = _judged(rs)
        if not judged:
            small = True
            continue
        last = judged[-1]["dead"]
        if last is None or last < DEAD:
            continue
        since = _since(judged, "dead", DEAD)
        what = "all of its units are" if last >= 1 else f"{100 * last:.0f}% of its units are"
        d.findings.append(
            Finding(
                "dead_units",
                ls.label(judged[-1]),
                since,
                last,
                f"{what} dead (zero for every sample of the batch, so they pass no gradient "
                "and never recover). Usual causes: large negative biases or a learning rate "
                "that threw the weights too far. Try a smaller --bias-std or learning rate, "
                "--act leaky_relu, or --norm batchnorm before the ReLU",
            )
        )
    if small:
        d.not_judged.append(
            f"dead_units: every measured batch had fewer than {MIN_SAMPLES} samples"
        )


def _saturated(groups: Mapping[str, list[Record]], d: Diagnosis) -> None:
    for rs in groups.values():
        if rs[0]["type"] not in ("Tanh", "Sigmoid"):
            continue
        last = rs[-1].get("saturated")
        if last is None or last < SATURATED:
            continue
        since = _since(rs, "saturated", SATURATED)
        kind = rs[0]["type"]
        limit = "|y| > 0.99" if kind == "Tanh" else "y < 0.01 or y > 0.99"
        d.findings.append(
            Finding(
                "saturated_units",
                ls.label(rs[-1]),
                since,
                last,
                f"{100 * last:.0f}% of its units are saturated ({limit} on 90% of the samples), "
                f"where {kind.lower()}'s slope is almost 0, so little gradient passes. Their "
                "inputs are too large: use a smaller initialisation (--init xavier_normal, or "
                "a smaller --init-std), normalise the inputs, or add --norm layernorm",
            )
        )


def _vanishing(groups: Mapping[str, list[Record]], d: Diagnosis) -> None:
    linears = [rs for rs in groups.values() if rs and rs[0]["type"] == "Linear"]
    if len(linears) < 2:
        return
    first, last = linears[0], linears[-1]
    by_step = {r["step"]: r for r in last}
    ratios = [
        (int(r["step"]), r["grad_norm"] / by_step[r["step"]]["grad_norm"])
        for r in first
        if r.get("grad_norm") is not None
        and r["step"] in by_step
        and by_step[r["step"]].get("grad_norm")
    ]
    if not ratios or ratios[-1][1] >= VANISHING:
        return
    since = ratios[-1][0]
    for step, ratio in reversed(ratios):
        if ratio >= VANISHING:
            break
        since = step
    value = ratios[-1][1]
    dead = [f.layer for f in d.findings if f.kind == "dead_units"]
    saturated = [f.layer for f in d.findings if f.kind == "saturated_units"]
    if value == 0:
        lost = "no gradient reaches it at all"
    else:
        lost = f"{math.log10(1 / value):.0f} orders of magnitude are lost on the way down"
    if dead:
        cause = f"the dead units of {', '.join(map(str, dead))} pass no gradient (see dead_units)"
    elif saturated:
        cause = f"the saturated units of {', '.join(map(str, saturated))} pass almost none"
    else:
        cause = (
            "usual causes: tiny weights above (a very small --init-std) or saturated "
            "tanh/sigmoid units; try --init torch or kaiming_normal, ReLU, or --norm layernorm"
        )
    d.findings.append(
        Finding(
            "vanishing_gradients",
            ls.label(first[-1]),
            since,
            value,
            f"the gradient reaching this first layer's output is {value:.1e} of the one at "
            f"{ls.label(last[-1])}: {lost}, so the first layers barely learn; {cause}",
        )
    )


def _exploding(groups: Mapping[str, list[Record]], d: Diagnosis) -> None:
    layers = [rs for rs in groups.values() if rs]
    if len(layers) < 2:
        return
    top = {r["step"]: r.get("grad_norm") for r in layers[-1]}  # the gradient at the loss
    for rs in layers[:-1]:
        for r in rs:
            g, ref = r.get("grad_norm"), top.get(r["step"])
            not_finite = g is None and r.get("mean") is not None
            if not (not_finite or (g is not None and ref and g > EXPLODING * ref)):
                continue
            growth = None if g is None or not ref else g / ref
            shown = "is not finite" if g is None else f"is {growth:.1e}x"
            d.findings.append(
                Finding(
                    "exploding_gradients",
                    ls.label(r),
                    int(r["step"]),
                    growth,
                    f"the gradient at this layer's output {shown} the gradient at the "
                    f"output ({ls.label(layers[-1][-1])}): the weights above it grew so large "
                    "that the backward pass multiplies the gradient up on the way down. Lower "
                    "the learning rate, clip the gradients, or use a smaller initialisation",
                )
            )
            break


def _overfitting(metrics: Sequence[Record], d: Diagnosis) -> None:
    valid = [(i, r["valid_loss"]) for i, r in enumerate(metrics) if r.get("valid_loss")]
    if len(valid) < 3:
        return
    best_i, best = min(valid, key=lambda x: x[1])
    last_i, last = valid[-1]
    if best_i == last_i or last < OVERFIT * best:
        return
    t_best, t_last = _loss(metrics[best_i]), _loss(metrics[last_i])
    if t_best is None or t_last is None or t_last >= t_best:
        return
    step = int(metrics[best_i]["step"])
    d.findings.append(
        Finding(
            "overfitting",
            None,
            step,
            last / best,
            f"the validation loss is {last / best:.2f}x its minimum (step {step}) while the "
            "training loss kept falling: the model is memorising the training set. Keep the "
            "weights of step "
            f"{step} (early stopping: --patience), add --dropout or --weight-decay, "
            "or augment the data (--augment shift)",
        )
    )
