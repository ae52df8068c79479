"""Memory bombs in data files: pickles, gzip streams, huge files and /dev/zero, each refused early
with one line that names the file and states the limit."""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from handgrad import limits
from handgrad.cli.main import main
from handgrad.data import load_pickle_mnist, safe_pickle
from handgrad.data.idx import read_bytes, read_idx
from handgrad.data.safe_pickle import safe_loads
from handgrad.data.sources import read_mnist_dir
from handgrad.errors import HandgradError
from tests.data_fixtures import isolate, tiny_arrays, write_mnist_dir

try:
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate(monkeypatch, tmp_path)


def one_line(exc: pytest.ExceptionInfo[HandgradError], *fragments: str) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def cli_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], *fragments: str) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


class Reduce:
    """Pickles as ``func(*args)`` (then BUILD with ``state`` if given)."""

    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        if self.state is None:
            return (self.func, self.args)
        return (self.func, self.args, self.state)


def labels(n: int = 3) -> np.ndarray:
    return np.arange(n, dtype=np.int64) % 10


def layout(x_train: Any) -> tuple[Any, ...]:
    small = (np.zeros((2, 784), np.float32), labels(2))
    return ((x_train, labels(3)), small, small)


def write_gz(path: Path, obj: Any, protocol: int = 2) -> Path:
    path.write_bytes(gzip.compress(pickle.dumps(obj, protocol=protocol)))
    return path


# -- pickles --------------------------------------------------------------------------------
def test_ndarray_constructor_bomb_is_refused(tmp_path: Path) -> None:
    # numpy.ndarray((100000, 8000)) would be 6.4 GB of float64, from a few hundred bytes.
    path = write_gz(tmp_path / "mnist.pkl.gz", layout(Reduce(np.ndarray, ((100000, 8000),))))
    assert path.stat().st_size < 400
    tracemalloc.start()
    try:
        with pytest.raises(HandgradError) as info:
            load_pickle_mnist(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    one_line(info, "mnist.pkl.gz: refused to load", "numpy.ndarray called directly")
    assert peak < 10 * 2**20


def test_small_ndarray_constructor_never_returns_leftover_memory(tmp_path: Path) -> None:
    for obj in (Reduce(np.ndarray, ((3,), "i8")), Reduce(np.ndarray, ((3, 784), "f4"))):
        with pytest.raises(HandgradError) as info:
            safe_loads(pickle.dumps(obj, protocol=2), "x.pkl")
        one_line(info, "x.pkl: refused to load", "numpy.ndarray called directly")


def test_bytes_is_allowed_empty_only() -> None:
    with pytest.raises(HandgradError) as info:
        safe_loads(pickle.dumps(Reduce(bytes, (10**10,)), protocol=2), "x.pkl")
    one_line(info, "bytes(10000000000,) (only bytes() is allowed)")


def test_ndarray_through_newobj_is_refused() -> None:
    data = b"\x80\x02cnumpy\nndarray\nK\x03\x85\x81."  # ndarray.__new__(ndarray, 3)
    with pytest.raises(HandgradError) as info:
        safe_loads(data, "x.pkl")
    one_line(info, "numpy.ndarray called directly")


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        ((1, (1000, 784), np.dtype("f4"), False, b"x" * 10), "needs 3,136,000 bytes of data"),
        ((1, (10**12,), np.dtype("f8"), False, b""), "needs 8,000,000,000,000 bytes"),
        ((1, (3,), np.dtype("u1"), False, b"abcd"), "needs 3 bytes of data, the pickle holds 4"),
        ((1, (-1,), np.dtype("u1"), False, b""), "shape (-1,)"),
        ((1, "abc", np.dtype("u1"), False, b""), "shape 'abc'"),
        ((2, (3,), np.dtype("u1"), False, b"abc"), "array state version 2"),
        ((1, (3,), "u1", False, b"abc"), "dtype is a str"),
    ],
)  # fmt: skip
def test_array_state_is_checked_against_its_data(state: tuple[Any, ...], fragment: str) -> None:
    obj = Reduce(_reconstruct, (np.ndarray, (0,), b"b"), state)
    with pytest.raises(HandgradError) as info:
        safe_loads(pickle.dumps(obj, protocol=4), "x.pkl")  # 2 would store b"" as bytes()
    one_line(info, "x.pkl: refused to load", fragment)


def test_frombuffer_checks_its_data_too() -> None:
    obj = Reduce(_frombuffer, (bytearray(8), np.dtype("f4"), (1000,), "C"))
    with pytest.raises(HandgradError) as info:
        safe_loads(pickle.dumps(obj, protocol=5), "x.pkl")
    one_line(info, "needs 4,000 bytes of data, the pickle holds 8")


@pytest.mark.parametrize(
    ("args", "state", "fragment"),
    [
        (("f4", False, True), (3, "<", (np.dtype("f4"), (9,)), None, None, -1, -1, 0), "order"),
        (("f4", False, True), (3, "<", None, ("a",), None, -1, -1, 0), "only a byte order"),
        (("V4000000", False, True), None, "numpy.dtype('V4000000')"),
        (("O8", False, True), None, "array of Python objects"),
        (("f3", False, True), None, "not a numpy type"),
    ],
)  # fmt: skip
def test_dtypes_are_plain_number_types(args: tuple[Any, ...], state: Any, fragment: str) -> None:
    obj = Reduce(np.dtype, args, state)
    with pytest.raises(HandgradError) as info:
        safe_loads(pickle.dumps(obj, protocol=2), "x.pkl")
    one_line(info, fragment)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_real_arrays_of_every_layout_round_trip(protocol: int) -> None:
    rng = np.random.default_rng(1)
    arrays = [
        rng.standard_normal((3, 4)).astype(">f4"),
        np.asfortranarray(rng.standard_normal((5, 2))),
        np.zeros((0, 784), np.float32),
        np.array([True, False]),
        rng.integers(0, 255, (2, 3, 4), dtype=np.uint8),
        np.arange(6, dtype=np.int64).reshape(2, 3)[:, ::2],  # a non-contiguous view
    ]
    loaded = safe_loads(pickle.dumps(arrays, protocol=protocol), "x.pkl")
    for got, want in zip(loaded, arrays, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert got.flags.writeable and got.flags.owndata


def test_deep_nesting_and_cycles_are_refused() -> None:
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    with pytest.raises(HandgradError) as info:
        safe_loads(pickle.dumps(deep, protocol=2), "x.pkl")
    one_line(info, "nested more than 100 levels deep")
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(HandgradError) as info:
        safe_loads(pickle.dumps(cycle, protocol=2), "x.pkl")
    one_line(info, "nested more than 100 levels deep")


def test_pickle_bomb_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_gz(tmp_path / "mnist.pkl.gz", layout(Reduce(np.ndarray, ((100000, 8000),))))
    cli_one_line(capsys, ["data", "info", "--pickle", str(path)], "mnist.pkl.gz: refused to load")


def test_pickle_from_dev_zero_is_refused_at_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    cli_one_line(
        capsys,
        ["data", "info", "--pickle", "/dev/zero"],
        "/dev/zero: file larger than the limit of",
        "for a pickle",
    )


def test_pickle_gzip_bomb_is_refused_while_inflating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safe_pickle, "MAX_PICKLE_BYTES", 4 * 2**20)
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(bytes(40 * 2**20)))
    with pytest.raises(HandgradError) as info:
        load_pickle_mnist(path)
    one_line(info, "mnist.pkl.gz: uncompressed content larger than the limit of 4 MiB")


# -- IDX files and gzip streams -------------------------------------------------------------
def zero_bomb(path: Path, inflated: int) -> Path:
    """A gzip file of ``inflated`` zero bytes, written without holding them."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip header and trailer
    chunk = bytes(2**20)
    with open(path, "wb") as f:
        for _ in range(inflated // len(chunk)):
            f.write(compressor.compress(chunk))
        f.write(compressor.flush())
    return path


def test_gzip_bomb_in_data_dir_is_refused_early(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    write_mnist_dir(directory)
    bomb = zero_bomb(directory / "train-images-idx3-ubyte.gz", 512 * 2**20)
    assert bomb.stat().st_size < 1 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(HandgradError) as info:
            read_mnist_dir(directory)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    one_line(
        info,
        f"{bomb}: uncompressed content larger than the limit of 64 MiB (67,108,864 bytes)",
        "for an IDX file",
    )
    assert peak < 80 * 2**20  # refused at 64 MiB, not after inflating 512 MiB


def test_gzip_bomb_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "d"
    write_mnist_dir(directory)
    zero_bomb(directory / "t10k-images-idx3-ubyte.gz", 100 * 2**20)
    cli_one_line(
        capsys,
        ["data", "info", "--data", str(directory)],
        "t10k-images-idx3-ubyte.gz: uncompressed content larger than the limit of 64 MiB",
    )


def test_huge_raw_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    with open(path, "wb") as f:
        f.truncate(2**40)  # a sparse terabyte: refused from its size, never read
    with pytest.raises(HandgradError) as info:
        read_idx(path)
    one_line(info, f"{path}: file larger than the limit of", "for an IDX file")


def test_dev_zero_as_idx_is_refused() -> None:
    with pytest.raises(HandgradError) as info:
        read_bytes("/dev/zero")
    one_line(info, "/dev/zero: file larger than the limit of", "for an IDX file")


def test_limit_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(gzip.compress(bytes(1000)))
    assert read_bytes(path, max_size=1000) == bytes(1000)
    with pytest.raises(HandgradError) as info:
        read_bytes(path, max_size=999)
    one_line(info, "uncompressed content larger than the limit of 999 bytes")
    path.write_bytes(bytes(1000))
    assert read_bytes(path, max_size=1000) == bytes(1000)
    with pytest.raises(HandgradError) as info:
        read_bytes(path, max_size=999)
    one_line(info, "file larger than the limit of 999 bytes")


def test_full_size_mnist_files_are_within_the_limit(tmp_path: Path) -> None:
    arrays = tiny_arrays()
    arrays["train_images"] = np.zeros((60000, 28, 28), np.uint8)  # as large as the real file
    arrays["train_labels"] = np.zeros(60000, np.uint8)
    write_mnist_dir(tmp_path / "d", arrays)
    loaded, _ = read_mnist_dir(tmp_path / "d")
    assert loaded["train_images"].shape == (60000, 28, 28)


# -- configs --------------------------------------------------------------------------------
def test_config_text_limits(tmp_path: Path) -> None:
    good = tmp_path / "c.json"
    good.write_text('{"epochs": 2}')
    assert limits.read_config_text(good) == '{"epochs": 2}'
    with pytest.raises(HandgradError) as info:
        limits.read_config_text("/dev/zero")
    one_line(info, "/dev/zero: file larger than the limit of 1 MiB (1,048,576 bytes) for a config")
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(2**40)
    with pytest.raises(HandgradError) as info:
        limits.read_config_text(huge)
    one_line(info, f"{huge}: file larger than the limit of 1 MiB")
    binary = tmp_path / "b.json"
    binary.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(HandgradError) as info:
        limits.read_config_text(binary)
    one_line(info, f"{binary}: not UTF-8 text (byte 7)")
    with pytest.raises(HandgradError) as info:
        limits.read_config_text(tmp_path / "none.json")
    one_line(info, "none.json: no such file")
    with pytest.raises(HandgradError) as info:
        limits.read_config_text(tmp_path)
    one_line(info, "is a directory")


def test_a_pipe_is_read_up_to_the_limit(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = (
        "import sys\n"
        "try:\n"
        f"    open(sys.argv[1], 'wb').write(b' ' * {limits.MAX_CONFIG_BYTES + 10})\n"
        "except BrokenPipeError:\n"
        "    pass\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code, str(fifo)], stderr=subprocess.DEVNULL)
    try:
        with pytest.raises(HandgradError) as info:
            limits.read_config_text(fifo)
        one_line(info, "file larger than the limit of 1 MiB")
    finally:
        try:
            writer.wait(timeout=20)
        except subprocess.TimeoutExpired:
            writer.kill()
            writer.wait()
