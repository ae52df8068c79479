"""``handgrad report RUN``: write (and optionally open) the run's self-contained report.html."""

from __future__ import annotations

import argparse
import webbrowser

from handgrad.train import records as rec
from handgrad.train.report_page import write_report


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a run's report.html: curves, layer statistics, confusion, findings",
        description=(
            "Write RUN/report.html, one self-contained page that opens offline: the doctor's "
            "findings, the curves, the per-layer statistics over time (layers.jsonl), the "
            "test confusion matrix and most confident mistakes, and the config. Needs the "
            "report extra (pip install 'handgrad[report]')."
        ),
    )
    p.add_argument("run", metavar="RUN", help="a run directory (or a name under --out)")
    p.add_argument("--out", default="runs", metavar="DIR", help="where runs are (default ./runs)")
    p.add_argument("--open", action="store_true", help="open the page in a browser")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_dir = rec.find_run(args.run, args.out)
    path = write_report(run_dir)
    print(f"wrote {path}")
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    return 0
