"""A run on the user's own table: ``handgrad train --data-file table.csv --target COLUMN``.

The file is read by ``handgrad.data.tables`` (CSV with a header, ``.npz`` with ``x``/``y``,
or a pair of ``.npy``). The splits, all seeded by ``config.seed``:

- test: ``config.test_file`` (a second table with the same columns), or else a random
  ``config.test_fraction`` of the rows (default 0.2);
- validation: ``config.valid`` of the remaining rows (a count, or a fraction of them);
- train: the rest.

The features are standardized, ``x' = (x - mean) / std`` with the mean and standard deviation
of the training split only (a column constant there gets std 1). Classification targets are
class indices into the sorted distinct labels ``classes``; regression targets are the values
(N, 1), not rescaled, and the model's output is the prediction itself.

``resolve_table(config)`` runs once when a run starts: it reads the file, decides the task,
makes a regression train with the mean squared error, and records in the config the files'
SHA-256 (``data_sha256``, part of the fingerprint: a resumed run refuses a changed file) and
``config.table``: the feature names, the task, the classes, the training split's mean and std.
``evaluate``, ``predict --rows`` and ``export`` read those from the run's ``config.json``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from handgrad.data import tables
from handgrad.errors import HandgradError
from handgrad.train.config import TrainConfig

CHUNK = 1 << 20


def is_table(config: TrainConfig) -> bool:
    return config.data_file is not None


def _files(config: TrainConfig) -> list[Path]:
    files = [config.data_file, config.target_file, config.test_file]
    return [Path(f) for f in files if f is not None]


def file_digest(config: TrainConfig) -> str:
    """SHA-256 over the table's files (data, targets, test), each prefixed by its role."""
    digest = hashlib.sha256()
    for role, name in (
        ("data", config.data_file),
        ("target", config.target_file),
        ("test", config.test_file),
    ):
        if name is None:
            continue
        digest.update(role.encode() + b"\0")
        try:
            with open(name, "rb") as f:
                while block := f.read(CHUNK):
                    digest.update(block)
        except FileNotFoundError:
            raise HandgradError(f"{name}: no such file") from None
        except OSError as exc:
            raise HandgradError(f"{name}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def _read(config: TrainConfig, path: str | None = None, task: str | None = None) -> tables.Table:
    if task is None and config.task != "auto":
        task = config.task
    if path is not None:  # the test file: the same kind of table as the data file
        if Path(path).suffix.lower() not in (".csv", ".npz"):
            raise HandgradError(f"{path}: a --test-file is a .csv or an .npz")
        return tables.read_table(path, config.target, task=task, min_classes=1)
    assert config.data_file is not None
    return tables.read_table(config.data_file, config.target, y_path=config.target_file, task=task)


@dataclass
class TableSplits:
    """The parts of a table, standardized with the training part's mean and std.

    ``x_*`` float64 (N, D); ``y_*`` class indices (N,) int64, or values (N,) float64.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray | None
    y_valid: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict[str, Any]


def _count(n: int, valid: int | float) -> int:
    return round(n * valid) if isinstance(valid, float) else int(valid)


def _targets(table: tables.Table, classes: np.ndarray | None, where: str) -> np.ndarray:
    """Class indices (classification, labels looked up in ``classes``) or float values."""
    if classes is None:
        return table.y.astype(np.float64)
    if table.classes is None:
        raise HandgradError(f"{where}: the target is numeric here but labels in the data file")
    keys = np.asarray(classes)
    y = table.y if keys.dtype.kind in "iu" else table.y.astype(str)
    keys = keys if keys.dtype.kind in "iu" else keys.astype(str)
    index = np.searchsorted(keys, y)
    index = np.clip(index, 0, len(keys) - 1)
    unknown = np.flatnonzero(keys[index] != y)
    if len(unknown):
        raise HandgradError(
            f"{where}: target {table.target_name!r} value {y[unknown[0]].item()!r} (record "
            f"{unknown[0]}) is not a class of the training file"
        )
    return index.astype(np.int64)


def split_table(config: TrainConfig) -> TableSplits:
    """Read the config's table and make its seeded test, validation and training parts."""
    table = _read(config)
    classes = table.classes
    n = len(table.x)
    order = np.random.default_rng(config.seed).permutation(n)
    if config.test_file is not None:
        test = _read(config, config.test_file, table.task)
        if test.x.shape[1] != table.x.shape[1] or test.feature_names != table.feature_names:
            raise HandgradError(
                f"{config.test_file}: its columns ({', '.join(test.feature_names)}) differ from "
                f"{config.data_file}'s ({', '.join(table.feature_names)})"
            )
        x_test, y_test = test.x, _targets(test, classes, str(config.test_file))
        rest = order
    else:
        n_test = round(n * config.test_fraction)
        if not 0 < n_test < n:
            raise HandgradError(
                f"{config.data_file}: {n} rows cannot give a test split of "
                f"{config.test_fraction:g}; give --test-fraction or --test-file"
            )
        test_rows, rest = order[:n_test], order[n_test:]
        x_test, y_test = table.x[test_rows], _targets(table, classes, "")[test_rows]
    y_all = _targets(table, classes, str(config.data_file))
    n_valid = _count(len(rest), config.valid)
    if n_valid >= len(rest):
        raise HandgradError(
            f"{config.data_file}: valid {config.valid} leaves no training rows of the "
            f"{len(rest)} left after the test split; give a smaller --valid (e.g. 0.2)"
        )
    valid_rows, train_rows = rest[:n_valid], rest[n_valid:]
    x_train = table.x[train_rows]
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    if classes is not None:
        seen = np.unique(y_all[train_rows])
        if len(seen) < 2:
            raise HandgradError(
                f"{config.data_file}: the training split holds one class of target "
                f"{table.target_name!r}; classification needs at least two"
            )
    info = {
        "task": table.task,
        "feature_names": list(table.feature_names),
        "target": table.target_name,
        "classes": None if classes is None else [_plain(c) for c in classes],
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "rows": {"train": len(train_rows), "valid": n_valid, "test": len(x_test)},
    }

    def scaled(x: np.ndarray) -> np.ndarray:
        return (x - mean) / std

    return TableSplits(
        x_train=scaled(x_train),
        y_train=y_all[train_rows],
        x_valid=scaled(table.x[valid_rows]) if n_valid else None,
        y_valid=y_all[valid_rows] if n_valid else None,
        x_test=scaled(x_test),
        y_test=y_test,
        info=info,
    )


def _plain(value: Any) -> Any:
    """A label as JSON keeps it: a Python int, float or str."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return str(value)


def n_outputs(info: dict[str, Any]) -> int:
    """The model's output width: the class count, or 1 for regression."""
    return 1 if info["task"] == "regression" else len(info["classes"])


def check_model_fits(config: TrainConfig, info: dict[str, Any]) -> None:
    """The model's input and output widths fit the table (a one-line ValueError if not)."""
    from handgrad.nn import parse_sizes

    widths = parse_sizes(config.model)
    d, k = len(info["feature_names"]), n_outputs(info)
    if widths[0] != d or widths[-1] != k:
        hidden = "-".join(str(w) for w in widths[1:-1]) or "64"
        what = "regression (1 output)" if k == 1 else f"{k} classes"
        raise ValueError(
            f"model {config.model}: {Path(str(config.data_file)).name} has {d} features and "
            f"{what}; use --model {d}-{hidden}-{k}"
        )


def resolve_table(config: TrainConfig) -> TrainConfig:
    """A fresh table run's config with its files' paths made absolute, its SHA-256, its task
    and standardization recorded (``config.table``), and the loss of a regression ``mse``
    (the default ``cross_entropy`` cannot fit values). A config without a table is returned
    as it is."""
    if not is_table(config):
        return config
    paths = {
        name: str(Path(value).resolve())
        for name in ("data_file", "target_file", "test_file")
        if (value := getattr(config, name)) is not None
    }
    config = config.replace(**paths, data_sha256=None, table={})
    config.validate()
    digest = file_digest(config)
    info = split_table(config).info
    changes: dict[str, Any] = {"data_sha256": digest, "table": info, "task": info["task"]}
    if info["task"] == "regression" and config.loss == "cross_entropy":
        changes["loss"] = "mse"
    config = config.replace(**changes)
    check_model_fits(config, info)
    return config


def table_info(config: TrainConfig) -> dict[str, Any]:
    """The recorded layout and standardization (read from the file if not recorded)."""
    if config.table:
        return config.table
    return split_table(config).info


def check_digest(config: TrainConfig) -> None:
    """Refuse a table file changed since the run recorded its SHA-256."""
    if config.data_sha256 is None:
        return
    now = file_digest(config)
    if now != config.data_sha256:
        names = ", ".join(str(p) for p in _files(config))
        raise HandgradError(
            f"{names}: changed since the run started (SHA-256 {now[:12]}..., the run recorded "
            f"{config.data_sha256[:12]}...); a run continues only on its own data"
        )


# -- rows to predict ------------------------------------------------------------------------
def read_rows(path: str | Path, info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows to predict, as the training features (N, D) float64 (not yet standardized), and
    the target column's values if the file has it (else None).

    A ``.csv`` with a header naming every feature (any order; the target column may be there;
    other columns are an error); an ``.npy`` (N, D); an ``.npz`` with ``x`` (and maybe ``y``).
    """
    path = Path(path)
    names: list[str] = info["feature_names"]
    suffix = path.suffix.lower()
    if suffix == ".npy":
        tables._check_size(path)
        x = tables._checked_array(path, str(path), path.read_bytes(), 2)
        x = tables._features(path, str(path), x)
        y = None
    elif suffix == ".npz":
        t = tables.read_npz(path, task=info["task"])
        x, y = t.x, t.y
    elif suffix == ".csv":
        x, y = _read_rows_csv(path, names, info["target"])
    else:
        raise HandgradError(f"{path}: rows are a .csv, .npy or .npz file")
    if x.shape[1] != len(names):
        raise HandgradError(
            f"{path}: {x.shape[1]} columns of features; the run's model takes {len(names)}"
        )
    return x, y


def _read_rows_csv(
    path: Path, names: list[str], target: str
) -> tuple[np.ndarray, np.ndarray | None]:
    header, reader = tables.open_csv(path)
    missing = [n for n in names if n not in header]
    if missing:
        raise HandgradError(f"{path}: no column {missing[0]!r}; the run's features are "
                            f"{', '.join(names)}")  # fmt: skip
    extra = [h for h in header if h not in names and h != target]
    if extra:
        raise HandgradError(f"{path}: column {extra[0]!r} is not a feature of the run")
    columns = [header.index(n) for n in names]
    t = header.index(target) if target in header else None
    xs, ys = tables.csv_values(path, reader, header, columns, t)
    return np.array(xs, dtype=np.float64), (np.array(ys) if t is not None else None)


def standardize(x: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """``(x - mean) / std`` with the training split's recorded figures."""
    return (x - np.asarray(info["mean"])) / np.asarray(info["std"])


def r2_score(predicted: np.ndarray, truth: np.ndarray) -> float:
    """The coefficient of determination ``1 - Σ(y - ŷ)² / Σ(y - ȳ)²`` (nan for constant y)."""
    ss_res = float(((truth - predicted) ** 2).sum())
    ss_tot = float(((truth - truth.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
