"""handgrad data: where MNIST comes from, whether it is intact, and what it looks like.

    handgrad data info   [--data DIR | --embedded | --pickle FILE] [--download]
    handgrad data verify [--data DIR | --embedded]
    handgrad data show   [--data DIR | --embedded | --pickle FILE] [--download] [--n 64]
                         [--out digits.png] [--split train|valid|test] [--seed S]

Without ``--data`` the full set is looked for in ``$HANDGRAD_DATA`` and the cache directory;
``info`` and ``show`` fall back to the embedded 1,000/1,000 subset (and say so) unless
``--download`` is given, while ``verify`` insists on finding files (or ``--embedded``).
``--pickle`` reads a ``mnist.pkl.gz`` through the restricted unpickler (no checksum is
published for it, so only its structure is checked).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from handgrad.data.inspect import Loaded, load_for_inspection, origin_of
from handgrad.data.sources import (
    EMBEDDED_SOURCE,
    ENV_VAR,
    HOW_TO_POINT,
    FileCheck,
    cache_dir,
    check_embedded,
    locate_data_dir,
    verify_files,
)
from handgrad.errors import HandgradError


def _load(args: argparse.Namespace) -> Loaded:
    pickle = getattr(args, "pickle", None)
    download = getattr(args, "download", False)
    return load_for_inspection(args.data, embedded=args.embedded, pickle=pickle, download=download)


def _check_lines(checks: list[FileCheck]) -> list[str]:
    lines = []
    for c in checks:
        if c.error:
            lines.append(f"  FAILED    {c.path.name:<32} {c.error}")
        elif c.ok:
            lines.append(f"  ok        {c.path.name:<32} md5 {c.md5}")
        else:
            lines.append(f"  MISMATCH  {c.path.name:<32} md5 {c.md5}, expected {c.expected}")
    return lines


def cmd_info(args: argparse.Namespace) -> int:
    """Print source, counts, class histogram, pixel mean/std and checksum status.

    Returns 1 (after the full report) if a checksum does not match, else 0.
    """
    loaded = _load(args)
    if loaded.note:
        print(f"note: {loaded.note}", file=sys.stderr)
    print(f"source:    {loaded.source}")
    steps = "read, decompress, check" + (", MD5" if loaded.checks else "")
    print(f"load time: {loaded.seconds:.2f} s ({steps})")
    print(f"{'split':<6} {'records':>7} {'pixel mean':>10} {'pixel std':>9}   class counts 0-9")
    for split, (images, labels) in loaded.splits.items():
        counts = np.bincount(labels.astype(np.int64), minlength=10)
        mean = images.mean(dtype=np.float64)
        std = images.std(dtype=np.float64)
        print(
            f"{split:<6} {len(images):>7} {mean:>10.3f} {std:>9.3f}   "
            + " ".join(str(int(c)) for c in counts)
        )
    images = loaded.splits["train"][0]
    if images.dtype == np.uint8:
        print("pixels are uint8 0-255, images 28x28")
    else:
        top = max(float(im.max()) for im, _ in loaded.splits.values())
        print(f"pixels are {images.dtype} as stored, max {top:.8g}, images flattened to 784")
    if not loaded.checks:
        print("checksums: none published for this file; its structure was checked")
        return 0
    n_ok = sum(c.ok for c in loaded.checks)
    verdict = "ok" if n_ok == len(loaded.checks) else "FAILED"
    print(f"checksums: {verdict} ({n_ok} of {len(loaded.checks)} files match)")
    for line in _check_lines(loaded.checks):
        print(line)
    return _report_failures(loaded.checks)


def _report_failures(checks: list[FileCheck]) -> int:
    """0 if every check passed; else one line on stderr about the first failure, and 1."""
    failed = [c for c in checks if not c.ok]
    if not failed:
        return 0
    first = failed[0]
    problem = first.error or f"checksum mismatch (MD5 {first.md5}, expected {first.expected})"
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    print(f"handgrad: error: {first.path}: {problem}{more}", file=sys.stderr)
    return 1


def cmd_verify(args: argparse.Namespace) -> int:
    """Check the MD5 of every file; exit 0 only if all match, 1 otherwise."""
    if args.embedded:
        _, checks = check_embedded()
        source = EMBEDDED_SOURCE
    else:
        directory = locate_data_dir(args.data)
        if directory is None:
            raise HandgradError(
                f"no MNIST files to verify (no --data, ${ENV_VAR} unset, cache {cache_dir()} "
                f"incomplete); {HOW_TO_POINT}, or use --embedded for the built-in subset"
            )
        checks = verify_files(directory)
        source = f"{directory} ({origin_of(args.data)})"
    print(f"source: {source}")
    for line in _check_lines(checks):
        print(line)
    if all(c.ok for c in checks):
        print(f"all {len(checks)} checksums match")
    return _report_failures(checks)


def cmd_show(args: argparse.Namespace) -> int:
    """Write a labelled grid of digits as a PNG."""
    from handgrad.data.show import save_digit_grid

    if args.n < 1:
        raise ValueError(f"--n: expected a positive number of digits, got {args.n}")
    if not str(args.out).lower().endswith(".png"):
        raise ValueError(f"--out {args.out}: the grid is written as PNG; use a .png file name")
    loaded = _load(args)
    if loaded.note:
        print(f"note: {loaded.note}", file=sys.stderr)
    if args.split not in loaded.splits:
        raise ValueError(
            f"--split {args.split}: {loaded.source} has {', '.join(loaded.splits)} only"
        )
    images, labels = loaded.splits[args.split]
    if images.dtype != np.uint8:  # a pickle's floats, scaled to 0-255 for display only
        top = max(float(images.max()), 1e-12)
        images = np.clip(np.rint(images * (255.0 / top)), 0, 255).astype(np.uint8)
    if args.n > len(images):
        raise ValueError(f"--n: the {args.split} set has {len(images)} digits, got {args.n}")
    if args.seed is None:
        index = np.arange(args.n)
        what = f"{args.split} digits 0-{args.n - 1}"
    else:
        index = np.sort(np.random.default_rng(args.seed).choice(len(images), args.n, False))
        what = f"{args.n} random {args.split} digits (seed {args.seed})"
    path = save_digit_grid(images[index], labels[index], args.out, title=what)
    print(f"wrote {path}: {what} from {loaded.source}")
    return 0


def _add_source_options(parser: argparse.ArgumentParser, *, download: bool) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help=f"folder with the four MNIST files (default: ${ENV_VAR}, then the cache)",
    )
    source.add_argument(
        "--embedded", action="store_true", help="use the built-in 1,000/1,000 subset"
    )
    if download:
        source.add_argument(
            "--pickle",
            metavar="FILE",
            default=None,
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

    info = sub.add_parser(
        "info", help="source, counts, class histogram, pixel mean/std, checksum status"
    )
    _add_source_options(info, download=True)
    info.set_defaults(func=cmd_info)

    verify = sub.add_parser("verify", help="check the MD5s; exit 0 only if all match")
    _add_source_options(verify, download=False)
    verify.set_defaults(func=cmd_verify)

    show = sub.add_parser("show", help="write a labelled grid of digits as a PNG")
    _add_source_options(show, download=True)
    show.add_argument("--n", type=int, default=64, help="number of digits (default 64)")
    show.add_argument("--out", default="digits.png", help="PNG to write (default digits.png)")
    show.add_argument("--split", choices=("train", "valid", "test"), default="train")
    show.add_argument(
        "--seed",
        type=int,
        default=None,
        help="pick random digits with this seed (default: first n)",
    )
    show.set_defaults(func=cmd_show)
