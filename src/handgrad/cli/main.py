"""Entry point of the ``handgrad`` command.

Each command lives in its own module under ``handgrad.cli`` and exposes
``register(subparsers) -> None``, which adds its sub-parser and sets ``func`` (a callable
``(argparse.Namespace) -> int`` returning the exit code) with ``set_defaults``. This file only
wires them together and turns errors meant for people into one line and a non-zero exit.

``COMMANDS`` holds each command's one-line help, so ``handgrad --help`` lists them without
importing any command module; only the command named on the line is imported and registered
(the others stay placeholders). ``train_cmd``, ``recipes_cmd``, ``check_cmd`` and ``data_cmd``
do not import torch at their top, so ``handgrad --help``, the ``--help`` of those commands,
their usage errors and ``handgrad recipes`` answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from handgrad.cli import edge
from handgrad.cli.parser import Parser

# Command name -> (module under handgrad.cli, one-line help), in the order --help lists them.
COMMANDS = {
    "train": (
        "train_cmd",
        "train a model (the default run, a recipe, a config file) or resume a run",
    ),
    "evaluate": ("evaluate_cmd", "a run's test accuracy, loss and confusion matrix"),
    "predict": ("predict_cmd", "classify image files or test-set images with a run's model"),
    "recipes": ("recipes_cmd", "list the seed recipes and the figures they are expected to reach"),
    "compare": (
        "compare_cmd",
        "train with handgrad and with torch autograd side by side, step by step",
    ),
    "check": ("check_cmd", "check hand-written gradients and name the faulty layer"),
    "data": ("data_cmd", "MNIST: where it comes from, verify checksums, show digits"),
    "doctor": (
        "doctor_cmd",
        "why a run does not learn: dead or saturated units, vanishing gradients, lr",
    ),
    "export": ("export_cmd", "write a run's model as ONNX or as a NumPy-only predictor"),
    "report": (
        "report_cmd",
        "write a run's report.html: curves, layer statistics, confusion, findings",
    ),
}


class _Commands(argparse._SubParsersAction):
    """Sub-parsers whose one-line help is always the one in ``COMMANDS``."""

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        kwargs["help"] = COMMANDS[name][1] if name in COMMANDS else kwargs.get("help")
        return super().add_parser(name, **kwargs)


def _command_word(argv: Sequence[str]) -> str | None:
    """The command named on the line (the first word that is not an option), if any."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] | None = None) -> Parser:
    """The parser: the command ``argv`` names fully registered (every command when ``argv`` is
    None), the others as placeholders that only list their help."""
    parser = Parser(
        prog="handgrad",
        description="Neural networks with hand-written backward passes, proved right.",
    )
    from handgrad import __version__

    parser.add_argument("--version", action="version", version=f"handgrad {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of an error (also {edge.DEBUG_ENV}=1); anywhere on the line",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=Parser, action=_Commands
    )
    wanted = None if argv is None else _command_word(argv)
    for name, (module_name, _) in COMMANDS.items():
        if argv is None or name == wanted:
            importlib.import_module(f"handgrad.cli.{module_name}").register(sub)
        else:
            sub.add_parser(name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 1 failure, 2 bad input, 130
    interrupted). Every error is one line on stderr (``handgrad.cli.edge``); ``--debug`` (or
    ``HANDGRAD_DEBUG=1``) adds the traceback."""
    words, debug = edge.debug_flag(list(sys.argv[1:] if argv is None else argv))

    def command() -> int:
        parser = build_parser(words)  # imports the command's module (and torch): guarded
        args = parser.parse_args(words)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        # numpy before torch, here: torch's extension imports numpy from C++ on first use
        # and swallows any error there, so a Ctrl-C during that import would be lost (the run
        # went on, or failed later on a half-imported numpy). From here it is a Ctrl-C.
        import numpy  # noqa: F401

        code: int = args.func(args)
        return code

    return edge.guarded(command, debug)


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # until a run's loop turns it into a checkpoint and a clean stop


def run() -> None:
    """Console-script wrapper: exit with ``main``'s code (SIGTERM is handled as Ctrl-C)."""
    try:
        signal.signal(signal.SIGTERM, _sigterm)
        signal.signal(signal.SIGINT, edge.on_sigint)
        code = main()
    except KeyboardInterrupt:  # between main's own handlers
        print("handgrad: interrupted", file=sys.stderr)
        code = 130
    if code == edge.EXIT_INTERRUPTED:
        # Exit 130 as said, now. Seen under load: "interrupted" printed, then an exit by
        # SIGINT (-2). Our reading of CPython: it notes a KeyboardInterrupt that escaped
        # code it ran for an extension (torch's import), even one the extension swallowed,
        # and kills itself with SIGINT at the end. Every file of the run is closed by now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    run()
