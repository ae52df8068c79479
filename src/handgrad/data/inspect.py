"""The MNIST a ``handgrad data`` command looks at: embedded, a folder, a pickle, or downloaded.

``load_for_inspection`` reads what the options select and says where it came from, how long
reading took and what the checksums say; the command line only prints it.
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
)


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
        else f"full MNIST not found (no --data, ${ENV_VAR} unset, cache {cache_dir()} "
        "incomplete); using the embedded subset; add --download, or " + HOW_TO_POINT
    )
    return Loaded(_idx_splits(arrays), checks, EMBEDDED_SOURCE, time.perf_counter() - start, note)
