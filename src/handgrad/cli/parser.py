"""An ``argparse`` parser whose errors are one line with the closest valid name suggested."""

from __future__ import annotations

import argparse
import re
import sys
from typing import NoReturn

from handgrad.errors import did_you_mean


class UsageError(Exception):
    """Bad command-line usage; the CLI prints the message and exits with status 2."""


closest = did_you_mean


class Parser(argparse.ArgumentParser):
    """ArgumentParser that raises ``UsageError`` with one readable line instead of exiting."""

    def error(self, message: str) -> NoReturn:
        m = re.match(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'?([^',\s]+)'?", m.group(3))
            message = f"argument {m.group(1)}: invalid choice '{m.group(2)}'" + closest(
                m.group(2), choices
            )
        m = re.match(r"unrecognized arguments: (.*)", message)
        if m:
            first = m.group(1).split()[0]
            options = [s for a in self._actions for s in a.option_strings]
            message = f"unrecognized argument {first}" + closest(first.split("=")[0], options)
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)
