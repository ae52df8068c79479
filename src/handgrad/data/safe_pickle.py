"""Read ``mnist.pkl.gz`` (the Nielsen / deeplearning.net / fastai format) without running code.

A pickle can name any importable callable and call it while loading, so ``pickle.load`` on a
downloaded file runs whatever the file says. The restricted unpickler here resolves only the
handful of names that rebuilding numpy arrays needs; any other name stops the load before
anything is called, with an error naming the file and the refused object.

The file itself is a Python 2 pickle (hence ``encoding='latin1'``) of
``((x_train, y_train), (x_valid, y_valid), (x_test, y_test))``: float32 pixels ``(N, 784)`` in
``[0, 255/256]`` (the uint8 values divided by 256) and int64 labels ``(N,)``, with
N = 50,000 / 10,000 / 10,000 (train is the first 50,000 official training images, valid the
last 10,000, test the official test set).
"""

from __future__ import annotations

import codecs
import importlib
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from handgrad.data.idx import read_bytes
from handgrad.errors import HandgradError


def _numpy_core(module: str, name: str) -> Any:
    """``numpy._core.<module>.<name>`` on numpy 2, ``numpy.core.<module>.<name>`` on numpy 1."""
    try:
        return getattr(importlib.import_module(f"numpy._core.{module}"), name)
    except ImportError:  # numpy < 2
        return getattr(importlib.import_module(f"numpy.core.{module}"), name)


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, limited to latin-1."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} refused")
    return obj.encode("latin-1", errors)


def _allowed() -> dict[tuple[str, str], Callable[..., Any]]:
    reconstruct = _numpy_core("multiarray", "_reconstruct")
    frombuffer = _numpy_core("numeric", "_frombuffer")
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


class RefusedObject(pickle.UnpicklingError):
    """The pickle asked for a global that is not part of a numpy array."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals numpy arrays need; all else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed()
        if (module, name) not in allowed:
            raise RefusedObject(f"{module}.{name}")
        return allowed[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedObject(f"persistent id {pid!r}")


def safe_loads(data: bytes, name: str = "<bytes>") -> Any:
    """Unpickle ``data`` allowing only numpy arrays, numbers, strings, tuples, lists, dicts.

    Object arrays are refused after loading too, since their elements could be anything.

    Raises:
        HandgradError: the pickle names a refused object (nothing of it was called), or the
            data is not a valid pickle.
    """
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RefusedObject as exc:
        raise HandgradError(
            f"{name}: refused to load: the pickle asks for {exc}, which is not part of a numpy "
            "array (only arrays are allowed; nothing was run)"
        ) from None
    except Exception as exc:  # any failure to parse untrusted bytes is a bad file
        raise HandgradError(f"{name}: not a valid pickle of arrays ({exc})") from None
    _refuse_object_arrays(obj, name)
    return obj


def _refuse_object_arrays(obj: Any, name: str) -> None:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray) and item.dtype.hasobject:
            raise HandgradError(f"{name}: refused: holds an array of Python objects")
        if isinstance(item, tuple | list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())


def _check_split(pair: Any, split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise HandgradError(
            f"{name}: {split} part should be a pair (x, y), found {type(pair).__name__}"
        )
    x, y = pair
    for part, value in ((f"x_{split}", x), (f"y_{split}", y)):
        if not isinstance(value, np.ndarray):
            raise HandgradError(
                f"{name}: {part} is a {type(value).__name__}, expected a numpy array"
            )
    if x.ndim != 2 or x.shape[1] != 784:
        raise HandgradError(
            f"{name}: x_{split} has shape {x.shape}, expected (N, 784) (28x28 images)"
        )
    if x.dtype.kind != "f":
        raise HandgradError(f"{name}: x_{split} has dtype {x.dtype}, expected floating point")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise HandgradError(
            f"{name}: y_{split} has shape {y.shape} and dtype {y.dtype}, expected (N,) integers"
        )
    if len(x) != len(y):
        raise HandgradError(f"{name}: {len(x)} images but {len(y)} labels in {split}")
    bad = np.flatnonzero((y < 0) | (y > 9))
    if bad.size:
        i = int(bad[0])
        raise HandgradError(f"{name}: y_{split} label {int(y[i])} at index {i} is outside 0-9")
    return x, y


Split = tuple[np.ndarray, np.ndarray]


def load_pickle_mnist(path: str | os.PathLike[str]) -> tuple[Split, Split, Split]:
    """Load ``mnist.pkl.gz`` (gzipped or not) through the restricted unpickler.

    Returns:
        ``((x_train, y_train), (x_valid, y_valid), (x_test, y_test))`` as stored: for the
        published file, float32 ``(50000, 784)``, ``(10000, 784)``, ``(10000, 784)`` in
        ``[0, 255/256]`` and int64 ``(N,)`` labels in 0-9.

    Raises:
        HandgradError: missing or corrupt file, a refused object, or a layout other than three
            (x, y) pairs of (N, 784) float and (N,) integer arrays.
    """
    path = Path(path)
    obj = safe_loads(read_bytes(path), path.name)
    if not isinstance(obj, tuple | list) or len(obj) != 3:
        kind = type(obj).__name__ + (f" of length {len(obj)}" if hasattr(obj, "__len__") else "")
        raise HandgradError(
            f"{path.name}: expected ((x_train, y_train), (x_valid, y_valid), (x_test, y_test)), "
            f"found a {kind}"
        )
    train, valid, test = (
        _check_split(part, split, path.name)
        for part, split in zip(obj, ("train", "valid", "test"), strict=True)
    )
    return train, valid, test
