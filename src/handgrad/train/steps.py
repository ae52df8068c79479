"""The step plan: which micro-batches optimizer step ``s`` sees, augmented.

One home for what the training loop, ``handgrad compare`` and a resumed run must agree on:

- :class:`Plan` (``build_plan(config, n_train)``): batch size, micro-batches per step, steps
  per epoch, total steps, evaluation and checkpoint intervals;
- where step ``s`` is: epoch ``s // steps_per_epoch``, position ``s % steps_per_epoch`` in it,
  and the run-wide index of its first micro-batch,
  ``epoch * batches_per_epoch + position * micro_per_step``;
- :class:`StepBatches`: the micro-batches of step ``s`` from ``handgrad.data.Batches`` (whose
  order is a function of ``(seed, epoch)`` alone), each passed through the augmentation, whose
  randomness is a function of ``(seed, micro-batch index)`` alone.

So the batches of step ``s`` depend on ``s`` and the config only, never on what ran before: a
run resumed at step ``s`` sees exactly what the uninterrupted run saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch
from torch import Tensor

from handgrad.data import Batches
from handgrad.train.config import TrainConfig

# A transform applied to each training batch before the forward pass:
# (xb, yb, batch_index) -> (xb, yb), batch_index counting micro-batches from the run's start.
# Drawing its randomness from a generator seeded by (config.seed, batch_index), as Batches does
# with (seed, epoch), makes it a pure function of the position, so resumed runs stay exact.
BatchTransform = Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]

AUGMENT_STREAM = 0xA06  # keeps the augmentation's seeds apart from other (seed, i) streams


@dataclass(frozen=True)
class Plan:
    """How a run's steps are laid out.

    Attributes:
        batch_size: records per micro-batch.
        batches_per_epoch: micro-batches in one pass over the training set.
        micro_per_step: micro-batches whose gradients one optimizer step accumulates.
        steps_per_epoch: optimizer steps per pass.
        total_steps: optimizer steps in the run.
        eval_every, checkpoint_every: in optimizer steps.
    """

    batch_size: int
    batches_per_epoch: int
    micro_per_step: int
    steps_per_epoch: int
    total_steps: int
    eval_every: int
    checkpoint_every: int

    def locate(self, step: int) -> tuple[int, int]:
        """``(epoch, position)`` of optimizer step ``step`` (counted from 0)."""
        return divmod(step, self.steps_per_epoch)

    def first_batch(self, step: int) -> int:
        """The run-wide index of step ``step``'s first micro-batch (the augmentation's seed)."""
        epoch, position = self.locate(step)
        return epoch * self.batches_per_epoch + position * self.micro_per_step


def build_plan(config: TrainConfig, n_train: int) -> Plan:
    """Lay out the run's steps for ``n_train`` training records.

    Raises:
        ValueError: the batch size exceeds the training set, or ``accumulate`` exceeds an epoch.
    """
    batch_size = config.batch_size if config.batch_size is not None else n_train
    if batch_size > n_train:
        after = " (after the validation split)" if config.valid else ""
        raise ValueError(
            f"batch_size {batch_size} is larger than the {n_train} training records{after}"
        )
    batches = n_train // batch_size if config.drop_last else math.ceil(n_train / batch_size)
    micro = config.accumulate if config.accumulate is not None else batches
    if micro > batches:
        raise ValueError(
            f"accumulate {micro} exceeds the {batches} batches in an epoch of {n_train} records"
        )
    steps_per_epoch = math.ceil(batches / micro)
    if config.steps is not None:
        total = config.steps
    else:
        assert config.epochs is not None  # validate() requires one of them
        total = config.epochs * steps_per_epoch
    eval_every = config.eval_every or steps_per_epoch
    return Plan(
        batch_size=batch_size,
        batches_per_epoch=batches,
        micro_per_step=micro,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        eval_every=eval_every,
        checkpoint_every=config.checkpoint_every or eval_every,
    )


def augment_transform(config: TrainConfig) -> BatchTransform:
    """The config's ``handgrad.data.augment`` transform (``augment`` + ``augment_options``).

    Batch ``i`` draws its random numbers from a generator seeded by ``(config.seed, i)`` alone
    (a stream apart from the batch order's ``(seed, epoch)``), so a resumed run, the autograd
    engine and ``handgrad compare`` all see the very same augmented batches.
    """
    aug = config.augmentation()

    def transform(xb: Tensor, yb: Tensor, batch_index: int) -> tuple[Tensor, Tensor]:
        stream = np.random.SeedSequence([config.seed, AUGMENT_STREAM, batch_index])
        high, low = stream.generate_state(2, np.uint32)
        generator = torch.Generator(device="cpu").manual_seed(int(high) << 32 | int(low))
        return aug(xb, generator), yb

    return transform


# Data augmentations by config name: a factory from the config to a transform (None: off).
AUGMENTATIONS: dict[str, Callable[[TrainConfig], BatchTransform] | None] = {
    "none": None,
    "shift": augment_transform,
    "affine": augment_transform,
    "elastic": augment_transform,
}


def build_transform(config: TrainConfig) -> BatchTransform | None:
    """The batch transform (data augmentation) the config names, or None."""
    factory = AUGMENTATIONS[config.augment]
    if factory is None:
        config.augmentation()  # options with augment "none" are an error
        return None
    return factory(config)


class StepBatches:
    """The micro-batches of each optimizer step, augmented.

    ``for xb, yb in steps.micro_batches(s)`` yields step ``s``'s ``plan.micro_per_step``
    batches (fewer at the end of an epoch that does not divide evenly). Steps taken in order
    share one pass over the epoch; any other step (the first after a resume) opens its epoch
    and skips the batches before it.
    """

    def __init__(self, batches: Batches, plan: Plan, transform: BatchTransform | None) -> None:
        self.batches, self.plan, self.transform = batches, plan, transform
        self._iter: Iterator[tuple[Tensor, Tensor]] | None = None
        self._next_step: int | None = None

    def micro_batches(self, step: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Step ``step``'s micro-batches ``(xb (B, D), yb)``, each transformed if augmenting."""
        epoch, position = self.plan.locate(step)
        micro = self.plan.micro_per_step
        if self._iter is None or position == 0 or step != self._next_step:
            self._iter = self.batches.epoch(epoch)
            if position:  # starting inside an epoch: skip the batches already seen
                for _ in islice(self._iter, position * micro):
                    pass
        self._next_step = step + 1
        first = self.plan.first_batch(step)
        for j, (xb, yb) in enumerate(islice(self._iter, micro)):
            if self.transform is not None:
                xb, yb = self.transform(xb, yb, first + j)
            yield xb, yb
