"""How much a file may make handgrad read or allocate: every limit in one place, with its value.

A file handed to handgrad (a config, an MNIST file, a pickle, an image) is untrusted input: it
can be ``/dev/zero``, a huge file, or a small one that expands (a gzip bomb, a pickle naming a
huge array). Each reader refuses input past its limit early, with one line that names the file
and states the limit, before the memory is taken.

Limits (bytes unless said otherwise):

- ``MAX_CONFIG_BYTES`` = 1 MiB: a ``config.json`` / ``--config`` file (a real one is < 2 kB).
- ``MAX_IDX_BYTES`` = 64 MiB: one MNIST IDX file, uncompressed, local or downloaded (the largest
  official file, ``train-images-idx3-ubyte``, is 47,040,016 bytes).
- ``MAX_PICKLE_BYTES`` = 256 MiB: ``mnist.pkl.gz`` uncompressed (the published file is about
  220 MB: 70,000 float32 images of 784 pixels and their int64 labels).
- ``MAX_SAFETENSORS_HEADER`` = 100 MB: the JSON header of a ``.safetensors`` file (the
  format's own limit).
- ``MAX_IMAGE_PIXELS`` = 50,000,000: an image for ``predict`` (width x height; a 48-megapixel
  phone photo passes, a 20000x20000 bomb does not).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from handgrad.errors import HandgradError

MAX_CONFIG_BYTES = 2**20
MAX_IDX_BYTES = 64 * 2**20
MAX_PICKLE_BYTES = 256 * 2**20
MAX_IMAGE_PIXELS = 50_000_000
MAX_SAFETENSORS_HEADER = 100_000_000

_CHUNK = 2**20


def describe_bytes(n: int) -> str:
    """``n`` bytes for a person: ``'64 MiB (67,108,864 bytes)'``."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit} ({n:,} bytes)"
    return f"{n:,} bytes"


def too_large(
    path: str | os.PathLike[str], what: str, limit: int, *, inflated: bool = False
) -> str:
    """The one-line message for ``path`` past ``limit`` bytes."""
    size = "uncompressed content" if inflated else "file"
    return (
        f"{path}: {size} larger than the limit of {describe_bytes(limit)} for {what}; refused "
        "(is it the right file?)"
    )


def stored_limit(limit: int) -> int:
    """The largest file on disk that may hold ``limit`` bytes of content: ``limit`` plus gzip's
    worst case overhead (stored blocks: 5 bytes per 64 KiB, a header and a trailer), rounded up
    generously to ``limit + limit // 1024 + 64 KiB``."""
    return limit + limit // 1024 + 2**16


def read_limited(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The bytes of ``path``, refusing a file of more than ``limit`` bytes before reading it.

    A regular file is measured first; anything else (``/dev/zero``, a pipe) is read in chunks
    and refused as soon as it passes ``limit``, so no more than ``limit`` + 1 MiB is ever held.

    Raises:
        HandgradError: missing, a directory, unreadable, or larger than ``limit``; the message
            names the file and, for size, the limit.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_size > limit:
                raise HandgradError(too_large(path, what, limit))
            chunks: list[bytes] = []
            total = 0
            while True:
                chunk = f.read(min(_CHUNK, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise HandgradError(too_large(path, what, limit))
    except FileNotFoundError:
        raise HandgradError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise HandgradError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise HandgradError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return b"".join(chunks)


def read_config_text(path: str | os.PathLike[str], what: str = "a config") -> str:
    """The text of a JSON config file, at most ``MAX_CONFIG_BYTES`` (1 MiB), as UTF-8.

    For ``TrainConfig.load`` and ``--config``: ``--config /dev/zero`` or a huge file is refused
    at once with one line instead of being read until memory runs out.

    Raises:
        HandgradError: unreadable, too large (the limit is stated), or not UTF-8 text.
    """
    data = read_limited(path, MAX_CONFIG_BYTES, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HandgradError(
            f"{path}: not UTF-8 text (byte {exc.start}); expected a JSON config"
        ) from None
