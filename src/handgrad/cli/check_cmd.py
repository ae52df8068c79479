"""``handgrad check``: check every hand-written gradient of an MLP or of your own module.

Prints the gradient table and one verdict line (or, with ``--json``, one JSON object).
Exit status: 0 every gradient is right, 1 a gradient is wrong (or nothing could be proven),
2 bad usage or a file that cannot be loaded. The work is in ``handgrad.check.cases`` (what to
check, from plain arguments) and ``handgrad.check.isolated`` (a user's file checked in a child
process); this module imports neither them nor torch until a check runs, so that ``handgrad
check --help`` answers at once. The words of ``--help`` are in ``cli/check_help.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from handgrad.cli.check_help import DESCRIPTION, EPILOG, FUNCTION_HELP, MODULE_HELP, OPTIONS
from handgrad.train.config import ACTIVATIONS, NORMS

# The choices of handgrad.check, repeated so that --help imports no torch (a test checks they
# agree with check.cases.LOSSES, check.cases.DTYPES and check.gradcheck.REFERENCES).
LOSSES = ("mse", "sse", "cross_entropy", "nll", "none")
DTYPES = ("float64", "float32")
REFERENCES = ("both", "autograd", "fd")


def register(subparsers: Any) -> None:
    """Add the ``check`` sub-command."""
    p = subparsers.add_parser(
        "check",
        help="check hand-written gradients and name the faulty layer",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", metavar="SPEC", help=OPTIONS["--model"])
    what.add_argument("--module", metavar="FILE:CLASS", help=MODULE_HELP)
    what.add_argument("--function", metavar="FILE", help=FUNCTION_HELP)

    def add(flag: str, **kwargs: Any) -> None:
        p.add_argument(flag, help=OPTIONS[flag], **kwargs)

    add("--act", default="relu", choices=[a for a in ACTIVATIONS if a != "none"])
    add("--out-act", default="none", choices=ACTIVATIONS)
    add("--norm", default="none", choices=NORMS)
    add("--dropout", type=float, default=0.0)
    add("--loss", choices=LOSSES, default=None)
    add("--input-shape", metavar="N,D,...")
    add("--args", metavar="JSON")
    add("--batch", type=int, default=4)
    add("--dtype", choices=DTYPES, default="float64")
    add("--reference", choices=REFERENCES, default="both")
    add("--fd-samples", type=int, default=24)
    add("--seed", type=int, default=0)
    add("--eval", action="store_true")
    add("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check what the options name, print the report; 0 if every gradient is right, else 1."""
    from handgrad.check import cases, isolated

    report: Any
    if args.function is not None:
        path = isolated.function_file(args.function, args.reference)
        _note_runs(path)
        report = isolated.check_function_in_child(
            path, seed=args.seed, reference=args.reference, fd_samples=args.fd_samples
        )
    else:
        cases.check_options(
            batch=args.batch,
            fd_samples=args.fd_samples,
            dropout=args.dropout,
            seed=args.seed,
            model=args.model,
            module_args=args.args,
            input_shape=args.input_shape,
        )
        shared: dict[str, Any] = {
            "loss": args.loss,
            "dtype": args.dtype,
            "reference": args.reference,
            "fd_samples": args.fd_samples,
            "seed": args.seed,
            "eval_mode": args.eval,
        }
        if args.module is not None:
            _note_runs(cases.module_file(args.module)[0])
            options = {"module_args": args.args, "input_shape": args.input_shape, **shared}
            report = isolated.check_module_in_child(args.module, options)
        else:
            model_options = ("act", "out_act", "norm", "dropout", "batch")
            shared.update({k: getattr(args, k) for k in model_options})
            report = cases.check_mlp(args.model, **shared)
    print(report.to_json() if args.json else report)
    return cases.exit_code(report)


def _note_runs(path: Path) -> None:
    print(
        f"handgrad: note: importing {path} runs its top-level code (in a child process)",
        file=sys.stderr,
    )
