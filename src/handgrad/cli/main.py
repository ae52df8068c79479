"""Entry point of the ``handgrad`` command.

Each command lives in its own module under ``handgrad.cli`` and exposes
``register(subparsers) -> None``, which adds its sub-parser and sets ``func`` (a callable
``(argparse.Namespace) -> int`` returning the exit code) with ``set_defaults``. This file only
wires them together and turns errors meant for people into one line and a non-zero exit.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from handgrad.cli.parser import Parser, UsageError
from handgrad.errors import HandgradError

# Modules under handgrad.cli that define commands, in the order `handgrad --help` lists them.
COMMAND_MODULES = (
    "train_cmd",
    "evaluate_cmd",
    "predict_cmd",
    "recipes_cmd",
    "compare_cmd",
    "check_cmd",
    "data_cmd",
    "export_cmd",
    "smoke_cmd",
)


def build_parser() -> Parser:
    """Build the full parser from every command module that is present."""
    parser = Parser(
        prog="handgrad",
        description="Neural networks with hand-written backward passes, proved right.",
    )
    from handgrad import __version__

    parser.add_argument("--version", action="version", version=f"handgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"handgrad.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"handgrad.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 1 failure, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        code: int = args.func(args)
        return code
    except UsageError as exc:
        print(f"{exc}; see '{exc.prog} --help'", file=sys.stderr)
        return 2
    except (HandgradError, ValueError, TypeError, OSError) as exc:
        print(f"handgrad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("handgrad: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script wrapper: exit with ``main``'s code."""
    raise SystemExit(main())


if __name__ == "__main__":
    run()
