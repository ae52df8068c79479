"""Seeded, shuffled mini-batches that never copy the dataset as a whole."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class Batches:
    """Mini-batches of ``(x, y)`` whose order depends only on ``(seed, epoch)``.

    Args:
        x: inputs ``(N, ...)``.
        y: targets ``(N, ...)`` (class indices ``(N,)`` or one-hot ``(N, C)``), same N as x.
        batch_size: records per batch, 1 to N; None for one full batch: ``(x, y)`` themselves,
            unshuffled and uncopied (reordering a single full batch changes nothing but
            the row order).
        shuffle: draw a new permutation each epoch; if False, batches are consecutive slices
            (views, no copy) in record order.
        seed: the seed the per-epoch permutations derive from.
        drop_last: drop the last batch when it is smaller than ``batch_size``.

    ``epoch(e)`` yields ``(xb, yb)`` with ``xb`` ``(B, ...)`` and ``yb`` ``(B, ...)`` on x's
    and y's devices and dtypes. The permutation for epoch ``e`` is drawn on the CPU from a
    generator seeded by ``(seed, e)`` alone, so a run resumed at epoch ``e`` sees the same
    batches, and the order is the same on every device and dtype. Each shuffled batch is one
    ``index_select`` of ``B`` records; the dataset itself is never copied or permuted.

    Example:
        >>> batches = Batches(x, y, 64, seed=0)
        >>> for epoch in range(10):
        ...     for xb, yb in batches.epoch(epoch):
        ...         ...
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int | None,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        for name, t in (("x", x), ("y", y)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"Batches {name}: expected a torch.Tensor, got {type(t)}")
            if t.ndim == 0:
                raise ValueError(f"Batches {name}: expected shape (N, ...), got a scalar")
        if len(x) != len(y):
            raise ValueError(
                f"Batches: x has {len(x)} records but y has {len(y)} "
                f"(shapes {tuple(x.shape)} and {tuple(y.shape)})"
            )
        n = len(x)
        if n == 0:
            raise ValueError("Batches: x and y are empty")
        if batch_size is None:
            batch_size, shuffle = n, False
        elif isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise TypeError(f"Batches batch_size: expected an int or None, got {batch_size!r}")
        elif not 0 < batch_size <= n:
            raise ValueError(f"Batches batch_size: expected 1 to {n} (N), got {batch_size}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"Batches seed: expected a non-negative int, got {seed!r}")
        self.x, self.y = x, y
        self.n = n
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.n // self.batch_size
        return -(-self.n // self.batch_size)

    def __repr__(self) -> str:
        return (
            f"Batches(N={self.n}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"seed={self.seed}, drop_last={self.drop_last}, batches_per_epoch={len(self)})"
        )

    def order(self, epoch: int) -> torch.Tensor:
        """The int64 CPU permutation ``(N,)`` of epoch ``epoch`` (``arange(N)`` if no shuffle)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
            raise ValueError(f"Batches epoch: expected a non-negative int, got {epoch!r}")
        if not self.shuffle:
            return torch.arange(self.n)
        # One independent stream per (seed, epoch): no state carried from earlier epochs.
        stream = np.random.SeedSequence([self.seed, int(epoch)]).generate_state(2, np.uint32)
        generator = torch.Generator(device="cpu").manual_seed(int(stream[0]) << 32 | int(stream[1]))
        return torch.randperm(self.n, generator=generator)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """An iterator over the ``len(self)`` batches ``(xb, yb)`` of epoch ``epoch``."""
        return self._batches(self.order(epoch))

    def _batches(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        stop = len(self) * self.batch_size if self.drop_last else self.n
        if not self.shuffle:
            if self.batch_size == self.n:
                yield self.x, self.y  # one full batch: the tensors themselves
                return
            for start in range(0, stop, self.batch_size):
                end = min(start + self.batch_size, self.n)
                yield self.x[start:end], self.y[start:end]  # views
            return
        x_order, y_order = order.to(self.x.device), order.to(self.y.device)
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, self.n)
            xb = self.x.index_select(0, x_order[start:end])  # (B, ...)
            yb = self.y.index_select(0, y_order[start:end])  # (B, ...)
            yield xb, yb
