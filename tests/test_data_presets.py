"""Presets (what each returns, exactly) and the validation split carved from training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from handgrad.data import PRESETS, Dataset, load_embedded, load_preset, split_validation
from handgrad.data.presets import fastai_from_arrays, fleuret_from_arrays, mnist_from_arrays
from handgrad.data.split import split_indices
from handgrad.errors import HandgradError
from tests.data_fixtures import isolate, tiny_arrays, write_mnist_dir


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def prologue(arrays: dict[str, np.ndarray], n: int) -> tuple[torch.Tensor, ...]:
    """dlc_practical_prologue.load_data(one_hot_labels=True, normalize=True), step by step."""
    train_input = torch.from_numpy(arrays["train_images"].copy()).view(-1, 1, 28, 28).float()
    train_target = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    test_input = torch.from_numpy(arrays["test_images"].copy()).view(-1, 1, 28, 28).float()
    test_target = torch.from_numpy(arrays["test_labels"].astype(np.int64))
    train_input = train_input.clone().reshape(train_input.size(0), -1)
    test_input = test_input.clone().reshape(test_input.size(0), -1)
    train_input = train_input.narrow(0, 0, n)
    train_target = train_target.narrow(0, 0, n)
    test_input = test_input.narrow(0, 0, n)
    test_target = test_target.narrow(0, 0, n)

    def one_hot(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tmp = input.new_zeros(target.size(0), int(target.max()) + 1)
        tmp.scatter_(1, target.view(-1, 1), 1.0)
        return tmp

    train_target = one_hot(train_input, train_target)
    test_target = one_hot(test_input, test_target)
    mu, std = train_input.mean(), train_input.std()
    train_input.sub_(mu).div_(std)
    test_input.sub_(mu).div_(std)
    return train_input, train_target, test_input, test_target


def test_fleuret_default_is_the_embedded_prologue() -> None:
    ds = load_preset("fleuret")
    assert isinstance(ds, Dataset)
    assert ds.x_train.shape == (1000, 784) and ds.x_test.shape == (1000, 784)
    assert ds.y_train.shape == (1000, 10) and ds.y_test.shape == (1000, 10)
    assert ds.x_train.dtype == ds.y_train.dtype == torch.float32
    assert ds.labels_train.dtype == ds.labels_test.dtype == torch.int64
    assert "embedded" in ds.source and "(1000, 784)" in repr(ds)
    expected = prologue(load_embedded(), 1000)
    for got, want in zip((ds.x_train, ds.y_train, ds.x_test, ds.y_test), expected, strict=True):
        assert torch.equal(got, want)  # bit for bit
    assert torch.equal(ds.y_train.argmax(1), ds.labels_train)
    assert set(ds.y_train.unique().tolist()) == {0.0, 1.0}
    assert abs(ds.x_train.mean().item()) < 1e-6 and abs(ds.x_train.std().item() - 1) < 1e-6
    assert abs(ds.x_test.mean().item()) > 1e-3  # the test set uses the train statistics
    assert ds.labels_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_fleuret_target_scale_and_dtype() -> None:
    ds = load_preset("fleuret", target_scale=0.9, dtype=torch.float64, device=torch.device("cpu"))
    assert ds.x_train.dtype == ds.y_train.dtype == torch.float64
    assert set(ds.y_train.unique().tolist()) == {0.0, 0.9}
    ref = load_preset("fleuret")
    torch.testing.assert_close(ds.x_train.float(), ref.x_train, rtol=1e-5, atol=1e-5)
    assert "0.9 at the label" in ds.description
    assert torch.equal(load_preset("fleuret", target_scale=0.9).y_train, ref.y_train * 0.9)


def test_fleuret_from_arrays_with_all_records() -> None:
    arrays = tiny_arrays(12, 6)
    ds = fleuret_from_arrays(arrays, n_train=None, n_test=None)
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (6, 784)
    x = torch.from_numpy(arrays["train_images"]).reshape(12, -1).float()
    assert torch.equal(ds.x_train, (x - x.mean()) / x.std())


def test_fastai_layout() -> None:
    arrays = tiny_arrays(12, 6)
    ds = fastai_from_arrays(arrays, n_valid=2)
    assert ds.x_train.shape == (10, 784) and ds.x_test.shape == (2, 784)
    assert ds.y_train.dtype == torch.int64 and ds.y_train.shape == (10,)
    pixels = torch.from_numpy(arrays["train_images"]).reshape(12, -1)
    assert torch.equal(ds.x_test * 256, pixels[10:].float())  # exactly pixel / 256
    assert torch.equal(ds.y_test, torch.from_numpy(arrays["train_labels"][10:]).long())
    assert ds.x_train.max() <= 255 / 256
    with pytest.raises(ValueError, match="n_valid"):
        fastai_from_arrays(arrays, n_valid=12)


def test_mnist_layout() -> None:
    arrays = tiny_arrays(12, 6)
    ds = mnist_from_arrays(arrays, dtype=torch.float64)
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (6, 784)
    assert ds.x_train.dtype == torch.float64 and ds.y_test.dtype == torch.int64
    assert torch.equal(
        ds.x_test * 255, torch.from_numpy(arrays["test_images"]).reshape(6, -1).double()
    )
    assert ds.x_train.min() >= 0 and ds.x_train.max() <= 1


def test_full_presets_refuse_unverified_files(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path / "tiny")
    for name in ("mnist", "fastai"):
        with pytest.raises(HandgradError, match="checksum mismatch"):
            load_preset(name, data_dir=tmp_path / "tiny")
    with pytest.raises(HandgradError, match="checksum mismatch"):
        load_preset("fleuret", full=True, data_dir=tmp_path / "tiny")


def test_full_presets_without_data_say_how(tmp_path: Path) -> None:
    with pytest.raises(HandgradError, match=r"download disabled.*--data DIR"):
        load_preset("mnist", download=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"name": "fastia"}, ValueError, "did you mean fastai?"),
        ({"name": "cifar"}, ValueError, "valid presets: fleuret, fastai, mnist"),
        ({"name": "fleuret", "dtype": torch.int64}, TypeError, "floating-point"),
        ({"name": "fleuret", "target_scale": float("nan")}, ValueError, "finite"),
        ({"name": "mnist", "target_scale": 0.9}, ValueError, "'fleuret' only"),
        ({"name": "fleuret", "device": "gpu0"}, ValueError, "bad device 'gpu0'"),
    ],
    ids=["typo", "unknown", "dtype", "nan", "scale", "device"],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], fragment: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(error) as info:
        load_preset(name, **kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_presets_listing_and_docstrings() -> None:
    assert list(PRESETS) == ["fleuret", "fastai", "mnist", "fashion-mnist", "kmnist"]
    assert torch.equal(PRESETS["fleuret"]().x_train, load_preset("fleuret").x_train)
    for preset in PRESETS.values():
        doc = preset.build.__doc__ or ""
        for fragment in ("784", "dtype", "int64", "Returns"):
            assert fragment in doc, f"{preset.name}: docstring lacks {fragment!r}"
        assert preset.summary


def test_split_validation_partitions_the_training_set() -> None:
    x = torch.arange(100, dtype=torch.float32).view(50, 2)
    y = torch.arange(50)
    labels = torch.arange(50) % 10
    s = split_validation(x, y, 10, seed=3, labels=labels)
    assert s.x_train.shape == (40, 2) and s.x_valid.shape == (10, 2)
    ids = torch.cat([s.y_train, s.y_valid]).sort().values
    assert torch.equal(ids, y)  # disjoint and complete
    assert torch.equal(s.x_valid[:, 0], s.y_valid.float() * 2)  # rows stay paired
    assert s.labels_valid is not None and torch.equal(s.labels_valid, s.y_valid % 10)
    assert torch.all(s.y_train[1:] > s.y_train[:-1])  # original order kept
    again = split_validation(x, y, 10, seed=3)
    assert torch.equal(again.y_valid, s.y_valid) and again.labels_valid is None
    assert not torch.equal(split_validation(x, y, 10, seed=4).y_valid, s.y_valid)
    assert len(split_validation(x, y, 0.2, seed=0).y_valid) == 10


def test_split_validation_on_a_preset() -> None:
    ds = load_preset("fleuret")
    s = split_validation(ds.x_train, ds.y_train, 0.1, seed=0, labels=ds.labels_train)
    assert s.x_train.shape == (900, 784) and s.y_valid.shape == (100, 10)
    _, valid_idx = split_indices(1000, 100, seed=0)
    assert torch.equal(s.x_valid, ds.x_train[valid_idx])


@pytest.mark.parametrize(
    ("n_valid", "error", "fragment"),
    [
        (0, ValueError, "expected 1 to 9 records of 10, got 0"),
        (10, ValueError, "got 10"),
        (1.0, ValueError, "in (0, 1)"),
        (0.01, ValueError, "(0 records)"),
        ("3", TypeError, "int count or a float fraction"),
        (True, TypeError, "int count"),
    ],
)
def test_split_validation_bad_sizes(n_valid: object, error: type[Exception], fragment: str) -> None:
    x, y = torch.zeros(10, 3), torch.zeros(10)
    with pytest.raises(error) as info:
        split_validation(x, y, n_valid, seed=0)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_split_validation_bad_tensors() -> None:
    with pytest.raises(ValueError, match="expected 10 records like x"):
        split_validation(torch.zeros(10, 3), torch.zeros(9), 2, seed=0)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        split_validation(np.zeros((10, 3)), torch.zeros(10), 2, seed=0)  # type: ignore[arg-type]
