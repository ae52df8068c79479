"""Batches: sizes, seeded order per (seed, epoch), no dataset copy, argument checks."""

from __future__ import annotations

import pytest
import torch

from handgrad.data import Batches


def data(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n * 3, dtype=torch.float32).view(n, 3)  # row i starts with 3 * i
    y = torch.arange(n)  # y is the record index
    return x, y


def seen(batches: Batches, epoch: int) -> list[int]:
    return torch.cat([yb for _, yb in batches.epoch(epoch)]).tolist()


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last", "sizes"),
    [
        (10, 3, False, [3, 3, 3, 1]),
        (10, 3, True, [3, 3, 3]),
        (10, 5, True, [5, 5]),
        (10, 10, False, [10]),
        (10, 1, False, [1] * 10),
        (10, None, False, [10]),
        (10, None, True, [10]),
    ],
)
def test_sizes(n: int, batch_size: int | None, drop_last: bool, sizes: list[int]) -> None:
    x, y = data(n)
    batches = Batches(x, y, batch_size, drop_last=drop_last, seed=1)
    got = [len(xb) for xb, _ in batches.epoch(0)]
    assert got == sizes and len(batches) == len(sizes)
    for xb, yb in batches.epoch(0):
        assert torch.equal(xb[:, 0], yb.float() * 3)  # inputs and targets stay paired


def test_every_record_once_per_epoch() -> None:
    x, y = data(10)
    batches = Batches(x, y, 3, seed=7)
    for epoch in range(4):
        assert sorted(seen(batches, epoch)) == list(range(10))
    assert len(set(seen(Batches(x, y, 3, seed=7, drop_last=True), 0))) == 9


def test_order_depends_only_on_seed_and_epoch() -> None:
    x, y = data(50)
    a = Batches(x, y, 8, seed=3)
    b = Batches(x.double(), y, 8, seed=3)  # another dtype, another object
    orders = [seen(a, e) for e in range(5)]
    assert [seen(b, e) for e in range(5)] == orders
    assert seen(Batches(x, y, 8, seed=3), 4) == orders[4]  # resumed at epoch 4
    assert len({tuple(o) for o in orders}) == 5  # a new order every epoch
    assert seen(Batches(x, y, 8, seed=4), 0) != orders[0]
    assert orders[0] != list(range(50))
    assert torch.equal(a.order(2), torch.tensor(orders[2]))


def test_same_order_on_every_device() -> None:
    x, y = data(20)
    ref = seen(Batches(x, y, 6, seed=2), 1)
    devices = ["cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        order = Batches(x.to(device), y.to(device), 6, seed=2).order(1)
        assert torch.cat([order[i : i + 6] for i in range(0, 20, 6)]).tolist() == ref


def test_unshuffled_batches_are_views() -> None:
    x, y = data(10)
    batches = Batches(x, y, 4, shuffle=False)
    assert seen(batches, 0) == list(range(10)) == seen(batches, 5)
    for xb, _ in batches.epoch(0):
        assert xb.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    ((xb, yb),) = Batches(x, y, None).epoch(3)  # full batch: the tensors themselves
    assert xb is x and yb is y


def test_shuffled_batches_copy_only_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = data(100)
    selected: list[int] = []
    real = torch.Tensor.index_select

    def spy(self: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
        selected.append(len(index))
        return real(self, dim, index)

    monkeypatch.setattr(torch.Tensor, "index_select", spy)
    for _ in Batches(x, y, 16, seed=0).epoch(0):
        pass
    assert max(selected) == 16 and sum(selected) == 2 * 100  # x and y, one batch at a time


def test_one_hot_targets() -> None:
    x, _ = data(12)
    y = torch.eye(10)[torch.arange(12) % 10]  # (N, C)
    for xb, yb in Batches(x, y, 5, seed=0).epoch(0):
        assert yb.shape[1] == 10
        assert torch.equal(yb.argmax(1), (xb[:, 0] / 3).long() % 10)


@pytest.mark.parametrize(
    ("batch_size", "error", "fragment"),
    [
        (0, ValueError, "expected 1 to 10 (N), got 0"),
        (-4, ValueError, "got -4"),
        (11, ValueError, "got 11"),
        (2.5, TypeError, "got 2.5"),
        (True, TypeError, "got True"),
        ("8", TypeError, "got '8'"),
    ],
)
def test_bad_batch_size(batch_size: object, error: type[Exception], fragment: str) -> None:
    x, y = data(10)
    with pytest.raises(error) as info:
        Batches(x, y, batch_size)  # type: ignore[arg-type]
    assert "batch_size" in str(info.value) and fragment in str(info.value)


def test_bad_inputs() -> None:
    x, y = data(10)
    with pytest.raises(ValueError, match="x has 10 records but y has 9"):
        Batches(x, y[:9], 2)
    with pytest.raises(TypeError, match="Batches x"):
        Batches(x.tolist(), y, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        Batches(x[:0], y[:0], None)
    with pytest.raises(ValueError, match="seed"):
        Batches(x, y, 2, seed=-1)
    with pytest.raises(ValueError, match="epoch"):
        Batches(x, y, 2).epoch(-1)  # raised at the call, not at the first batch
