"""The published MD5 checksums of MNIST, and the one function that computes them.

The checksums are of the *uncompressed* IDX content, so they hold for any gzip wrapper (the
official ``.gz`` downloads and a re-compressed copy give the same digest).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class MnistFile:
    """One of the four official files: its name, what it holds, and its published MD5."""

    key: str  # 'train_images', 'train_labels', 'test_images', 'test_labels'
    name: str  # file name as published, with .gz
    kind: str  # 'images' or 'labels'
    count: int  # number of records
    md5: str  # MD5 of the uncompressed bytes

    @property
    def raw_name(self) -> str:
        """The file name without ``.gz`` (an uncompressed copy is accepted too)."""
        return self.name.removesuffix(".gz")


MNIST_FILES: tuple[MnistFile, ...] = (
    MnistFile(
        "train_images",
        "train-images-idx3-ubyte.gz",
        "images",
        60_000,
        "6bbc9ace898e44ae57da46a324031adb",
    ),
    MnistFile(
        "train_labels",
        "train-labels-idx1-ubyte.gz",
        "labels",
        60_000,
        "a25bea736e30d166cdddb491f175f624",
    ),
    MnistFile(
        "test_images",
        "t10k-images-idx3-ubyte.gz",
        "images",
        10_000,
        "2646ac647ad5339dbf082846283269ea",
    ),
    MnistFile(
        "test_labels",
        "t10k-labels-idx1-ubyte.gz",
        "labels",
        10_000,
        "27ae3e4e09519cfbb04c329615203637",
    ),
)

# key -> published MD5 of the uncompressed content.
PUBLISHED_MD5: dict[str, str] = {f.key: f.md5 for f in MNIST_FILES}

# MD5s of the uncompressed content of the embedded subset (the first 1,000 records of each
# official file, written as IDX by embedded/build.py); load_embedded checks them.
EMBEDDED_MD5: dict[str, str] = {
    "train_images": "da098a60089079029bd38673813e12db",
    "train_labels": "175d5a7a457f2ceaab77379a72a89e61",
    "test_images": "bac4371a484d0b5651e81d99305acb5a",
    "test_labels": "556860b2f10365a8f7444c1e79c7e9af",
}


def md5_hex(data: bytes | memoryview) -> str:
    """MD5 of ``data`` as 32 lowercase hex digits (an integrity check, not a security one)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
