"""``report.html``: one self-contained page about a run, that opens offline in any browser.

Sections, top to bottom (each a ``<section id=...>``): ``doctor`` (the findings table),
``curves`` (losses and errors against the step), ``layers`` (per layer over time: the
"colorful dimension" heat map of the output histograms with a layer picker, the dead and
saturated fractions, the output gradient norms, the update-to-weight ratios against the 1e-3
rule of thumb), ``confusion`` (test confusion matrix), ``mistakes`` (the most confident test
mistakes) and ``config``. Charts are plotly figures (hover for values, click the legend to
hide a trace); plotly.js is inlined once into the page (about 4.5 MB), so the file needs no
network. Needs the ``report`` extra: ``pip install 'handgrad[report]'``.

The confusion matrix and the mistakes come from the run's saved model, evaluated on the test
split with ``handgrad.train.metrics`` (as ``handgrad evaluate`` does); when the model or the
data cannot be loaded, those sections say why.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from handgrad.errors import HandgradError
from handgrad.train import doctor
from handgrad.train import layer_stats as ls
from handgrad.train import records as rec

REPORT = "report.html"
MISTAKES = 12


def _plotly() -> Any:
    try:
        import plotly
        import plotly.graph_objects as go
    except ImportError:
        raise HandgradError(
            "the run report needs plotly: pip install 'handgrad[report]' (or plotly>=5)"
        ) from None
    return plotly, go


def _div(fig: Any, div_id: str) -> str:
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=div_id,
            config={"displaylogo": False, "responsive": True},
        )
    )


def _curves(go: Any, metrics: list[dict[str, Any]]) -> str:
    from plotly.subplots import make_subplots

    regression = any("train_r2" in r for r in metrics)  # a table's: the error is the RMSE
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "RMSE" if regression else "error"))
    steps = [r["step"] for r in metrics]
    for split in ("batch", "train", "valid", "test"):
        key = f"{split}_loss"
        ys = [r.get(key) for r in metrics]
        if any(y is not None for y in ys):
            fig.add_trace(go.Scatter(x=steps, y=ys, name=key, mode="lines+markers"), 1, 1)
    for split in ("train", "valid", "test"):
        key = f"{split}_error"
        ys = [r.get(key) for r in metrics]
        if any(y is not None for y in ys):
            fig.add_trace(go.Scatter(x=steps, y=ys, name=key, mode="lines+markers"), 1, 2)
    fig.update_xaxes(title_text="step")
    if not regression:
        fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_layout(height=380, margin={"t": 40, "b": 40})
    return _div(fig, "curves-chart")


def _heat_title(r: dict[str, Any]) -> str:
    lo, hi = r["hist_range"]
    return (
        f"output histogram of {ls.label(r)} over time ({len(r['hist'])} bins on "
        f"[{lo:g}, {hi:g}], colour log(1 + count)); pick a layer on the right"
    )


def _layer_charts(go: Any, layers: list[dict[str, Any]]) -> str:
    groups = ls.by_layer(layers)
    names = list(groups)
    # shown first: the first activation (what fastai's colorful dimension plots), else layer 0
    shown = next((i for i, n in enumerate(names) if groups[n][0]["type"] != "Linear"), 0)
    # the colorful dimension: one heat map per layer, the picker shows one at a time
    heat = go.Figure()
    for i, name in enumerate(names):
        rs = groups[name]
        lo, hi = rs[0]["hist_range"]
        width = (hi - lo) / len(rs[0]["hist"])
        centers = [lo + width * (k + 0.5) for k in range(len(rs[0]["hist"]))]
        z = [[math.log1p(r["hist"][k]) for r in rs] for k in range(len(centers))]
        heat.add_trace(
            go.Heatmap(
                x=[r["step"] for r in rs],
                y=centers,
                z=z,
                customdata=[[r["hist"][k] for r in rs] for k in range(len(centers))],
                hovertemplate="step %{x}<br>output %{y:.3g}<br>count %{customdata}<extra></extra>",
                colorscale="Viridis",
                showscale=False,
                visible=i == shown,
                name=ls.label(rs[0]),
            )
        )
    buttons = [
        {
            "label": ls.label(groups[name][0]),
            "method": "update",
            "args": [
                {"visible": [j == i for j in range(len(names))]},
                {"title": _heat_title(groups[name][0])},
            ],
        }
        for i, name in enumerate(names)
    ]
    heat.update_layout(
        title=_heat_title(groups[names[shown]][0]),
        updatemenus=[
            {"buttons": buttons, "active": shown, "x": 1.0, "xanchor": "right", "y": 1.18}
        ],
        xaxis={"title": "step (log scale)", "type": "log", "dtick": 1},
        yaxis_title="output value",
        height=420,
    )

    fractions = go.Figure()
    grads = go.Figure()
    ratios = go.Figure()
    for name in names:
        rs = groups[name]
        steps = [r["step"] for r in rs]
        lab = ls.label(rs[0])
        if rs[0].get("dead") is not None:
            fractions.add_trace(go.Scatter(x=steps, y=[r["dead"] for r in rs], name=f"{lab} dead"))
        if rs[0].get("saturated") is not None:
            fractions.add_trace(
                go.Scatter(x=steps, y=[r["saturated"] for r in rs], name=f"{lab} saturated")
            )
        grads.add_trace(go.Scatter(x=steps, y=[r.get("grad_norm") for r in rs], name=lab))
        for pname in rs[0].get("params", {}):
            ratios.add_trace(
                go.Scatter(
                    x=steps,
                    y=[r["params"].get(pname, {}).get("update_ratio") for r in rs],
                    name=f"{name}.{pname}",
                )
            )
    fractions.update_layout(
        title="dead (ReLU) and saturated (tanh, sigmoid) units",
        yaxis={"tickformat": ".0%", "range": [0, 1.05]},
        xaxis_title="step",
        height=340,
    )
    grads.update_layout(
        title="norm of the gradient reaching each layer's output",
        yaxis_type="log",
        xaxis_title="step",
        height=340,
    )
    ratios.add_hline(y=1e-3, line_dash="dot", annotation_text="1e-3")
    ratios.update_layout(
        title="update-to-weight ratio |lr·step| / |w| per parameter",
        yaxis_type="log",
        xaxis_title="step",
        height=340,
    )
    return "".join(
        [
            _div(heat, "colorful-dimension"),
            _div(fractions, "dead-saturated"),
            _div(grads, "grad-norms"),
            _div(ratios, "update-ratios"),
        ]
    )


def _evaluate_test(run: Path) -> tuple[Any, Any, Any] | str:
    """``(x_test, outputs, labels)`` of the run's saved model, or why they are unavailable."""
    try:
        import torch

        from handgrad.train.build import build_loss, load_data, model_from_state
        from handgrad.train.config import TrainConfig
        from handgrad.train.metrics import evaluate_split

        config = TrainConfig.load(run / rec.CONFIG).validate()
        state, _ = rec.load_model_state(run)
        model = model_from_state(config, state)
        data = load_data(config)
        loss = build_loss(config)
        model.eval()
        with torch.no_grad():
            figures = evaluate_split(
                model, loss, loss.reduction, data.x_test, data.y_test, data.labels_test
            )
        return data.x_test, figures.outputs, data.labels_test
    except (HandgradError, ValueError, TypeError, OSError) as exc:
        return f"the run's model could not be evaluated ({exc})"


def _confusion_and_mistakes(
    go: Any, run: Path, test: tuple[Any, Any, Any] | None
) -> tuple[str, str]:
    got = test if test is not None else _evaluate_test(run)
    if isinstance(got, str):
        note = f"<p class='missing'>{html.escape(got)}</p>"
        return note, note
    from handgrad.train.metrics import (
        N_CLASSES,
        confusion_matrix,
        most_confident_mistakes,
        predicted_classes,
        probabilities,
    )

    x, outputs, labels = got
    if labels.is_floating_point():  # a table's regression (handgrad.train.tabular)
        note = "<p class='missing'>a regression: no classes (see the RMSE and R² curves)</p>"
        return note, note
    # The class count from the model's outputs (a table's classes), MNIST's 10 for a value.
    n_classes = outputs.shape[1] if outputs.shape[1] > 1 else N_CLASSES
    predicted = predicted_classes(outputs)
    matrix = confusion_matrix(predicted, labels, n_classes)
    fig = go.Figure(
        go.Heatmap(
            z=matrix.tolist(),
            x=[str(c) for c in range(n_classes)],
            y=[str(c) for c in range(n_classes)],
            colorscale="Blues",
            text=matrix.tolist(),
            texttemplate="%{text}",
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
        )
    )
    fig.update_layout(
        title="test confusion matrix",
        xaxis_title="predicted class",
        yaxis_title="true class",
        yaxis_autorange="reversed",
        height=480,
        width=560,
    )
    confusion = _div(fig, "confusion-chart")
    wrong = most_confident_mistakes(outputs, labels, MISTAKES)
    if len(wrong) == 0 or x.shape[1] != 784:
        return confusion, "<p>no mistakes on the test split</p>"
    from plotly.subplots import make_subplots

    probs = probabilities(outputs)
    titles = []
    for i in wrong.tolist():
        p = f" ({float(probs[i, predicted[i]]):.0%})" if probs is not None else ""
        titles.append(f"#{i}: {int(labels[i])} → {int(predicted[i])}{p}")
    cols = 6
    rows = math.ceil(len(titles) / cols)
    grid = make_subplots(rows=rows, cols=cols, subplot_titles=titles)
    for k, i in enumerate(wrong.tolist()):
        image = x[i].reshape(28, 28).double().flip(0).tolist()
        grid.add_trace(
            go.Heatmap(z=image, colorscale="Greys", showscale=False, hoverinfo="skip"),
            k // cols + 1,
            k % cols + 1,
        )
    grid.update_xaxes(visible=False)
    grid.update_yaxes(visible=False, scaleanchor="x")
    grid.update_layout(
        title="most confident test mistakes (true → predicted, confidence)",
        height=220 * rows + 60,
    )
    grid.update_annotations(font_size=11)
    return confusion, _div(grid, "mistakes-chart")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table.findings { border-collapse: collapse; width: 100%; font-size: .92em; }
table.findings td, table.findings th { border: 1px solid #ddd; padding: .35em .5em;
  vertical-align: top; text-align: left; }
tr.failure td:first-child { color: #b00; font-weight: bold; }
tr.advice td:first-child { color: #a60; font-weight: bold; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
p.missing { color: #666; font-style: italic; }
nav a { margin-right: 1em; }
"""


def build_report(run: Path, test: tuple[Any, Any, Any] | None = None) -> str:
    """The page's HTML for the run in directory ``run``.

    ``test`` is ``(x_test (N, 784), outputs (N, C), labels (N,))`` of the final model when
    the caller has them (the loop, at the end of a run); otherwise the saved model is loaded
    and evaluated.

    Raises:
        HandgradError: not a run directory, damaged records, or plotly missing.
    """
    plotly, go = _plotly()
    config, metrics, layers = doctor.read_run(run)
    diagnosis = doctor.diagnose_records(config, metrics, layers, run=run.name)
    sections = [("doctor", "doctor's findings", doctor.findings_html(diagnosis))]
    sections.append(("curves", "training curves", _curves(go, metrics)))
    if layers:
        sections.append(("layers", "inside the network, layer by layer", _layer_charts(go, layers)))
    else:
        sections.append(
            (
                "layers",
                "inside the network, layer by layer",
                "<p class='missing'>this run recorded no per-layer statistics (layers.jsonl)</p>",
            )
        )
    confusion, mistakes = _confusion_and_mistakes(go, run, test)
    sections.append(("confusion", "confusion matrix", confusion))
    sections.append(("mistakes", "most confident mistakes", mistakes))
    sections.append(("config", "config", f"<pre>{html.escape(json.dumps(config, indent=2))}</pre>"))
    nav = "".join(f'<a href="#{sid}">{html.escape(title)}</a>' for sid, title, _ in sections)
    body = "".join(
        f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>'
        for sid, title, content in sections
    )
    last = metrics[-1]
    percent = "train_r2" not in last  # a table's regression records its RMSE as the error
    summary = ", ".join(
        f"{k.replace('_', ' ')} "
        + (f"{last[k]:.2%}" if k.endswith("error") and percent else f"{last[k]:.4g}")
        for k in ("train_loss", "train_error", "valid_error", "test_error")
        if isinstance(last.get(k), int | float)
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>handgrad run {html.escape(run.name)}</title><style>{STYLE}</style>"
        f"<script>{plotly.offline.get_plotlyjs()}</script></head><body>"
        f"<h1>handgrad run {html.escape(run.name)}</h1>"
        f"<p>step {last.get('step')}: {html.escape(summary)}</p><nav>{nav}</nav>{body}"
        "</body></html>"
    )


def write_report(run: Path, test: tuple[Any, Any, Any] | None = None) -> Path:
    """Write ``run/report.html`` (atomically) and return its path (``test``: as
    :func:`build_report`)."""
    path = Path(run) / REPORT
    rec.atomic_write(path, build_report(Path(run), test).encode())
    return path
