"""The MNIST a ``handgrad data`` command looks at: embedded, a folder, a pickle, or downloaded.

``load_for_inspection`` reads what the options select and says where it came from, how long
reading took and what the checksums say; ``split_stats`` and ``pixel_format`` describe it
(``info_lines``: the whole of ``handgrad data info``), ``verify_source`` checks the files
without decoding them, ``check_lines`` and ``first_failure`` say what the checks found, and
``pick_digits`` chooses the digits ``handgrad data show`` draws. The command line only prints
what these return.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handgrad.data.safe_pickle import load_pickle_mnist
from handgrad.data.sources import (
    EMBEDDED_SOURCE,
    ENV_VAR,
    HOW_TO_POINT,
    FileCheck,
    cache_dir,
    check_embedded,
    locate_data_dir,
    read_mnist_dir,
    resolve_data_dir,
    verify_files,
)
from handgrad.errors import HandgradError


@dataclass
class Loaded:
    """Splits read for a command, with where they came from and their checksum verdicts.

    ``splits`` maps 'train', 'test' (and 'valid' for a pickle) to ``(images, labels)``: uint8
    ``(N, 28, 28)`` in 0-255 from IDX files, or float ``(N, 784)`` as stored in a pickle.
    """

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    checks: list[FileCheck]
    source: str
    seconds: float
    note: str = ""


def _idx_splits(arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {s: (arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in ("train", "test")}


def _searched() -> str:
    """Where the full set was looked for, when it was not found."""
    return f"no --data, ${ENV_VAR} unset, cache {cache_dir()} incomplete"


def origin_of(data: str | os.PathLike[str] | None) -> str:
    """How the folder was named: ``--data``, the environment variable, or the cache."""
    if data is not None:
        return "--data"
    if os.environ.get(ENV_VAR):
        return f"${ENV_VAR}"
    return "cache"


def load_for_inspection(
    data: str | os.PathLike[str] | None = None,
    *,
    embedded: bool = False,
    pickle: str | os.PathLike[str] | Path | None = None,
    download: bool = False,
) -> Loaded:
    """Read the data selected: a pickle, the embedded subset, or the full set found (in
    ``data``, ``$HANDGRAD_DATA`` or the cache) or downloaded; the embedded subset, with a
    note saying why, when the full set is not found and ``download`` is off."""
    start = time.perf_counter()
    if pickle is not None:
        (train, valid, test) = load_pickle_mnist(pickle)
        splits = {"train": train, "valid": valid, "test": test}
        return Loaded(splits, [], f"{pickle} (pickle)", time.perf_counter() - start)
    if not embedded:
        directory = locate_data_dir(data)
        origin = origin_of(data)
        if directory is None and download:
            directory, origin = resolve_data_dir(download=True), "downloaded into the cache"
        if directory is not None:
            arrays, checks = read_mnist_dir(directory)
            splits = _idx_splits(arrays)
            return Loaded(splits, checks, f"{directory} ({origin})", time.perf_counter() - start)
    arrays, checks = check_embedded()
    note = (
        ""
        if embedded
        else f"full MNIST not found ({_searched()}); using the embedded subset; add --download, "
        "or " + HOW_TO_POINT
    )
    return Loaded(_idx_splits(arrays), checks, EMBEDDED_SOURCE, time.perf_counter() - start, note)


@dataclass(frozen=True)
class SplitStats:
    """One split's figures: its record count, pixel mean and standard deviation (over every
    pixel, as stored), and the count of each class 0-9."""

    split: str
    records: int
    mean: float
    std: float
    counts: tuple[int, ...]


def split_stats(loaded: Loaded) -> list[SplitStats]:
    """The figures of each split of ``loaded``, in its order (train, [valid,] test)."""
    stats = []
    for split, (images, labels) in loaded.splits.items():
        counts = np.bincount(labels.astype(np.int64), minlength=10)
        stats.append(
            SplitStats(
                split,
                len(images),
                float(images.mean(dtype=np.float64)),
                float(images.std(dtype=np.float64)),
                tuple(int(c) for c in counts),
            )
        )
    return stats


def check_lines(checks: list[FileCheck]) -> list[str]:
    """A line per file: ``ok``, ``MISMATCH`` (both MD5s) or ``FAILED`` (why it is unreadable)."""
    lines = []
    for c in checks:
        if c.error:
            lines.append(f"  FAILED    {c.path.name:<32} {c.error}")
        elif c.ok:
            lines.append(f"  ok        {c.path.name:<32} md5 {c.md5}")
        else:
            lines.append(f"  MISMATCH  {c.path.name:<32} md5 {c.md5}, expected {c.expected}")
    return lines


def info_lines(loaded: Loaded) -> list[str]:
    """What ``handgrad data info`` prints: the source, the time it took, a row of figures per
    split, how the pixels are stored, and the checksums' verdict with a line per file."""
    steps = "read, decompress, check" + (", MD5" if loaded.checks else "")
    lines = [f"source:    {loaded.source}", f"load time: {loaded.seconds:.2f} s ({steps})"]
    lines.append(
        f"{'split':<6} {'records':>7} {'pixel mean':>10} {'pixel std':>9}   class counts 0-9"
    )
    for s in split_stats(loaded):
        counts = " ".join(map(str, s.counts))
        lines.append(f"{s.split:<6} {s.records:>7} {s.mean:>10.3f} {s.std:>9.3f}   {counts}")
    lines.append(pixel_format(loaded))
    if not loaded.checks:
        return [*lines, "checksums: none published for this file; its structure was checked"]
    n_ok = sum(c.ok for c in loaded.checks)
    verdict = "ok" if n_ok == len(loaded.checks) else "FAILED"
    lines.append(f"checksums: {verdict} ({n_ok} of {len(loaded.checks)} files match)")
    return lines + check_lines(loaded.checks)


def pixel_format(loaded: Loaded) -> str:
    """How the pixels are stored: uint8 28x28 images, or a pickle's floats flattened to 784."""
    images = loaded.splits["train"][0]
    if images.dtype == np.uint8:
        return "pixels are uint8 0-255, images 28x28"
    top = max(float(im.max()) for im, _ in loaded.splits.values())
    return f"pixels are {images.dtype} as stored, max {top:.8g}, images flattened to 784"


def verify_source(
    data: str | os.PathLike[str] | None = None, *, embedded: bool = False
) -> tuple[str, list[FileCheck]]:
    """The MD5 of every file of the embedded subset or of the folder found (``data``,
    ``$HANDGRAD_DATA`` or the cache), and a line saying where they are.

    Raises:
        HandgradError: no folder with the four files is found (nothing is downloaded).
    """
    if embedded:
        return EMBEDDED_SOURCE, check_embedded()[1]
    directory = locate_data_dir(data)
    if directory is None:
        raise HandgradError(
            f"no MNIST files to verify ({_searched()}); {HOW_TO_POINT}, or use --embedded for "
            "the built-in subset"
        )
    return f"{directory} ({origin_of(data)})", verify_files(directory)


def first_failure(checks: list[FileCheck]) -> str | None:
    """``"PATH: what is wrong (and N more)"`` for the first check that failed, or None."""
    failed = [c for c in checks if not c.ok]
    if not failed:
        return None
    first = failed[0]
    problem = first.error or f"checksum mismatch (MD5 {first.md5}, expected {first.expected})"
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"{first.path}: {problem}{more}"


def check_show_options(n: int, out: str | os.PathLike[str]) -> None:
    """Refuse a grid of no digits, or a file name that is not a ``.png``.

    Raises:
        ValueError: naming the option.
    """
    if n < 1:
        raise ValueError(f"--n: expected a positive number of digits, got {n}")
    if not str(out).lower().endswith(".png"):
        raise ValueError(f"--out {out}: the grid is written as PNG; use a .png file name")


def pick_digits(
    loaded: Loaded, split: str, n: int, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` digits of ``split``: the first ``n``, or ``n`` drawn without replacement with
    ``seed`` (in index order). Returns their uint8 images (a pickle's floats scaled to 0-255
    for display), their labels, and a title saying which they are.

    Raises:
        ValueError: ``loaded`` has no such split, or fewer than ``n`` digits in it.
    """
    if split not in loaded.splits:
        raise ValueError(f"--split {split}: {loaded.source} has {', '.join(loaded.splits)} only")
    images, labels = loaded.splits[split]
    if images.dtype != np.uint8:  # a pickle's floats, scaled to 0-255 for display only
        top = max(float(images.max()), 1e-12)
        images = np.clip(np.rint(images * (255.0 / top)), 0, 255).astype(np.uint8)
    if n > len(images):
        raise ValueError(f"--n: the {split} set has {len(images)} digits, got {n}")
    if seed is None:
        index = np.arange(n)
        what = f"{split} digits 0-{n - 1}"
    else:
        index = np.sort(np.random.default_rng(seed).choice(len(images), n, False))
        what = f"{n} random {split} digits (seed {seed})"
    return images[index], labels[index], what
