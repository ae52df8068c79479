"""Read and write IDX files (the MNIST format), gzipped or raw, without a loop over pixels.

IDX layout: a big-endian magic number ``0x0000TTNN`` (``TT`` the element type, ``NN`` the number
of dimensions), then ``NN`` big-endian int32 sizes, then the elements in C order. MNIST images
are magic 2051 (uint8, 3 dims), labels 2049 (uint8, 1 dim).

Every problem is a ``HandgradError`` whose message starts with the file name, e.g.
``train-images-idx3-ubyte.gz: wrong IDX magic number 2049, expected 2051 (images)``.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import secrets
import struct
import zlib
from pathlib import Path

import numpy as np

from handgrad.errors import HandgradError
from handgrad.limits import MAX_IDX_BYTES, read_limited, stored_limit, too_large

GZIP_MAGIC = b"\x1f\x8b"
IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dimension (N,)
_GUNZIP_CHUNK = 2**20

# IDX element type code -> numpy dtype (big-endian as stored).
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_bytes(
    path: str | os.PathLike[str], *, max_size: int = MAX_IDX_BYTES, what: str = "an IDX file"
) -> bytes:
    """Return the content of ``path``, gunzipped if it starts with the gzip magic bytes.

    Whether a file is gzip is decided by its first bytes, never by its name. Content larger
    than ``max_size`` (default ``MAX_IDX_BYTES``, 64 MiB; after decompression) is refused: a
    file on disk larger than that before it is read, a gzip stream as soon as its output passes
    the limit while it is being inflated, so neither ``/dev/zero`` nor a gzip bomb can exhaust
    memory.

    Raises:
        HandgradError: the file is missing or unreadable, too large (the message states the
            limit), or its gzip stream is truncated or corrupt.
    """
    path = Path(path)
    data = read_limited(path, stored_limit(max_size), what)
    if not data.startswith(GZIP_MAGIC):
        if len(data) > max_size:
            raise HandgradError(too_large(path, what, max_size))
        return data
    try:
        return _gunzip(data, max_size, path, what)
    except EOFError:
        raise HandgradError(
            f"{path}: truncated gzip file (the stream ends early); download it again"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise HandgradError(f"{path}: corrupt gzip data ({exc})") from None


def _gunzip(data: bytes, max_size: int, path: Path, what: str) -> bytes:
    """Inflate ``data`` 1 MiB at a time, stopping as soon as the output passes ``max_size``."""
    chunks: list[bytes] = []
    total = 0
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        while chunk := f.read(min(_GUNZIP_CHUNK, max_size + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_size:
                raise HandgradError(too_large(path, what, max_size, inflated=True))
    return b"".join(chunks)


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX ``data`` into an array shaped as its header says.

    Args:
        data: the uncompressed IDX content.
        name: the file name to put in error messages.

    Returns:
        A new (writable) array of the header's shape: uint8 for MNIST, other IDX types in
        native byte order.

    Raises:
        HandgradError: the header is not IDX, or the data is shorter or longer than the header.
    """
    if len(data) < 4:
        raise HandgradError(f"{name}: too short for an IDX file ({len(data)} bytes)")
    if not data.startswith(b"\x00\x00"):
        if data.startswith(GZIP_MAGIC):
            raise HandgradError(f"{name}: still gzip-compressed after reading; nested gzip?")
        raise HandgradError(
            f"{name}: not a gzip file and not an IDX file (starts with {data[:8]!r})"
        )
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_TYPES or ndim == 0:
        raise HandgradError(
            f"{name}: wrong IDX magic number {magic} (0x{magic:08x}): unknown element type "
            f"0x{type_code:02x} or zero dimensions"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise HandgradError(f"{name}: truncated IDX header ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}i", data[4:header_size])
    if any(size < 0 for size in shape):
        raise HandgradError(f"{name}: negative size in IDX header {shape}")
    dtype = IDX_TYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    found = len(data) - header_size
    if found < expected:
        raise HandgradError(
            f"{name}: truncated: header says {shape} ({expected} bytes of data), "
            f"file has {found} bytes"
        )
    if found > expected:
        raise HandgradError(
            f"{name}: {found - expected} unexpected bytes after the data of shape {shape}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable copy in native byte order


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzipped or raw (decided by its magic bytes, not by its name).

    Returns:
        An array with the shape from the header: uint8 ``(N, 28, 28)`` for MNIST images,
        uint8 ``(N,)`` for labels.

    Raises:
        HandgradError: naming the file and the problem (missing, truncated, not IDX, ...).
    """
    path = Path(path)
    return parse_idx(read_bytes(path), path.name)


def check_mnist_images(images: np.ndarray, name: str, magic: int) -> None:
    """Check that an IDX array holds MNIST images: magic 2051, uint8, shape ``(N, 28, 28)``."""
    if magic != IMAGES_MAGIC:
        raise HandgradError(
            f"{name}: wrong IDX magic number {magic}, expected {IMAGES_MAGIC} (images)"
        )
    if images.shape[1:] != (28, 28):
        raise HandgradError(
            f"{name}: images are {'x'.join(map(str, images.shape[1:]))}, expected 28x28 "
            f"(shape {images.shape})"
        )


def check_mnist_labels(labels: np.ndarray, name: str, magic: int) -> None:
    """Check that an IDX array holds MNIST labels: magic 2049, uint8, values in 0-9."""
    if magic != LABELS_MAGIC:
        raise HandgradError(
            f"{name}: wrong IDX magic number {magic}, expected {LABELS_MAGIC} (labels)"
        )
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        i = int(bad[0])
        raise HandgradError(
            f"{name}: label {int(labels[i])} at index {i} is outside 0-9 "
            f"({bad.size} such label{'s' if bad.size > 1 else ''})"
        )


def parse_mnist(data: bytes, name: str, kind: str) -> np.ndarray:
    """Decode and check one MNIST file's content; ``kind`` is ``'images'`` or ``'labels'``.

    Returns:
        uint8 ``(N, 28, 28)`` images or uint8 ``(N,)`` labels in ``0..9``.
    """
    array = parse_idx(data, name)
    magic = int.from_bytes(data[:4], "big")
    if kind == "images":
        check_mnist_images(array, name, magic)
    elif kind == "labels":
        check_mnist_labels(array, name, magic)
    else:
        raise ValueError(f"parse_mnist kind: expected 'images' or 'labels', got {kind!r}")
    return array


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as uncompressed IDX content (header + big-endian data)."""
    codes = {dtype.newbyteorder(">"): code for code, dtype in IDX_TYPES.items()}
    big = array.dtype.newbyteorder(">")
    if big not in codes:
        raise TypeError(f"idx_bytes: dtype {array.dtype} has no IDX type code")
    header = struct.pack(f">BBBB{array.ndim}i", 0, 0, codes[big], array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=big).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, compress: bool = True) -> Path:
    """Write ``array`` as an IDX file (gzip -9 with mtime 0 if ``compress``), atomically.

    The file appears under its final name only once it is completely written.
    """
    path = Path(path)
    data = idx_bytes(array)
    if compress:
        data = gzip.compress(data, compresslevel=9, mtime=0)
    write_atomic(path, data)
    return path


def create_temp(path: Path) -> tuple[int, Path]:
    """Create an empty temporary file next to ``path``; return its descriptor and path.

    Unlike ``tempfile.mkstemp`` (mode 0600), the file gets the usual permissions (0666 less
    the umask), so it keeps them once renamed into place.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise HandgradError(f"{path.parent}: cannot create a temporary file")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it into place."""
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
