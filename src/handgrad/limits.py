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

What a command line may ask for is limited too: ``max_threads()`` torch threads (4 per CPU, at
most ``MAX_THREADS_CAP`` = 256), and no model, batch or input whose estimated bytes pass the
memory available now (``check_memory``, the estimate and ``MemAvailable`` both in the message).
"""

from __future__ import annotations

import itertools
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


# -- what a command line may make handgrad allocate ------------------------------------------

MAX_THREADS_CAP = 256


def max_threads() -> int:
    """The most torch threads a run may ask for: 4 x this machine's CPUs, at most 256 (torch
    crashes on absurd counts such as 100000)."""
    return min(MAX_THREADS_CAP, 4 * (os.cpu_count() or 1))


def check_threads(where: str, value: object) -> None:
    """Refuse a thread count above :func:`max_threads` (one line naming the limit).

    Raises:
        ValueError: as every other bad field of a config.
    """
    limit = max_threads()
    if isinstance(value, int) and not isinstance(value, bool) and value > limit:
        raise ValueError(
            f"{where}: {value} threads is more than the limit of {limit} (4 per CPU of this "
            f"machine's {os.cpu_count() or 1}, at most {MAX_THREADS_CAP}); use --threads auto"
        )


def available_memory() -> int | None:
    """Bytes of memory a new allocation can take now (``MemAvailable`` on Linux), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def describe_size(n: int) -> str:
    """``n`` bytes rounded for a person: ``'3.7 GB'``."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def mlp_memory(widths: list[int], batch: int, itemsize: int, copies: int = 5) -> int:
    """Bytes an MLP of ``widths`` needs, estimated from above: its parameters ``copies`` times
    (weights, gradients, a flat buffer, two optimizer moments) and the activations of one batch
    four times (outputs, pre-activations, gradients, a spare)."""
    params = sum(a * b + b for a, b in itertools.pairwise(widths))
    return itemsize * (copies * params + 4 * batch * sum(widths))


def check_memory(what: str, needed: int, hint: str) -> None:
    """Refuse, before allocating, what needs more than the memory available now.

    Args:
        what: the input that asks for it (``"--model 784-100000000-10"``).
        needed: the estimated bytes.
        hint: what to do instead (``"use a smaller model"``).

    Raises:
        HandgradError: one line with both figures.
    """
    available = available_memory()
    if available is not None and needed > available:
        raise HandgradError(
            f"{what}: needs about {describe_size(needed)} of memory, more than the "
            f"{describe_size(available)} available; {hint}"
        )
