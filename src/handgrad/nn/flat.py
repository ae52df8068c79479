"""Parameters as views into one contiguous buffer, so an optimizer step is a few vector ops.

``Module.flatten_parameters()`` moves every parameter (and its ``.grad``) of a model into one
flat tensor each and leaves the parameters as views of it. An optimizer that receives such
parameters calls ``flat_view`` on them (and on their grads) and updates the whole model with a
handful of operations on a single tensor instead of a loop over layers.

Each flattened parameter also keeps its slot of the flat gradient buffer (the attribute named
by ``handgrad.nn.module.GRAD_SLOT``): a backward that finds ``.grad`` None (after
``zero_grad(set_to_none=True)``) re-attaches that slot and writes into it, so ``flat_view`` of
the grads is the flat buffer again after every plain step. A ``.grad`` the user assigned anew is
used as it is (not a view of the buffer: ``flat_view`` returns None for the set).

When ``Module.to()`` or ``flatten_parameters()`` puts new tensors in place of parameters, each
old tensor is marked (``mark_replaced``): ``move_count()`` grows, and ``replacement(old)`` is the
live tensor, so an optimizer built before can rebind or raise instead of stepping dead tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def flat_view(tensors: Sequence[Tensor]) -> Tensor | None:
    """Return a 1-D tensor that is exactly ``tensors`` laid end to end in memory, or ``None``.

    Args:
        tensors: tensors of one dtype and device.

    Returns:
        A view ``(sum of numel,)`` sharing storage with every tensor, if they are contiguous and
        adjacent in one storage in the given order; otherwise ``None``.
    """
    if not tensors:
        return None
    first = tensors[0]
    storage = first.untyped_storage()
    ptr = storage.data_ptr()
    offset = first.storage_offset()
    expected = offset
    for t in tensors:
        if (
            not t.is_contiguous()
            or t.dtype != first.dtype
            or t.device != first.device
            or t.untyped_storage().data_ptr() != ptr
            or t.storage_offset() != expected
        ):
            return None
        expected += t.numel()
    flat = torch.empty(0, dtype=first.dtype, device=first.device)
    flat.set_(storage, offset, (expected - offset,), (1,))
    return flat


def flatten_into_buffer(tensors: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Copy ``tensors`` into one new contiguous buffer and return it with views of each part.

    Returns:
        ``(flat, views)`` where ``flat`` is ``(sum of numel,)`` and ``views[i]`` has
        ``tensors[i]``'s shape and values.
    """
    first = tensors[0]
    total = sum(t.numel() for t in tensors)
    flat = torch.empty(total, dtype=first.dtype, device=first.device)
    views: list[Tensor] = []
    start = 0
    for t in tensors:
        view = flat[start : start + t.numel()].view(t.shape)
        view.copy_(t)
        views.append(view)
        start += t.numel()
    return flat, views


# --------------------------------------------------------------------------------------------
# Replaced parameters: ``Module.to()`` and ``Module.flatten_parameters()`` put new tensors in
# place of a model's parameters. An optimizer built before holds the old ones; these let it
# notice cheaply (compare ``move_count()`` with the value it saw) and find the live tensor.
# --------------------------------------------------------------------------------------------

_REPLACED_BY = "_hg_replaced_by"
_moves = 0


def mark_replaced(old: Tensor, new: Tensor) -> None:
    """Record that parameter tensor ``old`` was replaced by ``new`` in its module."""
    global _moves
    setattr(old, _REPLACED_BY, new)
    _moves += 1


def move_count() -> int:
    """How many parameter tensors have been replaced in this process (only ever grows)."""
    return _moves


def replacement(tensor: Tensor) -> Tensor | None:
    """The live tensor that now stands where ``tensor`` stood, or None if it was not replaced.

    Follows a chain of replacements (``m.flatten_parameters()`` then ``m.to(torch.float64)``).
    """
    new = getattr(tensor, _REPLACED_BY, None)
    if new is None:
        return None
    while True:
        newer = getattr(new, _REPLACED_BY, None)
        if newer is None:
            return new
        new = newer
