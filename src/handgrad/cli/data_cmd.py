"""handgrad data: where MNIST comes from, whether it is intact, and what it looks like.

    handgrad data info   [--data DIR | --embedded | --pickle FILE] [--download]
    handgrad data verify [--data DIR | --embedded]
    handgrad data show   [--data DIR | --embedded | --pickle FILE] [--download] [--n 64]
                         [--out digits.png] [--split train|valid|test] [--seed S]

Without ``--data`` the full set is looked for in ``$HANDGRAD_DATA`` and the cache directory;
``info`` and ``show`` fall back to the embedded 1,000/1,000 subset (and say so) unless
``--download`` is given, while ``verify`` insists on finding files (or ``--embedded``).
``--pickle`` reads a ``mnist.pkl.gz`` through the restricted unpickler (no checksum is
published for it, so only its structure is checked). The reading, figures and choices are in
``handgrad.data.inspect``; this module prints them, and imports neither it nor torch until a
sub-command runs, so that ``handgrad data --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handgrad.data.inspect import Loaded
    from handgrad.data.sources import FileCheck

ENV_VAR = "HANDGRAD_DATA"  # handgrad.data.sources.ENV_VAR, repeated so that --help needs no torch


def _load(args: argparse.Namespace) -> Loaded:
    """What the options select, read; the note on stderr when it fell back to the subset."""
    from handgrad.data.inspect import load_for_inspection

    pickle, download = getattr(args, "pickle", None), getattr(args, "download", False)
    loaded = load_for_inspection(
        args.data, embedded=args.embedded, pickle=pickle, download=download
    )
    if loaded.note:
        print(f"note: {loaded.note}", file=sys.stderr)
    return loaded


def _exit_code(checks: list[FileCheck]) -> int:
    """0 if every check passed; else one line on stderr about the first failure, and 1."""
    from handgrad.data.inspect import first_failure

    failure = first_failure(checks)
    if failure is None:
        return 0
    print(f"handgrad: error: {failure}", file=sys.stderr)
    return 1


def cmd_info(args: argparse.Namespace) -> int:
    """Print source, counts, class histogram, pixel mean/std and checksum status.

    Returns 1 (after the full report) if a checksum does not match, else 0.
    """
    from handgrad.data.inspect import info_lines

    loaded = _load(args)
    print("\n".join(info_lines(loaded)))
    return _exit_code(loaded.checks)


def cmd_verify(args: argparse.Namespace) -> int:
    """Check the MD5 of every file; exit 0 only if all match, 1 otherwise."""
    from handgrad.data.inspect import check_lines, verify_source

    source, checks = verify_source(args.data, embedded=args.embedded)
    print(f"source: {source}")
    for line in check_lines(checks):
        print(line)
    if all(c.ok for c in checks):
        print(f"all {len(checks)} checksums match")
    return _exit_code(checks)


def cmd_show(args: argparse.Namespace) -> int:
    """Write a labelled grid of digits as a PNG."""
    from handgrad.data.inspect import check_show_options, pick_digits
    from handgrad.data.show import save_digit_grid

    check_show_options(args.n, args.out)
    loaded = _load(args)
    images, labels, what = pick_digits(loaded, args.split, args.n, args.seed)
    path = save_digit_grid(images, labels, args.out, title=what)
    print(f"wrote {path}: {what} from {loaded.source}")
    return 0


def _add_source_options(parser: argparse.ArgumentParser, *, download: bool) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--data",
        metavar="DIR",
        help=f"folder with the four MNIST files (default: ${ENV_VAR}, then the cache)",
    )
    source.add_argument(
        "--embedded", action="store_true", help="use the built-in 1,000/1,000 subset"
    )
    if download:
        source.add_argument(
            "--pickle",
            metavar="FILE",
            help="read a mnist.pkl.gz (restricted unpickler: arrays only, nothing is run)",
        )
        parser.add_argument(
            "--download",
            action="store_true",
            help="download the full set into the cache if it is not found",
        )


def register(subparsers: Any) -> None:
    """Add ``handgrad data`` and its sub-commands ``info``, ``verify``, ``show``."""
    parser = subparsers.add_parser(
        "data",
        help="MNIST: where it comes from, verify checksums, show digits",
        description="MNIST for handgrad: where it comes from, whether it is intact, and what "
        "it looks like. The full set is found via --data DIR, $HANDGRAD_DATA or the cache; "
        "info and show fall back to the embedded 1,000/1,000 subset.",
    )

    def no_subcommand(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(func=no_subcommand)
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    commands = (
        ("info", "source, counts, class histogram, pixel mean/std, checksum status", cmd_info),
        ("verify", "check the MD5s; exit 0 only if all match", cmd_verify),
        ("show", "write a labelled grid of digits as a PNG", cmd_show),
    )
    for name, text, func in commands:
        command = sub.add_parser(name, help=text)
        _add_source_options(command, download=name != "verify")
        command.set_defaults(func=func)
    show = sub.choices["show"]
    show.add_argument("--n", type=int, default=64, help="number of digits (default 64)")
    show.add_argument("--out", default="digits.png", help="PNG to write (default digits.png)")
    show.add_argument("--split", choices=("train", "valid", "test"), default="train")
    show.add_argument(
        "--seed", type=int, help="pick random digits with this seed (default: first n)"
    )
