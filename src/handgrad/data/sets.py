"""Fashion-MNIST and Kuzushiji-MNIST: found, downloaded and verified like MNIST, kept apart.

Each set lives in a folder of its own, under MNIST's four file names, and is looked for in:

1. the ``data_dir`` argument (``--data DIR``): the folder of *this* set; anything else there
   (MNIST, another set, damaged files) is an error naming what was found;
2. ``$HANDGRAD_DATA``, used only when its files are this set (verified by checksum); a folder
   of another set is passed over (it never feeds this preset), one of unknown files is an error;
3. the cache folder of the set, ``$XDG_CACHE_HOME/handgrad/<name>`` (``~/.cache/...``);
4. a download into that folder from ``SET_MIRRORS[name]``, each file renamed into place only
   once its MD5 matches the published one.

The published MD5s are of the ``.gz`` files (``ImageSet.md5_of == "gzip"``), so these sets are
kept compressed; the checksums are what tells the sets apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from handgrad.data import sources
from handgrad.data.checksums import IMAGE_SETS, MNIST_FILES, ImageSet, MnistFile, md5_hex
from handgrad.data.idx import parse_mnist, read_bytes
from handgrad.errors import HandgradError

# The official download locations (the sets' own READMEs).
SET_MIRRORS: dict[str, list[str]] = {
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "kmnist": ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
}


def image_set(name: str) -> ImageSet:
    if name not in IMAGE_SETS or name == "mnist":
        others = ", ".join(n for n in IMAGE_SETS if n != "mnist")
        raise ValueError(f"unknown image set {name!r}; choose from {others}")
    return IMAGE_SETS[name]


def set_cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/handgrad/<name>`` or ``~/.cache/handgrad/<name>`` (not created)."""
    return sources.cache_dir().parent / name


def file_digests(path: Path) -> tuple[str, str]:
    """(MD5 of the file as stored, MD5 of its uncompressed content)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HandgradError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > sources.MAX_DOWNLOAD_BYTES:
        raise HandgradError(f"{path}: larger than {sources.MAX_DOWNLOAD_BYTES} bytes, refused")
    content = read_bytes(path, max_size=sources.MAX_DOWNLOAD_BYTES)
    return md5_hex(raw), md5_hex(content)


def _matches(wanted: ImageSet, spec: MnistFile, digests: tuple[str, str]) -> bool:
    stored, content = digests
    return (stored if wanted.md5_of == "gzip" else content) == wanted.md5[spec.key]


def identify(directory: Path) -> str | None:
    """The name of the set whose published checksums the folder's four files match, or None
    (files missing, unreadable or of no known set)."""
    digests = {}
    for spec in MNIST_FILES:
        path = sources.find_file(directory, spec)
        if path is None:
            return None
        try:
            digests[spec.key] = file_digests(path)
        except HandgradError:
            return None
    for candidate in IMAGE_SETS.values():
        if all(_matches(candidate, spec, digests[spec.key]) for spec in MNIST_FILES):
            return candidate.name
    return None


def check_set_dir(
    directory: Path, wanted: ImageSet, origin: str, checksums: Mapping[str, str] | None = None
) -> dict[str, np.ndarray]:
    """Read the four files of ``directory`` as ``wanted``, each verified by checksum.

    Raises:
        HandgradError: a file is missing, unreadable, uncompressed (for a gzip-checksummed
            set), malformed, or its MD5 is not the published one (saying which set it is, if
            it is a known one).
    """
    expected = {**wanted.md5, **(checksums or {})}
    if not directory.is_dir():
        raise HandgradError(f"{origin} {directory}: no such directory")
    arrays: dict[str, np.ndarray] = {}
    for spec in MNIST_FILES:
        path = sources.find_file(directory, spec)
        if path is None:
            raise HandgradError(f"{origin} {directory}: missing {spec.name}")
        if wanted.md5_of == "gzip" and path.name != spec.name:
            raise HandgradError(
                f"{path}: {wanted.title}'s checksums are of the .gz files; keep {spec.name} "
                "as downloaded (an uncompressed copy cannot be verified)"
            )
        stored, content_md5 = file_digests(path)
        actual = stored if wanted.md5_of == "gzip" else content_md5
        if actual != expected[spec.key]:
            found = identify(directory)
            what = (
                f"the folder holds {IMAGE_SETS[found].title}, not {wanted.title}"
                if found and found != wanted.name
                else f"not the official {wanted.title}"
            )
            raise HandgradError(
                f"{path}: checksum mismatch: MD5 {actual}, expected {expected[spec.key]} "
                f"({wanted.checksums_from}); {what}"
            )
        arrays[spec.key] = parse_mnist(read_bytes(path), path.name, spec.kind)
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise HandgradError(f"{origin} {directory}: {split} images and labels differ in count")
    return arrays


def download_set(
    wanted: ImageSet,
    directory: Path,
    *,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Path:
    """Download the files of ``wanted`` that ``directory`` lacks, each verified first."""
    expected = {**wanted.md5, **(checksums or {})}
    mirrors = SET_MIRRORS[wanted.name] if mirrors is None else mirrors
    for spec in MNIST_FILES:
        if not (directory / spec.name).is_file():
            sources.download_file(
                spec,
                directory,
                mirrors=mirrors,
                expected_md5=expected[spec.key],
                timeout=timeout,
                md5_of=wanted.md5_of,
            )
    return directory


def load_set_arrays(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    checksums: Mapping[str, str] | None = None,
) -> tuple[dict[str, np.ndarray], Path]:
    """The four verified arrays of the set ``name`` (see the module doc for where they come
    from) and the folder they were read from.

    Returns:
        uint8 arrays as :func:`handgrad.data.load_mnist_arrays` returns them:
        ``train_images`` (60000, 28, 28), ``train_labels`` (60000,) in 0-9, ``test_images``
        (10000, 28, 28), ``test_labels`` (10000,).

    Raises:
        HandgradError: the set cannot be found, downloaded or verified (one line).
    """
    wanted = image_set(name)
    if data_dir is not None:
        directory = Path(data_dir).expanduser()
        return check_set_dir(directory, wanted, "--data", checksums), directory
    passed_over = ""
    env = os.environ.get(sources.ENV_VAR)
    if env:
        directory = Path(env).expanduser()
        found = identify(directory) if directory.is_dir() else None
        if found is None or found == wanted.name:
            return check_set_dir(directory, wanted, f"${sources.ENV_VAR}", checksums), directory
        passed_over = f"${sources.ENV_VAR} {directory} holds {IMAGE_SETS[found].title}; "
    cache = set_cache_dir(wanted.name)
    if cache.is_dir() and all((cache / f.name).is_file() for f in MNIST_FILES):
        return check_set_dir(cache, wanted, "cache", checksums), cache
    how = f"pass --data DIR naming a folder with {wanted.title}'s four .gz files"
    if not download:
        raise HandgradError(
            f"{wanted.title} not found ({passed_over}cache {cache} incomplete, download "
            f"disabled); {how}"
        )
    try:
        download_set(wanted, cache, checksums=checksums)
    except HandgradError as exc:
        raise HandgradError(f"{wanted.title} not found ({passed_over}{exc}); {how}") from None
    return check_set_dir(cache, wanted, "cache", checksums), cache
