"""The step plan: the batches of step s depend on s and the config only."""

from __future__ import annotations

import pytest
import torch

from handgrad.data import Batches
from handgrad.train.config import TrainConfig
from handgrad.train.steps import StepBatches, build_plan, build_transform


def _steps(config: TrainConfig, n: int = 50) -> StepBatches:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, 784, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    plan = build_plan(config, n)
    batches = Batches(x, y, config.batch_size, shuffle=config.shuffle, seed=config.seed)
    return StepBatches(batches, plan, build_transform(config))


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(batch_size=8, epochs=3),
        TrainConfig(batch_size=8, accumulate=3, epochs=3),
        TrainConfig(batch_size=8, accumulate=2, epochs=2, augment="shift"),
    ],
)
def test_a_step_taken_out_of_order_sees_the_batches_of_the_run_in_order(
    config: TrainConfig,
) -> None:
    in_order = _steps(config)
    total = build_plan(config, 50).total_steps
    seen = [[xb.clone() for xb, _ in in_order.micro_batches(s)] for s in range(total)]
    for start in (1, 4, total - 1):  # as a resumed run starts: a fresh StepBatches
        resumed = _steps(config)
        for s in range(start, total):
            got = [xb for xb, _ in resumed.micro_batches(s)]
            assert len(got) == len(seen[s])
            assert all(torch.equal(a, b) for a, b in zip(got, seen[s], strict=True))


def test_the_plan_locates_a_step_and_its_first_batch() -> None:
    plan = build_plan(TrainConfig(batch_size=8, accumulate=3, epochs=2), 50)  # 7 batches
    assert (plan.batches_per_epoch, plan.steps_per_epoch) == (7, 3)
    assert plan.locate(4) == (1, 1)
    assert plan.first_batch(4) == 7 + 3  # epoch 1 starts at batch 7; step 4 is its second
    sizes = [len(list(_steps(TrainConfig(batch_size=8, accumulate=3)).micro_batches(s)))
             for s in range(3)]  # fmt: skip
    assert sizes == [3, 3, 1]  # the epoch's last step has the one batch left
