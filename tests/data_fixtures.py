"""Helpers for the data tests: tiny MNIST-shaped files in tmp_path, and an isolated setting.

Not a conftest: each data test module imports what it needs from here.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from handgrad.data import sources
from handgrad.data.checksums import MNIST_FILES
from handgrad.data.idx import idx_bytes

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No $HANDGRAD_DATA, a cache under tmp_path, and downloads only from 127.0.0.1.

    Returns the cache directory handgrad would use.
    """
    monkeypatch.delenv(sources.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(sources, "MIRRORS", ["http://127.0.0.1:9/never-used/"])
    real_fetch = sources._fetch

    def local_only(url: str, timeout: float) -> bytes:
        if not url.startswith("http://127.0.0.1:"):
            raise AssertionError(f"a test tried to reach the network: {url}")
        return real_fetch(url, timeout)

    monkeypatch.setattr(sources, "_fetch", local_only)
    return sources.cache_dir()


def tiny_arrays(n_train: int = 12, n_test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """Random MNIST-shaped uint8 arrays: images (N, 28, 28), labels (N,) in 0-9."""
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": ((np.arange(n_test) + 3) % 10).astype(np.uint8),
    }


def write_mnist_dir(
    directory: Path,
    arrays: dict[str, np.ndarray] | None = None,
    *,
    compress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Write the four files (official names) into ``directory``.

    Returns ``(arrays, md5s)`` with the MD5 of each file's uncompressed content by key.
    """
    arrays = tiny_arrays() if arrays is None else arrays
    directory.mkdir(parents=True, exist_ok=True)
    md5s = {}
    for spec in MNIST_FILES:
        content = idx_bytes(arrays[spec.key])
        md5s[spec.key] = hashlib.md5(content).hexdigest()
        if compress:
            (directory / spec.name).write_bytes(gzip.compress(content, mtime=0))
        else:
            (directory / spec.raw_name).write_bytes(content)
    return arrays, md5s


def raw_idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """Hand-made IDX content with any magic number and header sizes."""
    return struct.pack(f">I{len(dims)}i", magic, *dims) + payload
