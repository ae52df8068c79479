"""Optimizers and learning-rate schedules, each update rule written out by hand.

Every optimizer matches its ``torch.optim`` namesake to 1e-12 in float64 (same formulas),
keeps its state in flat preallocated buffers, and updates a flattened model
(``model.flatten_parameters()`` before building the optimizer) in one go. On the CPU, SGD,
Adam and AdamW run their update rule as one loop over the elements compiled by numba
(``handgrad.optim.kernels``): a single pass over the buffers instead of one per operation
(``fused=False`` gives the torch-operation version, which RMSprop and other devices use).
There is one parameter group; ``opt.lr`` is a plain attribute that schedules set.

Examples:
    >>> model.flatten_parameters()
    >>> opt = make_optimizer("adam", model.parameters(), lr=1e-3)
    >>> schedule = make_schedule("cosine", lr=1e-3, total_steps=1000, warmup_steps=100)
    >>> for step in range(1000):
    ...     schedule.apply(opt, step)
    ...     opt.zero_grad()
    ...     model.backward(loss_fn.backward())
    ...     opt.step()
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from handgrad.optim.adam import Adam, AdamW
from handgrad.optim.optimizer import Optimizer, build_named
from handgrad.optim.rmsprop import RMSprop
from handgrad.optim.schedules import (
    SCHEDULES,
    Constant,
    Cosine,
    OneCycle,
    PiecewiseConstant,
    Schedule,
    StepLR,
    make_schedule,
)
from handgrad.optim.sgd import SGD

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
}


def make_optimizer(name: str, params: Iterable[Tensor], **kwargs: Any) -> Optimizer:
    """Build the optimizer registered as ``name`` in ``OPTIMIZERS`` over ``params``.

    Examples:
        >>> opt = make_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.9)

    Raises:
        ValueError: for an unknown name (naming the closest valid one) or option, or an
            invalid hyper-parameter.
    """
    return build_named("optimizer", OPTIMIZERS, name, params, **kwargs)


__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Adam",
    "AdamW",
    "Constant",
    "Cosine",
    "OneCycle",
    "Optimizer",
    "PiecewiseConstant",
    "RMSprop",
    "Schedule",
    "StepLR",
    "make_optimizer",
    "make_schedule",
]
