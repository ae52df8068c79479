"""Where MNIST comes from: find the four files, download them if needed, verify, load.

The full data is looked for in this order:

1. the ``data_dir`` argument (the CLI's ``--data DIR``),
2. the ``HANDGRAD_DATA`` environment variable,
3. the user cache directory, ``$XDG_CACHE_HOME/handgrad/mnist`` or ``~/.cache/handgrad/mnist``,
4. a download into that cache from ``MIRRORS``, tried in turn.

A directory named by 1 or 2 must hold the files: if it does not, that is an error, never a
silent fall-back to somewhere else. A downloaded file is written to a temporary file next to its
final name and renamed into place only once the MD5 of its uncompressed content matches the
published one, so an interrupted or corrupted download never leaves a file that looks complete.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handgrad.data.checksums import EMBEDDED_MD5, MNIST_FILES, PUBLISHED_MD5, MnistFile, md5_hex
from handgrad.data.idx import create_temp, parse_mnist, read_bytes
from handgrad.errors import HandgradError

ENV_VAR = "HANDGRAD_DATA"

# Official mirrors of the four gzip files, tried in this order.
MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]
DOWNLOAD_TIMEOUT = 30.0  # seconds, per request
# The largest official file is 47,040,016 bytes uncompressed (9.9 MB gzipped); anything much
# bigger from a mirror is refused before it is held in memory in full.
MAX_DOWNLOAD_BYTES = 64 * 2**20

HOW_TO_POINT = f"pass --data DIR or set {ENV_VAR}=DIR to a folder holding " + ", ".join(
    f.name for f in MNIST_FILES
)


def cache_dir() -> Path:
    """The user cache directory for MNIST: ``$XDG_CACHE_HOME/handgrad/mnist`` or
    ``~/.cache/handgrad/mnist`` (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "handgrad" / "mnist"


def find_file(directory: Path, spec: MnistFile) -> Path | None:
    """The path of ``spec`` in ``directory`` (``name.gz`` or the uncompressed name), or None."""
    for name in (spec.name, spec.raw_name):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def missing_files(directory: Path) -> list[str]:
    """Names of the official files that ``directory`` lacks (empty when all four are there)."""
    return [f.name for f in MNIST_FILES if find_file(directory, f) is None]


def _explicit_dir(directory: str | os.PathLike[str], origin: str) -> Path:
    path = Path(directory).expanduser()
    if not path.exists():
        raise HandgradError(f"{origin} {path}: no such directory")
    if not path.is_dir():
        raise HandgradError(f"{origin} {path}: not a directory")
    missing = missing_files(path)
    if missing:
        raise HandgradError(f"{origin} {path}: missing {', '.join(missing)} (.gz or uncompressed)")
    return path


def locate_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Find the full MNIST files without downloading: ``data_dir``, ``$HANDGRAD_DATA``, cache.

    Returns:
        The directory holding all four files, or None when neither ``data_dir`` nor
        ``$HANDGRAD_DATA`` is given and the cache is incomplete.

    Raises:
        HandgradError: ``data_dir`` or ``$HANDGRAD_DATA`` is given but lacks a file.
    """
    if data_dir is not None:
        return _explicit_dir(data_dir, "--data")
    env = os.environ.get(ENV_VAR)
    if env:
        return _explicit_dir(env, f"${ENV_VAR}")
    cache = cache_dir()
    return cache if cache.is_dir() and not missing_files(cache) else None


def resolve_data_dir(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> Path:
    """The directory holding the four MNIST files: ``data_dir`` (``--data``),
    ``$HANDGRAD_DATA``, the cache directory, or else a verified download into the cache.

    Raises:
        HandgradError: one line saying what was tried and how to point handgrad at the files.
    """
    found = locate_data_dir(data_dir)
    if found is not None:
        return found
    cache = cache_dir()
    tried = f"no --data, ${ENV_VAR} unset, cache {cache} incomplete"
    if not download:
        raise HandgradError(f"MNIST not found ({tried}, download disabled); {HOW_TO_POINT}")
    try:
        download_mnist(cache)
    except HandgradError as exc:
        raise HandgradError(f"MNIST not found ({tried}); {exc}; {HOW_TO_POINT}") from None
    return cache


def _fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data: bytes = response.read(MAX_DOWNLOAD_BYTES + 1)
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise ValueError(f"more than {MAX_DOWNLOAD_BYTES} bytes, refused")
    return data


def download_file(
    spec: MnistFile,
    directory: Path,
    *,
    mirrors: Sequence[str] | None = None,
    expected_md5: str | None = None,
    timeout: float | None = None,
    md5_of: str = "content",
) -> Path:
    """Download ``spec.name`` into ``directory`` from the first mirror that serves it intact.

    Each attempt is written to a temporary file in ``directory`` and renamed to its final name
    only when the MD5 of its uncompressed content (``md5_of="gzip"``: of the file as
    downloaded) equals ``expected_md5`` (default: MNIST's published one). Failed attempts
    leave nothing behind.

    Raises:
        HandgradError: no mirror gave a verified file; the message lists every attempt.
    """
    mirrors = MIRRORS if mirrors is None else mirrors
    expected = expected_md5 or spec.md5
    timeout = DOWNLOAD_TIMEOUT if timeout is None else timeout
    if not mirrors:
        raise HandgradError(f"{spec.name}: no download mirrors configured")
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / spec.name
    failures: list[str] = []
    for mirror in mirrors:
        url = mirror if mirror.endswith(spec.name) else mirror.rstrip("/") + "/" + spec.name
        if not url.startswith(("http://", "https://")):
            failures.append(f"{url}: not an http(s) URL")
            continue
        try:
            payload = _fetch(url, timeout)
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code}")
            continue
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            failures.append(f"{url}: {reason}")
            continue
        fd, tmp = create_temp(final)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            try:
                content = read_bytes(tmp, max_size=MAX_DOWNLOAD_BYTES)
                parse_mnist(content, spec.name, spec.kind)
                actual = md5_hex(payload if md5_of == "gzip" else content)
            except HandgradError as exc:
                problem = str(exc).removeprefix(f"{tmp}: ").removeprefix(f"{spec.name}: ")
                failures.append(f"{url}: {problem}")
                continue
            if actual != expected:
                failures.append(f"{url}: MD5 {actual}, expected {expected}")
                continue
            os.replace(tmp, final)
            return final
        finally:
            tmp.unlink(missing_ok=True)
    raise HandgradError(f"could not download {spec.name} ({'; '.join(failures)})")


def download_mnist(
    directory: str | os.PathLike[str],
    *,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Path:
    """Download the official files that ``directory`` lacks, each verified before it lands.

    ``checksums`` maps file keys (``'train_images'``, ...) to MD5s; default the published ones.
    """
    directory = Path(directory).expanduser()
    expected = {**PUBLISHED_MD5, **(checksums or {})}
    for spec in MNIST_FILES:
        if find_file(directory, spec) is None:
            download_file(
                spec, directory, mirrors=mirrors, expected_md5=expected[spec.key], timeout=timeout
            )
    return directory


@dataclass(frozen=True)
class FileCheck:
    """The result of checking one file: where it is, its MD5 and the expected one.

    ``error`` is set (and ``md5`` empty) when the file could not be read or decompressed.
    """

    key: str
    path: Path
    md5: str
    expected: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.md5 == self.expected


def verify_files(
    directory: str | os.PathLike[str], *, checksums: Mapping[str, str] | None = None
) -> list[FileCheck]:
    """MD5 of the uncompressed content of each of the four files, against the published ones.

    Unreadable files (truncated or corrupt gzip) are reported in ``FileCheck.error`` rather
    than raised, so every file gets a verdict.

    Raises:
        HandgradError: a file is missing.
    """
    directory = Path(directory).expanduser()
    expected = {**PUBLISHED_MD5, **(checksums or {})}
    checks: list[FileCheck] = []
    for spec in MNIST_FILES:
        path = find_file(directory, spec)
        if path is None:
            raise HandgradError(f"{directory / spec.name}: no such file")
        try:
            checks.append(FileCheck(spec.key, path, md5_hex(read_bytes(path)), expected[spec.key]))
        except HandgradError as exc:
            problem = str(exc).removeprefix(f"{path}: ")
            checks.append(FileCheck(spec.key, path, "", expected[spec.key], problem))
    return checks


def read_mnist_dir(
    directory: str | os.PathLike[str], *, checksums: Mapping[str, str] | None = None
) -> tuple[dict[str, np.ndarray], list[FileCheck]]:
    """Read and check the four files of ``directory``; report MD5s without raising on them.

    Each file is read once: decompressed, parsed (magic, 28x28, labels 0-9) and hashed.

    Returns:
        ``(arrays, checks)``: the arrays as in :func:`load_mnist_arrays`, and one
        :class:`FileCheck` per file.

    Raises:
        HandgradError: a file is missing, malformed, or images and labels differ in count.
    """
    directory = Path(directory).expanduser()
    expected = {**PUBLISHED_MD5, **(checksums or {})}
    arrays: dict[str, np.ndarray] = {}
    checks: list[FileCheck] = []
    for spec in MNIST_FILES:
        path = find_file(directory, spec)
        if path is None:
            raise HandgradError(f"{directory / spec.name}: no such file")
        content = read_bytes(path)
        arrays[spec.key] = parse_mnist(content, path.name, spec.kind)
        checks.append(FileCheck(spec.key, path, md5_hex(content), expected[spec.key]))
    names = {c.key: c.path.name for c in checks}
    for split in ("train", "test"):
        n_images = len(arrays[f"{split}_images"])
        n_labels = len(arrays[f"{split}_labels"])
        if n_images != n_labels:
            raise HandgradError(
                f"{names[f'{split}_images']}: {n_images} images but "
                f"{names[f'{split}_labels']} has {n_labels} labels"
            )
    return arrays, checks


def load_mnist_arrays(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    checksums: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """Load the full MNIST set as numpy arrays, verified by MD5.

    Args:
        data_dir: a directory holding the four files; None to search (see the module doc).
        download: whether to download into the cache when nothing is found.
        checksums: MD5s by key to check against instead of the published ones (for tests).

    Returns:
        A dict of uint8 arrays: ``'train_images'`` (60000, 28, 28) in 0-255,
        ``'train_labels'`` (60000,) in 0-9, ``'test_images'`` (10000, 28, 28),
        ``'test_labels'`` (10000,), in the files' order.

    Raises:
        HandgradError: nothing found, a file is malformed, or a checksum does not match.
    """
    directory = resolve_data_dir(data_dir, download=download)
    arrays, checks = read_mnist_dir(directory, checksums=checksums)
    for check in checks:
        if not check.ok:
            raise HandgradError(
                f"{check.path}: checksum mismatch: MD5 of the uncompressed content is "
                f"{check.md5}, expected {check.expected}; the file is damaged or not the "
                "official MNIST"
                + ("; delete it to download it again" if directory == cache_dir() else "")
            )
    return arrays


# The embedded subset: key -> file name in handgrad/data/embedded/ (see embedded/build.py).
EMBEDDED_DIR = Path(__file__).parent / "embedded"
EMBEDDED_FILES: dict[str, str] = {
    "train_images": "train-images-1000-idx3-ubyte.gz",
    "train_labels": "train-labels-1000-idx1-ubyte.gz",
    "test_images": "t10k-images-1000-idx3-ubyte.gz",
    "test_labels": "t10k-labels-1000-idx1-ubyte.gz",
}
EMBEDDED_SOURCE = "embedded subset (first 1,000 train and 1,000 test MNIST records)"


def check_embedded() -> tuple[dict[str, np.ndarray], list[FileCheck]]:
    """Read the embedded subset and report each file's MD5 against ``EMBEDDED_MD5``."""
    arrays: dict[str, np.ndarray] = {}
    checks: list[FileCheck] = []
    kinds = {f.key: f.kind for f in MNIST_FILES}
    for key, name in EMBEDDED_FILES.items():
        path = EMBEDDED_DIR / name
        content = read_bytes(path)
        arrays[key] = parse_mnist(content, name, kinds[key])
        checks.append(FileCheck(key, path, md5_hex(content), EMBEDDED_MD5.get(key, "")))
    return arrays, checks


def load_embedded() -> dict[str, np.ndarray]:
    """The subset shipped inside handgrad, verified by MD5; no files or network needed.

    Returns:
        A dict like :func:`load_mnist_arrays` but with the first 1,000 records of each official
        file: ``'train_images'`` (1000, 28, 28) uint8 in 0-255, ``'train_labels'`` (1000,)
        uint8 in 0-9, ``'test_images'`` (1000, 28, 28), ``'test_labels'`` (1000,).

    Raises:
        HandgradError: the installed subset is damaged (checksum mismatch or unreadable).
    """
    arrays, checks = check_embedded()
    for check in checks:
        if not check.ok:
            raise HandgradError(
                f"{check.path}: checksum mismatch: MD5 {check.md5}, expected {check.expected}; "
                "the handgrad installation is damaged, reinstall it"
            )
    return arrays
