"""``handgrad compare``: a recipe trained by handgrad and by torch autograd, step by step."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from handgrad.train.build import check_device
from handgrad.train.compare import FLOAT64_TOLERANCE, EngineComparison, compare
from handgrad.train.config import TrainConfig
from handgrad.train.recipes import RECIPES, get_recipe
from handgrad.train.records import atomic_write, check_writable, new_run_dir

DESCRIPTION = f"""\
Train a recipe (or a config file) with the handgrad engine and with the autograd engine
(torch.nn + torch.optim + .backward()) from identical weights and the identical batch order,
and record after every step the loss difference and the largest parameter difference.

Float64 trajectories must agree to {FLOAT64_TOLERANCE:g} (exit 1 otherwise); float32 ones are
reported to show how rounding differences grow. Writes compare.json and divergence.png into
<out>/compare-<recipe>-<time>/.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="train with handgrad and with torch autograd side by side, step by step",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--recipe", choices=sorted(RECIPES), metavar="NAME", help="a recipe")
    source.add_argument("--config", metavar="FILE", help="a run's config.json")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps (default 100)")
    p.add_argument(
        "--dtype",
        choices=["float64", "float32", "both"],
        default="both",
        help="precision of the comparison (default both: float64 judged, float32 reported)",
    )
    p.add_argument("--data", dest="data_dir", metavar="DIR", help="folder with the MNIST files")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads")
    p.add_argument(
        "--device", metavar="DEV", help="torch device for both engines (default: the config's)"
    )
    p.add_argument("--out", default="runs", metavar="DIR", help="where to write (default runs)")
    p.add_argument("--no-plot", action="store_true", help="do not write divergence.png")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> TrainConfig:
    if args.recipe is not None:
        config = get_recipe(args.recipe).config
    else:
        config = TrainConfig.load(args.config)
    changes: dict[str, Any] = {}
    if args.data_dir is not None:
        changes["data_dir"] = args.data_dir
    if args.threads is not None:
        changes["threads"] = args.threads
    if args.device is not None:
        changes["device"] = args.device
    return config.replace(**changes) if changes else config


def plot_divergence(results: list[EngineComparison], path: Path) -> Path:
    """Loss and parameter differences against the step (log scale), one line per dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-18  # exact agreement would vanish from a log axis
    fig, (ax_loss, ax_param) = plt.subplots(1, 2, figsize=(11, 4))
    for result in results:
        label = result.config.dtype
        ax_loss.plot(result.steps, [max(d, floor) for d in result.loss_diff], label=label)
        ax_param.plot(result.steps, [max(d, floor) for d in result.param_diff], label=label)
    for ax, title in (
        (ax_loss, "|loss handgrad − loss autograd| / |loss|"),
        (ax_param, "max |θ handgrad − θ autograd|"),
    ):
        ax.axhline(FLOAT64_TOLERANCE, color="0.5", ls="--", lw=1, label="float64 tolerance")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.legend()
    name = results[0].config.recipe or results[0].config.name
    fig.suptitle(f"{name}: handgrad vs torch autograd")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def _summary(result: EngineComparison) -> str:
    lh, la = result.loss_handgrad[-1], result.loss_autograd[-1]
    if result.tolerance is None:
        verdict = "reported"
    else:
        verdict = "OK" if result.ok else f"DIFFER beyond {result.tolerance:g}"
    return (
        f"{result.config.dtype:8s} {len(result.steps):5d} steps  final loss handgrad {lh:.10g}  "
        f"autograd {la:.10g}  max loss diff {result.max_loss_diff:.2e}  "
        f"max param diff {result.max_param_diff:.2e}  "
        f"time {result.seconds_handgrad:.2f} s vs {result.seconds_autograd:.2f} s  {verdict}"
    )


def run(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    config = _config(args)
    check_device(config.device)  # "no CUDA device" before anything runs or is written
    check_writable(args.out)
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    results = [compare(config.replace(dtype=dtype), args.steps) for dtype in dtypes]
    out_dir = new_run_dir(args.out, f"compare-{config.recipe or config.name}")
    payload = {"results": [r.to_dict() for r in results], "ok": all(r.ok for r in results)}
    atomic_write(out_dir / "compare.json", json.dumps(payload, indent=1).encode())
    if not args.no_plot:
        plot_divergence(results, out_dir / "divergence.png")
    if args.json:
        summary = dict(payload)
        summary["results"] = [
            {k: v for k, v in r.to_dict().items() if k != "per_step"} for r in results
        ]
        summary["out"] = str(out_dir)
        print(json.dumps(summary))
    else:
        name = config.recipe or config.name
        print(f"{name}: handgrad engine vs autograd engine, identical weights and batches")
        for result in results:
            print(_summary(result))
        print(
            f"written: {out_dir / 'compare.json'}" + ("" if args.no_plot else " and divergence.png")
        )
    return 0 if payload["ok"] else 1
