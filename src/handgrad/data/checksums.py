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


# -- the other image sets in MNIST's IDX layout ---------------------------------------------
@dataclass(frozen=True)
class ImageSet:
    """A 28x28, 10-class set in MNIST's IDX layout, under MNIST's four file names.

    ``md5`` maps the file keys of ``MNIST_FILES`` to the published MD5s; ``md5_of`` says what
    they are of: ``"content"`` (the uncompressed IDX bytes, as for MNIST) or ``"gzip"`` (the
    ``.gz`` file as downloaded, which is what Zalando and KMNIST publish; those sets must then
    be kept as the ``.gz`` files, since an uncompressed copy cannot be checked).
    """

    name: str  # preset name and cache folder
    title: str
    md5: dict[str, str]
    md5_of: str  # 'content' or 'gzip'
    checksums_from: str  # where the MD5s are published
    classes: tuple[str, ...]


MNIST_SET = ImageSet(
    "mnist",
    "MNIST",
    PUBLISHED_MD5,
    "content",
    "the MNIST database's published MD5s of the uncompressed files",
    tuple(str(d) for d in range(10)),
)
FASHION_MNIST = ImageSet(
    "fashion-mnist",
    "Fashion-MNIST",
    {
        "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
        "test_images": "bef4ecab320f06d8554ea6380940ec79",
        "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "gzip",
    "the README of zalandoresearch/fashion-mnist (MD5 of each .gz file)",
    (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)
KMNIST = ImageSet(
    "kmnist",
    "Kuzushiji-MNIST",
    {
        "train_images": "bdb82020997e1d708af4cf47b453dcf7",
        "train_labels": "e144d726b3acfaa3e44228e80efcd344",
        "test_images": "5c965bf0a639b31b8f53240b1b52f4d7",
        "test_labels": "7320c461ea6c1c855c0b718fb2a4b134",
    },
    "gzip",
    # rois-codh/kmnist's README lists no MD5s; these are the ones torchvision's KMNIST
    # dataset checks the official .gz files against.
    "torchvision's KMNIST resources (MD5 of each official .gz file)",
    ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
)
IMAGE_SETS: dict[str, ImageSet] = {s.name: s for s in (MNIST_SET, FASHION_MNIST, KMNIST)}
