"""An ``argparse`` parser whose errors are one line with the closest valid name suggested."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from handgrad.errors import did_you_mean


class UsageError(Exception):
    """Bad command-line usage; the CLI prints the message and exits with status 2.

    ``prog`` is the command whose ``--help`` the message points to (e.g. ``handgrad check``).
    """

    def __init__(self, message: str, prog: str = "handgrad") -> None:
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """ArgumentParser that raises ``UsageError`` with one readable line instead of exiting."""

    def error(self, message: str) -> NoReturn:
        m = re.match(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'?([^',\s]+)'?", m.group(3))
            message = f"argument {m.group(1)}: invalid choice '{m.group(2)}'" + did_you_mean(
                m.group(2), choices
            )
        m = re.match(r"unrecognized arguments: (.*)", message)
        if m:
            first = m.group(1).split()[0]
            options = [s for a in self._actions for s in a.option_strings]
            message = f"unrecognized argument {first}" + did_you_mean(first.split("=")[0], options)
        raise UsageError(f"{self.prog}: {message}", self.prog)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if args is not None and self._subparsers is None:
            self._reject_unknown(list(args))
        return super().parse_known_args(args, namespace)

    def _reject_unknown(self, args: list[str]) -> None:
        """Name an unknown option of this (leaf) command first, with the closest of its own
        options, before argparse complains about anything else."""
        options = [s for a in self._actions for s in a.option_strings]
        for word in args:
            if word == "--":
                return
            if not word.startswith("-") or re.fullmatch(r"-\d+(\.\d*)?([eE][-+]?\d+)?", word):
                continue
            name = word.split("=", 1)[0]
            if name in options or (
                self.allow_abbrev
                and name.startswith("--")
                and sum(o.startswith(name) for o in options) == 1
            ):
                continue
            if len(name) > 2 and not name.startswith("--") and name[:2] in options:
                continue  # -n5 style
            raise UsageError(
                f"{self.prog}: unrecognized argument {name}" + did_you_mean(name, options),
                self.prog,
            )

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)
