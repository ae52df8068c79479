"""``handgrad export RUN --format onnx|numpy``: a run's model as ONNX or a NumPy-only .npz."""

from __future__ import annotations

import argparse
from pathlib import Path

from handgrad.errors import HandgradError

SUFFIX = {"onnx": ".onnx", "numpy": ".npz"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a run's model as ONNX or as a NumPy-only predictor",
        description=(
            "Write a run's model (model.safetensors, else its checkpoint) as an ONNX file made "
            "through its torch twin and checked with onnx.checker (--format onnx; needs "
            "pip install 'handgrad[export]'), or as a .npz of weights that "
            "handgrad/export/numpy_predictor.py runs with NumPy alone (--format numpy). The "
            "model takes the run's preprocessed inputs, (N, 784) for the MNIST presets, and "
            "outputs class probabilities (cross-entropy runs) or its raw outputs (mse runs)."
        ),
    )
    p.add_argument("run", metavar="RUN", help="a run directory (or a name under --out)")
    p.add_argument("--format", choices=tuple(SUFFIX), required=True, dest="fmt")
    p.add_argument(
        "--output", "-o", metavar="PATH", help="file to write (default RUN/model.onnx or .npz)"
    )
    p.add_argument("--out", default="runs", metavar="DIR", help="where runs are (default ./runs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from handgrad.export import export_run
    from handgrad.train import records as rec

    run_dir = rec.find_run(args.run, args.out)
    target = Path(args.output) if args.output else run_dir / f"model{SUFFIX[args.fmt]}"
    if target.is_dir():
        raise HandgradError(f"--output {target}: is a directory; name a file")
    if not target.parent.is_dir():
        raise HandgradError(f"--output {target}: no such directory {target.parent}")
    try:
        path = export_run(run_dir, args.fmt, target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    print(f"wrote {path} ({args.fmt}) from run {run_dir}")
    return 0
