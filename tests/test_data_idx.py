"""IDX reading: formats (gz or raw, by magic bytes), dtypes, and every malformed file."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from handgrad.data import load_mnist_arrays, read_idx, write_idx
from handgrad.data.idx import idx_bytes, parse_mnist, read_bytes
from handgrad.errors import HandgradError
from tests.data_fixtures import isolate, raw_idx, tiny_arrays, write_mnist_dir


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28),
        np.array([0, 9, 3], dtype=np.uint8),
        np.arange(-6, 6, dtype=np.int32).reshape(3, 4),
        np.linspace(-1, 1, 10, dtype=np.float32),
        np.linspace(-1, 1, 6, dtype=np.float64).reshape(1, 2, 3),
        np.array([-3, 4], dtype=np.int16),
        np.array([-3, 4], dtype=np.int8),
    ],
    ids=["u8-images", "u8-labels", "i4", "f4", "f8", "i2", "i1"],
)
def test_roundtrip(tmp_path: Path, array: np.ndarray, compress: bool) -> None:
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    back = read_idx(path)
    assert back.shape == array.shape
    assert back.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert [p.name for p in tmp_path.iterdir()] == ["a.idx"]  # no temporary file left


def test_gzip_is_decided_by_content_not_name(tmp_path: Path) -> None:
    labels = np.array([1, 2, 3], dtype=np.uint8)
    raw_named_gz = tmp_path / "labels.gz"
    raw_named_gz.write_bytes(idx_bytes(labels))
    gz_named_raw = tmp_path / "labels-idx1-ubyte"
    gz_named_raw.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(raw_named_gz), labels)
    np.testing.assert_array_equal(read_idx(gz_named_raw), labels)


def test_header_is_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    np.testing.assert_array_equal(read_idx(path), [7, 8, 9])


@pytest.mark.parametrize("compress", [True, False])
def test_load_tiny_dir(tmp_path: Path, compress: bool) -> None:
    arrays, md5s = write_mnist_dir(tmp_path / "mnist", compress=compress)
    loaded = load_mnist_arrays(tmp_path / "mnist", download=False, checksums=md5s)
    assert set(loaded) == {"train_images", "train_labels", "test_images", "test_labels"}
    for key, array in arrays.items():
        assert loaded[key].dtype == np.uint8
        np.testing.assert_array_equal(loaded[key], array)


def _expect_error(call: object, *fragments: str) -> str:
    with pytest.raises(HandgradError) as info:
        call()  # type: ignore[operator]
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(lambda: read_idx(tmp_path / "nope.gz"), "nope.gz", "no such file")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    _expect_error(lambda: read_idx(tmp_path), str(tmp_path), "is a directory")


def test_truncated_gzip(tmp_path: Path) -> None:
    data = gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8)))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(data[: len(data) // 2])
    _expect_error(lambda: read_idx(path), "train-images-idx3-ubyte.gz", "truncated gzip")


def test_corrupt_gzip(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8))))
    data[12:20] = b"\xff" * 8
    path = tmp_path / "labels.gz"
    path.write_bytes(bytes(data))
    _expect_error(lambda: read_idx(path), "labels.gz", "gzip")


def test_not_gzip_not_idx(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_text("<html><body>404 Not Found</body></html>")
    _expect_error(
        lambda: read_idx(path), "train-images-idx3-ubyte.gz", "not a gzip file", "not an IDX"
    )


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\x00\x00", "too short"),
        (raw_idx(0x00000703, (1, 1, 1), b"\x00"), "wrong IDX magic number 1795"),
        (raw_idx(0x00000800, (), b""), "wrong IDX magic number 2048"),
        (bytes([0, 0, 8, 3, 0, 0]), "truncated IDX header"),
        (raw_idx(2051, (2, 28, 28), bytes(100)), "truncated: header says (2, 28, 28)"),
        (raw_idx(2049, (3,), bytes(5)), "2 unexpected bytes"),
        (raw_idx(2049, (-1,), b""), "negative size"),
        (raw_idx(2051, (2**31 - 1,) * 3, bytes(8)), "truncated: header says"),
    ],
    ids=["short", "type", "ndim0", "header", "data", "trailing", "negative", "huge"],
)
def test_malformed_idx(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "bad-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(content))
    _expect_error(lambda: read_idx(path), "bad-idx1-ubyte.gz", fragment)


def test_wrong_magic_for_images() -> None:
    content = idx_bytes(np.zeros(5, np.uint8))  # a labels file (2049)
    _expect_error(
        lambda: parse_mnist(content, "train-images-idx3-ubyte.gz", "images"),
        "train-images-idx3-ubyte.gz: wrong IDX magic number 2049, expected 2051 (images)",
    )


def test_wrong_magic_for_labels() -> None:
    content = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    _expect_error(
        lambda: parse_mnist(content, "t10k-labels-idx1-ubyte.gz", "labels"),
        "wrong IDX magic number 2051, expected 2049 (labels)",
    )


def _bad_dir(tmp_path: Path, **replace: np.ndarray) -> Path:
    arrays = tiny_arrays()
    arrays.update(replace)
    write_mnist_dir(tmp_path / "bad", arrays)
    return tmp_path / "bad"


def test_count_mismatch(tmp_path: Path) -> None:
    directory = _bad_dir(tmp_path, train_labels=np.zeros(11, np.uint8))
    _expect_error(
        lambda: load_mnist_arrays(directory),
        "train-images-idx3-ubyte.gz: 12 images but train-labels-idx1-ubyte.gz has 11 labels",
    )


def test_label_outside_range(tmp_path: Path) -> None:
    labels = np.arange(6, dtype=np.uint8)
    labels[4] = 12
    directory = _bad_dir(tmp_path, test_labels=labels)
    _expect_error(
        lambda: load_mnist_arrays(directory),
        "t10k-labels-idx1-ubyte.gz: label 12 at index 4 is outside 0-9",
    )


def test_images_not_28x28(tmp_path: Path) -> None:
    directory = _bad_dir(tmp_path, train_images=np.zeros((12, 32, 32), np.uint8))
    _expect_error(
        lambda: load_mnist_arrays(directory),
        "train-images-idx3-ubyte.gz: images are 32x32, expected 28x28",
    )


def test_checksum_mismatch(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path / "tiny")
    message = _expect_error(
        lambda: load_mnist_arrays(tmp_path / "tiny"),
        "train-images-idx3-ubyte.gz",
        "checksum mismatch",
        "expected 6bbc9ace898e44ae57da46a324031adb",
    )
    assert "delete it" not in message  # not in the cache: nothing to re-download


def test_missing_directory(tmp_path: Path) -> None:
    _expect_error(lambda: load_mnist_arrays(tmp_path / "nowhere"), "nowhere", "no such directory")


def test_missing_one_file(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    _expect_error(lambda: load_mnist_arrays(tmp_path / "d"), "missing t10k-labels-idx1-ubyte.gz")


def test_max_size_refuses_without_full_decompression(tmp_path: Path) -> None:
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(bytes(10_000_000)))  # 10 MB of zeros in about 10 kB
    with pytest.raises(
        HandgradError,
        match=r"bomb\.gz: uncompressed content larger than the limit of 1,000 bytes",
    ):
        read_bytes(path, max_size=1000)
    assert len(read_bytes(path, max_size=10_000_000)) == 10_000_000
    truncated = tmp_path / "t.gz"
    truncated.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(HandgradError, match="truncated gzip"):
        read_bytes(truncated, max_size=20_000_000)
