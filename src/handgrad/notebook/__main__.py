"""``python -m handgrad.notebook make-exercises [--check] [ROOT]``.

Writes ``notebooks/*.ipynb`` (outputs stripped) from the solved ``notebooks/*.py`` and the
exercise copies under ``notebooks/exercises/``. With ``--check`` it writes nothing and exits 1
if any file is out of date (listing them), 0 if all are up to date. Exit 2 on bad usage.
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = "usage: python -m handgrad.notebook make-exercises [--check] [ROOT]"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "make-exercises":
        print(USAGE, file=sys.stderr)
        return 2
    args = args[1:]
    check = "--check" in args
    rest = [a for a in args if a != "--check"]
    if len(rest) > 1 or any(a.startswith("-") for a in rest):
        print(USAGE, file=sys.stderr)
        return 2
    root = Path(rest[0]) if rest else Path.cwd()
    from handgrad.notebook import make

    try:
        if check:
            old = make.stale(root)
            for path in old:
                print(f"out of date: {path}")
            if old:
                print("run: python -m handgrad.notebook make-exercises", file=sys.stderr)
            return 1 if old else 0
        for path in make.make_all(root):
            print(f"wrote {path}")
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
