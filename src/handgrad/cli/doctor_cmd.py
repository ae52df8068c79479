"""``handgrad doctor RUN``: what keeps a run from learning, one finding a line.

Exit codes: 0 no failure finding (advice findings included), 1 a failure finding, 2 bad input
(no such run, damaged records).
"""

from __future__ import annotations

import argparse
import json

from handgrad.train import records as rec
from handgrad.train.doctor import diagnose


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="why a run does not learn: dead or saturated units, vanishing gradients, lr",
        description=(
            "Read a run's config.json, metrics.jsonl and layers.jsonl (if recorded) and print "
            "what keeps it from learning, one finding a line: the kind, the layer (as in "
            "named_modules(), with its type), since when, the figure, and what to try. "
            "Exit 1 when a failure is found, 0 otherwise (advice such as a lifted plateau or "
            "overfitting does not fail), 2 for bad input."
        ),
    )
    p.add_argument("run", metavar="RUN", help="a run directory (or a name under --out)")
    p.add_argument("--out", default="runs", metavar="DIR", help="where runs are (default ./runs)")
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object {"ok": bool, "findings": [...], "not_judged": [...]}',
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_dir = rec.find_run(args.run, args.out)
    diagnosis = diagnose(run_dir)
    if args.json:
        print(json.dumps(diagnosis.to_json()))
    else:
        print(diagnosis.text())
    return 0 if diagnosis.ok else 1
