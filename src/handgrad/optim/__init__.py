"""Optimizers and learning-rate schedules, each update rule written out by hand.

Every optimizer is a ``torch.optim.Optimizer`` (parameter groups, ``state_dict`` in torch's
format, torch's ``lr_scheduler``) that matches its ``torch.optim`` namesake to 1e-12 in
float64, its update written out once with torch operations (``_update``). A flattened model
(``model.flatten_parameters()``) is updated in one go per group; on the CPU, SGD, Adam, AdamW
and RMSprop then run their rule as one loop compiled by numba (``handgrad.optim.kernels``,
``fused=False`` to use the torch operations instead). ``opt.lr`` reads group 0's learning
rate and sets every group's; schedules set it.

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

from handgrad.optim.adadelta import Adadelta
from handgrad.optim.adagrad import Adagrad
from handgrad.optim.adam import Adam, AdamW
from handgrad.optim.adamax import Adamax
from handgrad.optim.asgd import ASGD
from handgrad.optim.nadam import NAdam
from handgrad.optim.optimizer import Optimizer, build_named
from handgrad.optim.radam import RAdam
from handgrad.optim.rmsprop import RMSprop
from handgrad.optim.rprop import Rprop
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
    "adagrad": Adagrad,
    "adamax": Adamax,
    "nadam": NAdam,
    "radam": RAdam,
    "adadelta": Adadelta,
    "rprop": Rprop,
    "asgd": ASGD,
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
    "ASGD",
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Constant",
    "Cosine",
    "NAdam",
    "OneCycle",
    "Optimizer",
    "PiecewiseConstant",
    "RAdam",
    "RMSprop",
    "Rprop",
    "Schedule",
    "StepLR",
    "make_optimizer",
    "make_schedule",
]
