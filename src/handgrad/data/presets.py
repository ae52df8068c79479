"""The MNIST variants the seeds use, each from one verified source and stated exactly.

``load_preset(name, ...)`` returns a :class:`Dataset` of torch tensors. Every preset keeps the
official record order (no shuffling here), computes on the CPU and only then moves the result to
``device``, so the same call gives the same bits on every machine and device.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from handgrad.data.checksums import IMAGE_SETS
from handgrad.data.sets import load_set_arrays
from handgrad.data.sources import (
    EMBEDDED_SOURCE,
    load_embedded,
    load_mnist_arrays,
    resolve_data_dir,
)

N_CLASSES = 10
N_FEATURES = 784  # 28 * 28
FLEURET_SUBSET = 1000  # dlc_practical_prologue.py: narrow(0, 0, 1000) unless --full

DataDir = str | os.PathLike[str] | None


@dataclass
class Dataset:
    """One preset's tensors plus where they came from.

    Attributes:
        x_train, x_test: inputs ``(N, 784)`` of the requested float dtype.
        y_train, y_test: targets as the preset defines them: one-hot ``(N, 10)`` of the float
            dtype (``fleuret``) or int64 class indices ``(N,)`` (``fastai``, ``mnist``).
        labels_train, labels_test: always int64 class indices ``(N,)`` in 0-9.
        name: the preset name.
        source: where the records came from (a directory or the embedded subset).
        description: what the tensors hold, in one paragraph.

    For ``fastai`` the ``*_test`` tensors are the validation set carved from the training
    images, as in the fastai notebooks, not the official test set.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    labels_train: torch.Tensor
    labels_test: torch.Tensor
    name: str
    source: str
    description: str

    def __repr__(self) -> str:
        def shape(t: torch.Tensor) -> str:
            return f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"

        return (
            f"Dataset({self.name!r}, x_train {shape(self.x_train)}, y_train "
            f"{shape(self.y_train)}, x_test {shape(self.x_test)}, y_test {shape(self.y_test)}, "
            f"device {self.x_train.device}, source {self.source!r})"
        )


def _flat(images: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (N, 28, 28) -> (N, 784) of ``dtype`` with the pixel values 0-255 (a copy)."""
    return torch.from_numpy(images).reshape(len(images), -1).to(dtype)


def _labels(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(labels.astype(np.int64))  # (N,)


def one_hot(
    labels: torch.Tensor, dtype: torch.dtype, scale: float = 1.0, n_classes: int = N_CLASSES
) -> torch.Tensor:
    """``(N,)`` class indices -> ``(N, C)`` (C = ``n_classes``, MNIST's 10 by default) with
    ``scale`` at the label, 0 elsewhere."""
    out = torch.zeros(len(labels), n_classes, dtype=dtype)  # (N, C)
    out.scatter_(1, labels.view(-1, 1), 1.0)
    return out * scale if scale != 1.0 else out


def _official_arrays(data_dir: DataDir, download: bool) -> tuple[dict[str, np.ndarray], str]:
    """The four official files' arrays, found (or fetched) as ``resolve_data_dir`` says, and
    the folder they came from."""
    directory = resolve_data_dir(data_dir, download=download)
    return load_mnist_arrays(directory, download=False), str(directory)


def _move(ds: Dataset, device: torch.device | str) -> Dataset:
    if torch.device(device).type == "cpu":
        return ds
    for field in ("x_train", "y_train", "x_test", "y_test", "labels_train", "labels_test"):
        setattr(ds, field, getattr(ds, field).to(device))
    return ds


def fleuret_from_arrays(
    arrays: dict[str, np.ndarray],
    *,
    n_train: int | None = FLEURET_SUBSET,
    n_test: int | None = FLEURET_SUBSET,
    target_scale: float = 1.0,
    dtype: torch.dtype = torch.float32,
    source: str = "",
) -> Dataset:
    """Fleuret's ``load_data(one_hot_labels=True, normalize=True)`` on given uint8 arrays.

    Takes the first ``n_train``/``n_test`` records (all when None), flattens to ``(N, 784)``,
    subtracts the train part's scalar mean and divides by its unbiased scalar std (both
    computed in ``dtype``), and one-hot encodes the labels times ``target_scale``.
    """
    x_train = _flat(arrays["train_images"][:n_train], dtype)  # (N_train, 784)
    x_test = _flat(arrays["test_images"][:n_test], dtype)  # (N_test, 784)
    mu, std = x_train.mean(), x_train.std()  # scalars, as train_input.mean(), .std()
    x_train = (x_train - mu) / std
    x_test = (x_test - mu) / std
    labels_train = _labels(arrays["train_labels"][:n_train])
    labels_test = _labels(arrays["test_labels"][:n_test])
    n_tr, n_te = len(x_train), len(x_test)
    description = (
        f"Fleuret's practical prologue: first {n_tr} train / first {n_te} test images in file "
        f"order, flattened to (N, 784) {dtype}, normalized with the train part's scalar mean "
        f"{mu.item():.4f} and unbiased std {std.item():.4f} (pixels 0-255); targets one-hot "
        f"(N, 10) {dtype} with {target_scale:g} at the label and 0 elsewhere"
    )
    return Dataset(
        x_train=x_train,
        y_train=one_hot(labels_train, dtype, target_scale),  # (N_train, C)
        x_test=x_test,
        y_test=one_hot(labels_test, dtype, target_scale),  # (N_test, C)
        labels_train=labels_train,
        labels_test=labels_test,
        name="fleuret",
        source=source,
        description=description,
    )


def fleuret(
    *,
    data_dir: DataDir = None,
    full: bool = False,
    target_scale: float = 1.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> Dataset:
    """Fleuret's deep-learning-course prologue (``dlc_practical_prologue.load_data``).

    Returns:
        With ``full=False`` (from the embedded subset, no files needed): ``x_train``
        ``(1000, 784)`` and ``x_test`` ``(1000, 784)``, the first 1,000 images of the official
        train and test files; with ``full=True`` (from the full files): ``(60000, 784)`` and
        ``(10000, 784)``. Pixels 0-255 as ``dtype``, both sets normalized with the *train*
        set's scalar mean and unbiased std (so the train set has mean 0 and std 1; values lie
        in about [-0.42, 2.86]). ``y_train``/``y_test``: one-hot ``(N, 10)`` of ``dtype``,
        ``target_scale`` at the label and 0 elsewhere (the practical uses 0.9 to stay inside
        tanh's range). ``labels_*``: int64 ``(N,)`` in 0-9.

    With ``full=False`` no file is read (``data_dir`` is ignored): the embedded subset is
    checked by MD5 and is bit for bit the first 1,000 records of the official files.
    """
    if full:
        arrays, source = _official_arrays(data_dir, download)
        n = None
    else:
        arrays, n, source = load_embedded(), FLEURET_SUBSET, EMBEDDED_SOURCE
    ds = fleuret_from_arrays(
        arrays, n_train=n, n_test=n, target_scale=target_scale, dtype=dtype, source=source
    )
    return _move(ds, device)


def fastai_from_arrays(
    arrays: dict[str, np.ndarray],
    *,
    n_valid: int = 10_000,
    dtype: torch.dtype = torch.float32,
    source: str = "",
) -> Dataset:
    """The ``mnist.pkl.gz`` layout built from the official training images (see :func:`fastai`):
    the last ``n_valid`` training images are the validation set."""
    images, labels = arrays["train_images"], arrays["train_labels"]
    if not 0 < n_valid < len(images):
        raise ValueError(f"fastai n_valid: expected 1 to {len(images) - 1}, got {n_valid}")
    n_train = len(images) - n_valid
    x = _flat(images, dtype) / 256  # (60000, 784), exactly uint8 / 256 in [0, 255/256]
    y = _labels(labels)  # (60000,)
    description = (
        f"fastai / Nielsen mnist.pkl.gz layout from the official training file: train = "
        f"images 0-{n_train - 1}, valid (x_test/y_test) = images {n_train}-{len(images) - 1}; "
        f"x (N, 784) {dtype} = pixel / 256 in [0, 255/256]; y int64 class indices (N,)"
    )
    return Dataset(
        x_train=x[:n_train],
        y_train=y[:n_train],
        x_test=x[n_train:],
        y_test=y[n_train:],
        labels_train=y[:n_train],
        labels_test=y[n_train:],
        name="fastai",
        source=source,
        description=description,
    )


def fastai(
    *,
    data_dir: DataDir = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> Dataset:
    """The fastai course's MNIST: the ``mnist.pkl.gz`` train/valid split, built from IDX.

    Returns:
        ``x_train`` ``(50000, 784)`` and ``x_test`` ``(10000, 784)`` of ``dtype``: the first
        50,000 and the last 10,000 of the 60,000 official *training* images (``x_test`` is the
        validation set, never the official test set), pixel values divided by **256**, so in
        ``[0, 255/256]``, which is how the ``mnist.pkl.gz`` of deeplearning.net, Nielsen and
        fastai stores them (its maximum is 0.99609375, not 1.0). ``y_train``/``y_test``: int64
        class indices ``(N,)`` in 0-9, as in the pickle; ``labels_*`` are the same tensors.
        To read the pickle itself, see :func:`handgrad.data.load_pickle_mnist`.
    """
    arrays, source = _official_arrays(data_dir, download)
    return _move(fastai_from_arrays(arrays, dtype=dtype, source=source), device)


def mnist_from_arrays(
    arrays: dict[str, np.ndarray],
    *,
    dtype: torch.dtype = torch.float32,
    source: str = "",
    name: str = "mnist",
) -> Dataset:
    """All official records, pixels / 255 (see :func:`mnist`); ``name`` is the set's preset
    name (``fashion-mnist`` and ``kmnist`` are built the same way)."""
    y_train, y_test = _labels(arrays["train_labels"]), _labels(arrays["test_labels"])
    x_train = _flat(arrays["train_images"], dtype) / 255  # (60000, 784) in [0, 1]
    x_test = _flat(arrays["test_images"], dtype) / 255  # (10000, 784)
    title = IMAGE_SETS[name].title if name in IMAGE_SETS else name
    description = (
        f"official {title}: {len(x_train)} train / {len(x_test)} test images in file order; "
        f"x (N, 784) {dtype} = pixel / 255 in [0, 1]; y int64 class indices (N,)"
    )
    return Dataset(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        labels_train=y_train,
        labels_test=y_test,
        name=name,
        source=source,
        description=description,
    )


def mnist(
    *,
    data_dir: DataDir = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> Dataset:
    """The plain official split.

    Returns:
        ``x_train`` ``(60000, 784)`` and ``x_test`` ``(10000, 784)`` of ``dtype``, the official
        train and test files in order, pixel values divided by **255**, so in ``[0, 1]``.
        ``y_train``/``y_test``: int64 class indices ``(N,)`` in 0-9; ``labels_*`` are the
        same tensors. Carve a validation set from the train part with
        :func:`handgrad.data.split_validation`, never from the test part.
    """
    arrays, source = _official_arrays(data_dir, download)
    return _move(mnist_from_arrays(arrays, dtype=dtype, source=source), device)


def _image_set_preset(name: str) -> Callable[..., Dataset]:
    def build(
        *,
        data_dir: DataDir = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        download: bool = True,
    ) -> Dataset:
        arrays, directory = load_set_arrays(name, data_dir, download=download)
        ds = mnist_from_arrays(arrays, dtype=dtype, source=str(directory), name=name)
        return _move(ds, device)

    build.__name__ = name.replace("-", "_")
    build.__doc__ = (
        f"{IMAGE_SETS[name].title}, laid out as :func:`mnist`.\n\n"
        "    Returns:\n"
        "        ``x_train`` ``(60000, 784)`` and ``x_test`` ``(10000, 784)`` of ``dtype``, the "
        "official files in order, pixels / 255 in [0, 1]; ``y_*``/``labels_*``: int64 class "
        "indices ``(N,)`` in 0-9. Read from the set's own folder and verified by its published "
        "checksums (see :mod:`handgrad.data.sets`)."
    )
    return build


fashion_mnist = _image_set_preset("fashion-mnist")
kmnist = _image_set_preset("kmnist")


@dataclass(frozen=True)
class Preset:
    """A named preset: a one-line summary for listings and the function that builds it."""

    name: str
    summary: str
    build: Callable[..., Dataset]

    def __call__(self, **kwargs: object) -> Dataset:
        return load_preset(self.name, **kwargs)  # type: ignore[arg-type]


PRESETS: dict[str, Preset] = {
    "fleuret": Preset(
        "fleuret",
        "1,000/1,000 (embedded) or 60,000/10,000 (full=True), train-stat normalized, one-hot",
        fleuret,
    ),
    "fastai": Preset(
        "fastai", "50,000 train / 10,000 valid from the train file, pixels / 256", fastai
    ),
    "mnist": Preset("mnist", "60,000 train / 10,000 test, pixels / 255, class indices", mnist),
    "fashion-mnist": Preset(
        "fashion-mnist", "Zalando's Fashion-MNIST, 60,000 / 10,000, as mnist", fashion_mnist
    ),
    "kmnist": Preset("kmnist", "Kuzushiji-MNIST, 60,000 / 10,000, as mnist", kmnist),
}


def load_preset(
    name: str,
    *,
    data_dir: DataDir = None,
    full: bool = False,
    target_scale: float = 1.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> Dataset:
    """Load the preset ``name`` (``'fleuret'``, ``'fastai'``, ``'mnist'``, ``'fashion-mnist'``
    or ``'kmnist'``); see each one.

    ``full`` matters only for ``fleuret`` (the others are always the full set);
    ``target_scale`` only for ``fleuret``'s one-hot targets (others raise if it is not 1).

    Raises:
        ValueError: unknown name (the closest valid one is suggested) or a bad argument.
        TypeError: ``dtype`` is not a floating-point torch dtype.
        HandgradError: the data cannot be found, read or verified.
    """
    if name not in PRESETS:
        match = difflib.get_close_matches(name, list(PRESETS), n=1, cutoff=0.5)
        hint = f" (did you mean {match[0]}?)" if match else ""
        raise ValueError(f"unknown data preset {name!r}{hint}; valid presets: {', '.join(PRESETS)}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"preset {name}: dtype must be a floating-point torch dtype, got {dtype}")
    if not math.isfinite(target_scale):
        raise ValueError(f"preset {name}: target_scale must be finite, got {target_scale}")
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"preset {name}: bad device {device!r} ({exc})") from None
    if name == "fleuret":
        return fleuret(
            data_dir=data_dir,
            full=full,
            target_scale=target_scale,
            dtype=dtype,
            device=device,
            download=download,
        )
    if target_scale != 1.0:
        raise ValueError(
            f"preset {name}: target_scale applies to one-hot targets ('fleuret' only), "
            f"got {target_scale} for class-index targets"
        )
    build = PRESETS[name].build
    return build(data_dir=data_dir, dtype=dtype, device=device, download=download)
