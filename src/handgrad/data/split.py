"""A seeded validation split carved from the training data only, so no one tunes on the test set."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ValidationSplit(NamedTuple):
    """The two parts of a training set. ``labels_*`` are None when no labels were given."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    labels_train: torch.Tensor | None
    labels_valid: torch.Tensor | None


def split_indices(n: int, n_valid: int | float, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(train_idx, valid_idx)``: int64 CPU tensors partitioning ``range(n)``.

    ``valid_idx`` is a seeded random choice of ``n_valid`` records, in increasing order;
    ``train_idx`` is the rest, in increasing order. The same ``(n, n_valid, seed)`` always gives
    the same indices, on any machine.
    """
    if isinstance(n_valid, bool) or not isinstance(n_valid, int | float):
        raise TypeError(f"n_valid: expected an int count or a float fraction, got {n_valid!r}")
    if isinstance(n_valid, float):
        if not 0.0 < n_valid < 1.0:
            raise ValueError(f"n_valid: a fraction must be in (0, 1), got {n_valid}")
        count = round(n_valid * n)
    else:
        count = n_valid
    if not 0 < count < n:
        raise ValueError(
            f"n_valid: expected 1 to {n - 1} records of {n}, got {n_valid}"
            + (f" ({count} records)" if isinstance(n_valid, float) else "")
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    order = torch.randperm(n, generator=generator)  # (n,)
    valid_idx = order[:count].sort().values  # (n_valid,)
    train_idx = order[count:].sort().values  # (n - n_valid,)
    return train_idx, valid_idx


def split_validation(
    x: torch.Tensor,
    y: torch.Tensor,
    n_valid: int | float,
    *,
    seed: int,
    labels: torch.Tensor | None = None,
) -> ValidationSplit:
    """Carve a validation set out of training data ``x``, ``y`` (never pass the test set).

    Args:
        x: inputs ``(N, ...)``, e.g. ``(N, 784)``.
        y: targets ``(N,)`` or ``(N, C)``.
        n_valid: the number of validation records (int, 1 to N-1) or a fraction of N
            (float in (0, 1), rounded to the nearest count).
        seed: the seed of the random choice; the same seed gives the same split.
        labels: optional int64 class indices ``(N,)`` split the same way.

    Returns:
        A :class:`ValidationSplit` ``(x_train, y_train, x_valid, y_valid, labels_train,
        labels_valid)``: new tensors (copies) on the inputs' device and dtypes, with
        ``N - n_valid`` and ``n_valid`` records; each part keeps the original record order.
        The two parts are disjoint and together hold every record once.
    """
    for name, t in (("x", x), ("y", y), ("labels", labels)):
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(f"split_validation {name}: expected a torch.Tensor, got {type(t)}")
    if x.ndim == 0:
        raise ValueError("split_validation x: expected shape (N, ...), got a scalar")
    for name, t in (("y", y), ("labels", labels)):
        if t is not None and (t.ndim == 0 or len(t) != len(x)):
            raise ValueError(
                f"split_validation {name}: expected {len(x)} records like x, got shape "
                f"{tuple(t.shape)}"
            )
    train_idx, valid_idx = split_indices(len(x), n_valid, seed=seed)
    train_idx, valid_idx = train_idx.to(x.device), valid_idx.to(x.device)

    def part(t: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
        return None if t is None else t.index_select(0, idx.to(t.device))

    x_train, y_train = x.index_select(0, train_idx), y.index_select(0, train_idx.to(y.device))
    x_valid, y_valid = x.index_select(0, valid_idx), y.index_select(0, valid_idx.to(y.device))
    return ValidationSplit(
        x_train, y_train, x_valid, y_valid, part(labels, train_idx), part(labels, valid_idx)
    )
