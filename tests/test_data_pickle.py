"""The restricted unpickler: mnist.pkl.gz layouts load; anything but arrays is refused unrun."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from handgrad.data import load_pickle_mnist
from handgrad.data.safe_pickle import safe_loads
from handgrad.errors import HandgradError


def mnist_like(n: tuple[int, int, int] = (10, 4, 3), seed: int = 0) -> tuple[Any, ...]:
    """((x_train, y_train), (x_valid, y_valid), (x_test, y_test)) as in Nielsen's file."""
    rng = np.random.default_rng(seed)
    return tuple(
        (
            (rng.integers(0, 256, (k, 784)) / np.float32(256)).astype(np.float32),
            rng.integers(0, 10, k).astype(np.int64),
        )
        for k in n
    )


class Py2StylePickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes, as cPickle did for mnist.pkl.gz."""

    dispatch: ClassVar[Any] = pickle._Pickler.dispatch.copy()
    write: Any
    memoize: Any

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj: Any) -> bytes:
    buffer = io.BytesIO()
    Py2StylePickler(buffer, protocol=2).dump(obj)
    # Python 2 era numpy named its module numpy.core, not numpy._core.
    return buffer.getvalue().replace(b"numpy._core.", b"numpy.core.")


def write(path: Path, data: bytes, *, compress: bool = True) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("make", ["p2", "p4", "p5", "py2"])
@pytest.mark.parametrize("compress", [True, False])
def test_loads_mnist_layout(tmp_path: Path, make: str, compress: bool) -> None:
    obj = mnist_like()
    data = py2_pickle(obj) if make == "py2" else pickle.dumps(obj, protocol=int(make[1]))
    if make == "py2":
        assert b"numpy.core.multiarray" in data and pickle.SHORT_BINSTRING in data
    path = write(tmp_path / "mnist.pkl.gz", data, compress=compress)
    loaded = load_pickle_mnist(path)
    for (x, y), (x0, y0) in zip(loaded, obj, strict=True):
        assert x.dtype == np.float32 and x.shape == x0.shape
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)


class Exec:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (self.code,))


class System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


class NumpyLoad:
    def __reduce__(self) -> tuple[Any, ...]:
        return (np.load, ("/etc/passwd",))


@pytest.mark.parametrize("where", ["top", "nested", "os.system", "numpy.load"])
def test_malicious_pickle_does_not_run(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').write('ran')"
    (train, valid, _) = mnist_like()
    payload: Any
    if where == "top":
        payload = Exec(code)
    elif where == "nested":
        payload = (train, valid, (train[0], Exec(code)))
    elif where == "os.system":
        payload = (train, valid, System(f"touch {marker}"))
    else:
        payload = (train, valid, NumpyLoad())
    path = write(tmp_path / "mnist.pkl.gz", pickle.dumps(payload, protocol=2))
    with pytest.raises(HandgradError) as info:
        load_pickle_mnist(path)
    message = str(info.value)
    assert message.startswith("mnist.pkl.gz: refused to load")
    assert "nothing was run" in message and "\n" not in message
    expected_name = {"top": "exec", "nested": "exec", "os.system": "system", "numpy.load": "load"}
    assert expected_name[where] in message
    assert not marker.exists()


def test_codecs_encode_limited_to_latin1() -> None:
    # _codecs.encode is allowed because protocol 2 stores bytes with it; other codecs are not.
    data = (
        b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aq\x01"
        b"X\x04\x00\x00\x00zlibq\x02\x86q\x03Rq\x04."
    )
    with pytest.raises(HandgradError, match="encoding 'zlib' refused"):
        safe_loads(data, "x.pkl")


def test_object_array_refused(tmp_path: Path) -> None:
    data = pickle.dumps(np.array([1, "a"], dtype=object), protocol=2)
    with pytest.raises(HandgradError, match="array of Python objects"):
        safe_loads(data, "obj.pkl")


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ([1, 2], "found a list of length 2"),
        ({"x": 1}, "found a dict"),
        (42, "found a int"),
        ((1, 2, 3), "train part should be a pair"),
        (((np.zeros((2, 784), np.float32), [0, 1]),) * 3, "y_train is a list"),
        (((np.zeros((2, 100), np.float32), np.zeros(2, np.int64)),) * 3, "expected (N, 784)"),
        (((np.zeros((2, 784), np.uint8), np.zeros(2, np.int64)),) * 3, "floating point"),
        (((np.zeros((2, 784), np.float32), np.zeros(3, np.int64)),) * 3, "2 images but 3 labels"),
        (
            ((np.zeros((2, 784), np.float32), np.array([0, 10])),) * 3,
            "label 10 at index 1 is outside 0-9",
        ),
        (
            ((np.zeros((2, 784), np.float32), np.zeros(2, np.float32)),) * 3,
            "expected (N,) integers",
        ),
    ],
    ids=["list", "dict", "int", "flat", "y-list", "not-784", "uint8", "count", "label", "y-f32"],
)
def test_wrong_layout(tmp_path: Path, obj: Any, fragment: str) -> None:
    path = write(tmp_path / "mnist.pkl.gz", pickle.dumps(obj, protocol=2))
    with pytest.raises(HandgradError) as info:
        load_pickle_mnist(path)
    assert str(info.value).startswith("mnist.pkl.gz: ")
    assert fragment in str(info.value)


def test_not_a_pickle(tmp_path: Path) -> None:
    path = write(tmp_path / "mnist.pkl.gz", b"hello, this is not a pickle")
    with pytest.raises(HandgradError, match=r"^mnist.pkl.gz: not a valid pickle"):
        load_pickle_mnist(path)


def test_truncated_pickle_gzip(tmp_path: Path) -> None:
    data = gzip.compress(pickle.dumps(mnist_like(), protocol=2))
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(data[:-100])
    with pytest.raises(HandgradError, match="truncated gzip"):
        load_pickle_mnist(path)


def test_missing_pickle(tmp_path: Path) -> None:
    with pytest.raises(HandgradError, match="no such file"):
        load_pickle_mnist(tmp_path / "mnist.pkl.gz")
