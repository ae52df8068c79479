"""The real MNIST from ../shared/data/mnist, read in place through $HANDGRAD_DATA."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from handgrad.cli.main import main
from handgrad.data import load_embedded, load_mnist_arrays, load_preset
from handgrad.data.presets import fastai_from_arrays, fleuret_from_arrays, mnist_from_arrays
from handgrad.data.sources import verify_files
from tests.data_fixtures import SHARED_MNIST, isolate

pytestmark = pytest.mark.skipif(
    not (SHARED_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"the shared MNIST files are not at {SHARED_MNIST} (repo root's parent/shared/...)",
)


@pytest.fixture(autouse=True)
def _real_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)  # no downloads, cache in tmp_path
    monkeypatch.setenv("HANDGRAD_DATA", str(SHARED_MNIST))


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return load_mnist_arrays(SHARED_MNIST, download=False)


def test_checksums() -> None:
    checks = verify_files(SHARED_MNIST)
    assert [c.path.name for c in checks] == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    assert all(c.ok for c in checks), checks


def test_counts_and_first_labels(arrays: dict[str, np.ndarray]) -> None:
    assert arrays["train_images"].shape == (60000, 28, 28)
    assert arrays["test_images"].shape == (10000, 28, 28)
    assert arrays["train_labels"].shape == (60000,) and arrays["test_labels"].shape == (10000,)
    assert all(a.dtype == np.uint8 for a in arrays.values())
    assert arrays["train_labels"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert arrays["test_labels"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(arrays["train_labels"]).tolist()[:3] == [5923, 6742, 5958]


def test_env_var_is_found() -> None:
    start = time.perf_counter()
    env_arrays = load_mnist_arrays()  # via $HANDGRAD_DATA
    assert time.perf_counter() - start < 10  # generous: the measured figure is in the notes
    assert env_arrays["test_images"].shape == (10000, 28, 28)


def test_embedded_subset_is_the_first_thousand(arrays: dict[str, np.ndarray]) -> None:
    embedded = load_embedded()
    for key in embedded:
        assert embedded[key].dtype == arrays[key].dtype
        assert embedded[key].tobytes() == arrays[key][:1000].tobytes()  # bit for bit


def test_fleuret_subset_equals_embedded_bit_for_bit(arrays: dict[str, np.ndarray]) -> None:
    from_files = fleuret_from_arrays(arrays, n_train=1000, n_test=1000)
    shipped = load_preset("fleuret")
    for field in ("x_train", "y_train", "x_test", "y_test", "labels_train", "labels_test"):
        a, b = getattr(from_files, field), getattr(shipped, field)
        assert a.dtype == b.dtype and torch.equal(a, b), field


def test_full_presets(arrays: dict[str, np.ndarray]) -> None:
    full = load_preset("fleuret", full=True, target_scale=0.9)  # the whole path, via the env
    assert full.x_train.shape == (60000, 784) and full.y_test.shape == (10000, 10)
    assert abs(full.x_train.mean().item()) < 1e-4 and full.y_train.max().item() == np.float32(0.9)
    fastai = fastai_from_arrays(arrays)
    assert fastai.x_train.shape == (50000, 784) and fastai.x_test.shape == (10000, 784)
    assert fastai.x_train.max().item() == 255 / 256 and fastai.y_train.dtype == torch.int64
    # y_valid as the fastai seeds print it: tensor([3, 8, 6,  ..., 5, 6, 8])
    assert fastai.y_test[:3].tolist() == [3, 8, 6] and fastai.y_test[-3:].tolist() == [5, 6, 8]
    plain = mnist_from_arrays(arrays)
    assert plain.x_train.shape == (60000, 784) and plain.x_train.max().item() == 1.0
    assert plain.y_test[:3].tolist() == [7, 2, 1]


def test_cli_verify_and_info(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "verify"]) == 0
    out, err = capsys.readouterr()
    assert "all 4 checksums match" in out and err == ""
    assert main(["data", "info"]) == 0
    out, _ = capsys.readouterr()
    assert "($HANDGRAD_DATA)" in out and "train    60000     33.318    78.567" in out
