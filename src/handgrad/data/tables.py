"""The user's own tables: CSV with a header, ``.npz`` with ``x``/``y``, or a pair of ``.npy``.

``read_table(path, target=...)`` returns a :class:`Table`: the features as a float64 array
(N, D), the target (N,), the column names and the task (``classification`` when the target
holds non-numbers or few distinct integers, else ``regression``; or as given). Every error is
one line that names the file, and for a CSV the row (its line number) and the column:
a non-number, a missing value, a ragged row, a target with one class.

Limits on what a file may make handgrad allocate (each stated in its error): a file of at most
``MAX_FILE_BYTES``; at most ``MAX_CELLS`` cells; an ``.npz`` member's declared uncompressed
size and an ``.npy`` header's shape are checked against the caps *before* anything is read,
and arrays are read with ``allow_pickle=False``.

``split_and_standardize`` carves a seeded validation split and standardizes both parts with
the mean and standard deviation of the training part only.
"""

from __future__ import annotations

import csv
import io
import math
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handgrad.errors import HandgradError

MAX_FILE_BYTES = 1 << 30  # 1 GiB
MAX_CELLS = 50_000_000  # 400 MB as float64
MAX_CLASSES_FROM_INTEGERS = 20  # an integer target with more distinct values is regression
MISSING = {"", "na", "nan", "null", "none", "?"}
TASKS = ("classification", "regression")


@dataclass
class Table:
    """A parsed table.

    Attributes:
        x: features, float64 (N, D).
        y: target (N,): float64 for regression; the labels (numbers or strings) for
            classification.
        feature_names: D names (a CSV's header, else ``x0``, ``x1``, ...).
        target_name: the target column's name.
        task: ``classification`` or ``regression``.
        classes: the sorted distinct labels (classification), else None.
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_name: str
    task: str
    classes: np.ndarray | None


def _check_size(path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise HandgradError(f"{path}: no such file") from None
    except OSError as exc:
        raise HandgradError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not path.is_file():
        raise HandgradError(f"{path}: not a regular file")
    if size > MAX_FILE_BYTES:
        raise HandgradError(f"{path}: {size:,} bytes, more than the limit of {MAX_FILE_BYTES:,}")


def _check_cells(path: Path, n: int, d: int) -> None:
    if n * d > MAX_CELLS:
        raise HandgradError(f"{path}: {n:,} x {d:,} cells, more than the limit of {MAX_CELLS:,}")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _task_of(path: Path, y: np.ndarray, numeric: bool, task: str | None) -> str:
    if task is not None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if task == "regression" and not numeric:
            raise HandgradError(f"{path}: task regression needs a numeric target")
        return task
    if not numeric:
        return "classification"
    values = y.astype(np.float64)
    integral = bool(np.all(values == np.round(values)))
    few = len(np.unique(values)) <= MAX_CLASSES_FROM_INTEGERS
    return "classification" if integral and few else "regression"


def _finish(
    path: Path,
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    target: str,
    task: str | None,
    min_classes: int = 2,
) -> Table:
    numeric = y.dtype.kind in "fiub"
    chosen = _task_of(path, y, numeric, task)
    classes = None
    if chosen == "classification":
        if numeric:
            y = y.astype(np.float64)
            if np.all(y == np.round(y)):
                y = y.astype(np.int64)
        classes = np.unique(y)
        if len(classes) < min_classes:
            raise HandgradError(
                f"{path}: target {target!r} has one class ({classes[0].item()!r}); classification "
                "needs at least two"
            )
    else:
        y = y.astype(np.float64)
    return Table(x, y, names, target, chosen, classes)


def open_csv(path: Path) -> tuple[list[str], Iterator[list[str]]]:
    """The header row of a UTF-8 CSV (cells stripped) and a reader of the rows after it.

    Raises:
        HandgradError: the file is too large, not UTF-8, or has no header.
    """
    _check_size(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HandgradError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header or all(not h.strip() for h in header):
        raise HandgradError(f"{path}: empty; expected a header row naming the columns")
    return [h.strip() for h in header], rows


def csv_values(
    path: Path,
    rows: Iterable[list[str]],
    header: list[str],
    columns: list[int],
    target: int | None,
) -> tuple[list[list[float]], list[str]]:
    """The numbers in ``columns`` of each row (one list a row) and the target cells (column
    ``target``, stripped; none if None). Blank rows are skipped; rows are named by their line
    (the header is 1).

    Raises:
        HandgradError: a row of the wrong length, a missing or non-numeric value, a missing
            target, more than ``MAX_CELLS`` values, or no rows at all.
    """
    xs: list[list[float]] = []
    ys: list[str] = []
    for line, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise HandgradError(
                f"{path}: row {line}: {len(row)} values, but the header has {len(header)} columns"
            )
        values = []
        for i in columns:
            cell = row[i].strip()
            if cell.lower() in MISSING:
                raise HandgradError(f"{path}: row {line}, column {header[i]!r}: missing value")
            value = _number(cell)
            if value is None:
                raise HandgradError(
                    f"{path}: row {line}, column {header[i]!r}: {cell[:40]!r} is not a number"
                )
            values.append(value)
        if target is not None:
            label = row[target].strip()
            if label.lower() in MISSING:
                raise HandgradError(
                    f"{path}: row {line}, column {header[target]!r}: missing target value"
                )
            ys.append(label)
        xs.append(values)
        if len(xs) * len(columns) > MAX_CELLS:
            raise HandgradError(f"{path}: more than the limit of {MAX_CELLS:,} cells")
    if not xs:
        raise HandgradError(f"{path}: a header but no rows")
    return xs, ys


def read_csv(
    path: str | os.PathLike[str], target: str, *, task: str | None = None, min_classes: int = 2
) -> Table:
    """A CSV with a header row; ``target`` names the target column, the others are features
    and must be numbers. Rows are named by their line number in the file (the header is 1)."""
    path = Path(path)
    header, rows = open_csv(path)
    if target not in header:
        raise HandgradError(f"{path}: no column {target!r}; the columns are {', '.join(header)}")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise HandgradError(f"{path}: column names repeat: {', '.join(dupes)}")
    t = header.index(target)
    features = [i for i in range(len(header)) if i != t]
    if not features:
        raise HandgradError(f"{path}: only the target column {target!r}; no features")
    xs, ys = csv_values(path, rows, header, features, t)
    numbers = [_number(v) for v in ys]
    y = np.array(numbers, dtype=np.float64) if None not in numbers else np.array(ys)
    names = [header[i] for i in features]
    return _finish(path, np.array(xs, dtype=np.float64), y, names, target, task, min_classes)


def _npy_shape(data: bytes | io.BufferedIOBase, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an .npy header declares (nothing else is read)."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        version = np.lib.format.read_magic(stream)
        reader = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = reader(stream)
    except (ValueError, OSError) as exc:
        raise HandgradError(f"{where}: not an .npy array ({exc})") from None
    return shape, dtype


def _checked_array(path: Path, where: str, raw: bytes, ndim: int) -> np.ndarray:
    shape, dtype = _npy_shape(raw, where)
    if dtype.hasobject:
        raise HandgradError(f"{where}: object arrays are refused (they would need unpickling)")
    if len(shape) != ndim:
        want = "(N, D)" if ndim == 2 else "(N,)"
        raise HandgradError(f"{where}: expected shape {want}, got {shape}")
    cells = math.prod(shape)
    if cells > MAX_CELLS:
        raise HandgradError(f"{where}: {cells:,} cells, more than the limit of {MAX_CELLS:,}")
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise HandgradError(f"{where}: unreadable ({exc})") from None
    return array


def _features(path: Path, where: str, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "fiub":
        raise HandgradError(f"{where}: features must be numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        r, c = bad[0]
        raise HandgradError(f"{where}: row {r}, column {c}: {x[r, c]} (not a finite number)")
    return x


def _pair(
    path: Path, x: np.ndarray, y: np.ndarray, task: str | None, where: str, min_classes: int = 2
) -> Table:
    x = _features(path, where, x)
    if len(y) != len(x):
        raise HandgradError(f"{where}: {len(x)} rows of x but {len(y)} values of y")
    if len(x) == 0:
        raise HandgradError(f"{where}: no rows")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise HandgradError(f"{where}: y row {int(np.argmin(np.isfinite(y)))}: not finite")
    names = [f"x{i}" for i in range(x.shape[1])]
    return _finish(path, x, y, names, "y", task, min_classes)


def read_npz(
    path: str | os.PathLike[str], *, task: str | None = None, min_classes: int = 2
) -> Table:
    """An ``.npz`` holding ``x`` (N, D) numbers and ``y`` (N,)."""
    path = Path(path)
    _check_size(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise HandgradError(f"{path}: not an .npz archive ({exc})") from None
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        arrays = {}
        for key in ("x", "y"):
            info = members.get(f"{key}.npy")
            if info is None:
                raise HandgradError(f"{path}: no array {key!r}; expected arrays x and y")
            if info.file_size > MAX_FILE_BYTES:
                raise HandgradError(
                    f"{path}: {key} is {info.file_size:,} bytes uncompressed, more than the "
                    f"limit of {MAX_FILE_BYTES:,}"
                )
            raw = archive.read(info)
            arrays[key] = _checked_array(path, f"{path}[{key}]", raw, 2 if key == "x" else 1)
    return _pair(path, arrays["x"], arrays["y"], task, str(path), min_classes)


def read_npy_pair(
    x_path: str | os.PathLike[str], y_path: str | os.PathLike[str], *, task: str | None = None
) -> Table:
    """Two ``.npy`` files: features (N, D) and target (N,)."""
    xp, yp = Path(x_path), Path(y_path)
    loaded = []
    for p, ndim in ((xp, 2), (yp, 1)):
        _check_size(p)
        loaded.append(_checked_array(p, str(p), p.read_bytes(), ndim))
    return _pair(xp, loaded[0], loaded[1], task, f"{xp} + {yp.name}")


def read_table(
    path: str | os.PathLike[str],
    target: str | None = None,
    *,
    y_path: str | os.PathLike[str] | None = None,
    task: str | None = None,
    min_classes: int = 2,
) -> Table:
    """Read a ``.csv`` (needs ``target``), ``.npz``, or ``.npy`` (needs ``y_path``).

    ``min_classes``: the fewest distinct labels a classification target may hold (a test
    file may hold one class: 1)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        if target is None:
            raise ValueError(f"{p}: name the target column of a CSV")
        return read_csv(p, target, task=task, min_classes=min_classes)
    if suffix == ".npz":
        return read_npz(p, task=task, min_classes=min_classes)
    if suffix == ".npy":
        if y_path is None:
            raise ValueError(f"{p}: an .npy of features needs the .npy of targets beside it")
        return read_npy_pair(p, y_path, task=task)
    raise HandgradError(f"{p}: expected a .csv, .npz or .npy file")


@dataclass
class Split:
    """Standardized training and validation parts; ``mean``/``std`` come from training only."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def split_and_standardize(table: Table, valid_fraction: float, seed: int) -> Split:
    """A seeded random validation split, then x ← (x − mean_train) / std_train (std 0 → 1)."""
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    n = len(table.x)
    n_valid = round(n * valid_fraction)
    if not 0 < n_valid < n:
        raise HandgradError(f"{n} rows cannot give a validation split of {valid_fraction:g}")
    order = np.random.default_rng(seed).permutation(n)
    valid, train = order[:n_valid], order[n_valid:]
    mean = table.x[train].mean(axis=0)
    std = table.x[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return Split(
        (table.x[train] - mean) / std,
        table.y[train],
        (table.x[valid] - mean) / std,
        table.y[valid],
        mean,
        std,
    )
