"""MNIST for handgrad: readers, checksums, the embedded subset, presets, splits and batches.

    from handgrad.data import load_preset, split_validation, Batches

    ds = load_preset("fleuret")  # 1,000/1,000 from the embedded subset, no files needed
    batches = Batches(ds.x_train, ds.y_train, 100, seed=0)
    for xb, yb in batches.epoch(0):
        ...

The full data is found via ``--data DIR``, ``$HANDGRAD_DATA``, the cache directory, or a
verified download (see :mod:`handgrad.data.sources`).
"""

from handgrad.data.batches import Batches
from handgrad.data.checksums import EMBEDDED_MD5, MNIST_FILES, PUBLISHED_MD5
from handgrad.data.idx import read_idx, write_idx
from handgrad.data.presets import PRESETS, Dataset, Preset, load_preset
from handgrad.data.safe_pickle import load_pickle_mnist
from handgrad.data.sources import (
    MIRRORS,
    cache_dir,
    download_mnist,
    load_embedded,
    load_mnist_arrays,
    locate_data_dir,
    resolve_data_dir,
)
from handgrad.data.split import ValidationSplit, split_validation

__all__ = [
    "EMBEDDED_MD5",
    "MIRRORS",
    "MNIST_FILES",
    "PRESETS",
    "PUBLISHED_MD5",
    "Batches",
    "Dataset",
    "Preset",
    "ValidationSplit",
    "cache_dir",
    "download_mnist",
    "load_embedded",
    "load_mnist_arrays",
    "load_pickle_mnist",
    "load_preset",
    "locate_data_dir",
    "read_idx",
    "resolve_data_dir",
    "split_validation",
    "write_idx",
]
