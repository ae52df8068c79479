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
import io
import math
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from handgrad.data.idx import read_bytes
from handgrad.errors import HandgradError
from handgrad.limits import MAX_PICKLE_BYTES


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, limited to latin-1."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} refused")
    return obj.encode("latin-1", errors)


def _empty_bytes(*args: object) -> bytes:
    """``bytes()``, as protocol 2 writes ``b""`` (an empty array's data); ``bytes(n)`` would
    allocate ``n`` bytes at the file's word, so any argument is refused."""
    if args:
        raise BadArray(f"bytes{args!r} (only bytes() is allowed)")
    return b""


class RefusedObject(pickle.UnpicklingError):
    """The pickle asked for a global that is not part of a numpy array."""


class BadArray(pickle.UnpicklingError):
    """The pickle describes an array in a way that is not "these bytes, of this shape"."""


# -- arrays built from their data only -----------------------------------------------------
# numpy pickles an array as ``_reconstruct(ndarray, (0,), b"b")`` followed by BUILD with the
# state ``(version, shape, dtype, is_fortran, rawdata)`` (protocols 0-4), or as
# ``_frombuffer(buffer, dtype, shape, order)`` (protocol 5); a dtype as ``dtype(code, align,
# copy)`` followed by BUILD with ``(3, byteorder, None, None, None, -1, -1, 0)``. The real
# numpy callables would also accept ``ndarray(shape)`` (memory allocated and never filled: a
# 361-byte file can ask for gigabytes, or get back leftover memory) and shapes that do not
# match the data. The stand-ins below accept only the forms above, check every shape against
# the bytes present before anything is allocated, and copy those bytes into a new array.

_DTYPE_CODE = re.compile(r"[biufc][0-9]{1,2}")
_MAX_NDIM = 32


class _DtypeSpec:
    """What ``numpy.dtype(code, align, copy)`` stands for: a plain number type, no fields."""

    def __init__(self, code: object) -> None:
        if code == "O8" or code == "O4":
            raise BadArray("an array of Python objects (dtype object)")
        if not isinstance(code, str) or not _DTYPE_CODE.fullmatch(code):
            raise BadArray(f"numpy.dtype({code!r}) (only plain number types are allowed)")
        try:
            self.dtype = np.dtype(code)
        except TypeError:
            raise BadArray(f"numpy.dtype({code!r}) (not a numpy type)") from None
        self.built = False

    def __setstate__(self, state: object) -> None:
        ok = (
            not self.built
            and isinstance(state, tuple)
            and len(state) == 8
            and state[0] == 3
            and state[1] in ("<", ">", "|", "=")
            and state[2:5] == (None, None, None)
            and state[5:8] == (-1, -1, 0)
        )
        if not ok or not isinstance(state, tuple):
            raise BadArray(f"dtype state {state!r} (only a byte order may be set)")
        if state[1] != "|":
            self.dtype = self.dtype.newbyteorder(state[1])
        self.built = True


def _dtype(code: object, align: object = False, copy: object = True) -> _DtypeSpec:
    return _DtypeSpec(code)


def _as_dtype(value: object) -> np.dtype:
    if not isinstance(value, _DtypeSpec):
        raise BadArray(f"an array whose dtype is a {type(value).__name__}")
    return value.dtype


def _as_shape(value: object) -> tuple[int, ...]:
    ok = (
        isinstance(value, tuple)
        and len(value) <= _MAX_NDIM
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)
    )
    if not ok:
        raise BadArray(f"an array of shape {value!r} (expected a tuple of sizes >= 0)")
    return value  # type: ignore[return-value]


def _from_data(shape: object, dtype: object, data: object, order: str) -> np.ndarray:
    """A new array of ``shape`` filled from ``data``, whose size must match exactly."""
    shape_ = _as_shape(shape)
    dtype_ = _as_dtype(dtype)
    if isinstance(data, str):  # a Python 2 str, decoded by encoding="latin1"
        data = data.encode("latin-1")
    if not isinstance(data, bytes | bytearray):
        raise BadArray(f"array data is a {type(data).__name__}, expected bytes")
    needed = math.prod(shape_) * dtype_.itemsize  # Python ints: no overflow
    if len(data) != needed:
        raise BadArray(
            f"an array of shape {shape_} and dtype {dtype_} needs {needed:,} bytes of data, "
            f"the pickle holds {len(data):,}"
        )
    flat = np.frombuffer(bytes(data), dtype=dtype_)
    return flat.reshape(shape_, order="F" if order == "F" else "C").copy(order="K")


class _ArraySpec:
    """What ``_reconstruct(ndarray, (0,), b"b")`` stands for, until BUILD gives its data."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise BadArray("an array state that is not (version, shape, dtype, fortran, data)")
        if len(state) == 5:
            if state[0] != 1:
                raise BadArray(f"array state version {state[0]!r}")
            state = state[1:]
        shape, dtype, fortran, data = state
        if not isinstance(fortran, bool | int):
            raise BadArray(f"array order flag {fortran!r}")
        self.array = _from_data(shape, dtype, data, "F" if fortran else "C")


def _reconstruct(cls: object, shape: object, typecode: object) -> _ArraySpec:
    if cls is not _NdarrayName or shape != (0,) or typecode not in (b"b", "b"):
        raise BadArray(
            f"_reconstruct({getattr(cls, '__name__', cls)!r}, {shape!r}, {typecode!r}) "
            "(only the form numpy writes is allowed)"
        )
    return _ArraySpec()


def _frombuffer(buf: object, dtype: object, shape: object, order: object) -> np.ndarray:
    if order not in ("C", "F"):
        raise BadArray(f"array order {order!r}")
    return _from_data(shape, dtype, buf, str(order))


class _NdarrayName:
    """``numpy.ndarray`` as a name in a pickle: an argument of ``_reconstruct``, never called.

    Called, ``ndarray(shape)`` would allocate memory that no data of the file fills.
    """

    def __new__(cls, *args: object, **kwargs: object) -> _NdarrayName:
        raise BadArray(
            "numpy.ndarray called directly, which allocates an array not filled from the "
            "file's data"
        )


def _allowed() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NdarrayName,
        ("numpy", "dtype"): _dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("__builtin__", "bytes"): _empty_bytes,
        ("builtins", "bytes"): _empty_bytes,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    return allowed


_ALLOWED = _allowed()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals numpy arrays need; all else is refused.

    Arrays come back as stand-ins (see above) that :func:`safe_loads` turns into arrays.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise RefusedObject(f"{module}.{name}")
        return _ALLOWED[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedObject(f"persistent id {pid!r}")


_MAX_DEPTH = 100


def _materialize(obj: Any, name: str, depth: int = 0) -> Any:
    """``obj`` with every stand-in replaced by its array (or dtype)."""
    if depth > _MAX_DEPTH:
        raise HandgradError(f"{name}: refused: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(obj, _ArraySpec):
        if obj.array is None:
            raise HandgradError(f"{name}: refused: an array without its data")
        return obj.array
    if isinstance(obj, _DtypeSpec):
        return obj.dtype
    if isinstance(obj, tuple):
        return tuple(_materialize(item, name, depth + 1) for item in obj)
    if isinstance(obj, list):
        return [_materialize(item, name, depth + 1) for item in obj]
    if isinstance(obj, dict):
        return {k: _materialize(v, name, depth + 1) for k, v in obj.items()}
    return obj


def safe_loads(data: bytes, name: str = "<bytes>") -> Any:
    """Unpickle ``data`` allowing only numpy arrays, numbers, strings, tuples, lists, dicts.

    Each array is built from the bytes the pickle holds for it, after its shape and dtype have
    been checked against their number (never ``numpy.ndarray(shape)``, never an object array).

    Raises:
        HandgradError: the pickle names a refused object (nothing of it was called), describes
            an array otherwise than by its data, or is not a valid pickle.
    """
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RefusedObject as exc:
        raise HandgradError(
            f"{name}: refused to load: the pickle asks for {exc}, which is not part of a numpy "
            "array (only arrays are allowed; nothing was run)"
        ) from None
    except BadArray as exc:
        raise HandgradError(
            f"{name}: refused to load: {exc} (only arrays stored with their data are allowed)"
        ) from None
    except Exception as exc:  # any failure to parse untrusted bytes is a bad file
        raise HandgradError(f"{name}: not a valid pickle of arrays ({exc})") from None
    return _materialize(obj, name)


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
    obj = safe_loads(read_bytes(path, max_size=MAX_PICKLE_BYTES, what="a pickle"), path.name)
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
