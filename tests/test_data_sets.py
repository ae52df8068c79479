"""Fashion-MNIST and KMNIST presets: own folders, published checksums, never another set."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from handgrad.data import load_preset, sets
from handgrad.data.checksums import IMAGE_SETS, MNIST_FILES
from handgrad.data.idx import idx_bytes
from handgrad.errors import HandgradError
from tests.data_fixtures import SHARED_MNIST, isolate, tiny_arrays
from tests.test_data_sources import Server


def write_gz_set(directory: Path, seed: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A tiny set as .gz files; returns the arrays and the MD5 of each .gz file by key."""
    arrays = tiny_arrays(seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    md5s = {}
    for spec in MNIST_FILES:
        packed = gzip.compress(idx_bytes(arrays[spec.key]), mtime=0)
        (directory / spec.name).write_bytes(packed)
        md5s[spec.key] = hashlib.md5(packed).hexdigest()
    return arrays, md5s


@pytest.fixture
def two_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Tiny 'fashion-mnist' and 'kmnist' sets whose checksums stand in for the published ones,
    each served from its own 127.0.0.1 mirror."""
    cache = isolate(monkeypatch, tmp_path)
    made: dict[str, object] = {"cache": cache}
    for seed, name in enumerate(("fashion-mnist", "kmnist"), start=5):
        arrays, md5s = write_gz_set(tmp_path / "site" / name, seed)
        monkeypatch.setitem(IMAGE_SETS, name, dataclasses.replace(IMAGE_SETS[name], md5=md5s))
        made[name] = arrays
    server = Server(tmp_path / "site")
    monkeypatch.setattr(
        sets,
        "SET_MIRRORS",
        {n: [f"{server.url}/{n}/"] for n in ("fashion-mnist", "kmnist")},
    )
    made["server"] = server
    yield made
    server.close()


def test_published_checksums_and_locations() -> None:
    fashion, kmnist = IMAGE_SETS["fashion-mnist"], IMAGE_SETS["kmnist"]
    assert fashion.md5["train_images"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert fashion.md5["test_labels"] == "bb300cfdad3c16e7a12a480ee83cd310"
    assert kmnist.md5["train_images"] == "bdb82020997e1d708af4cf47b453dcf7"
    assert kmnist.md5["test_labels"] == "7320c461ea6c1c855c0b718fb2a4b134"
    assert fashion.md5_of == kmnist.md5_of == "gzip"
    assert sets.SET_MIRRORS["kmnist"][0].startswith("http://codh.rois.ac.jp/kmnist/")
    assert (
        len({*fashion.md5.values(), *kmnist.md5.values(), *IMAGE_SETS["mnist"].md5.values()}) == 12
    )


def test_download_into_own_cache_folder_then_reuse(two_sets: dict) -> None:
    cache: Path = two_sets["cache"]
    ds = load_preset("fashion-mnist", dtype=torch.float64)
    arrays = two_sets["fashion-mnist"]
    assert ds.name == "fashion-mnist" and "Fashion-MNIST" in ds.description
    assert ds.source == str(cache.parent / "fashion-mnist")
    np.testing.assert_array_equal(ds.x_train.numpy() * 255, arrays["train_images"].reshape(-1, 784))
    np.testing.assert_array_equal(ds.y_test.numpy(), arrays["test_labels"])
    km = load_preset("kmnist")
    assert km.source == str(cache.parent / "kmnist")
    np.testing.assert_array_equal(km.labels_train.numpy(), two_sets["kmnist"]["train_labels"])
    served = len(two_sets["server"].requests)
    assert served == 8
    load_preset("fashion-mnist", download=False)  # from the cache, no request
    assert len(two_sets["server"].requests) == served
    assert not (cache / "train-images-idx3-ubyte.gz").exists()  # MNIST's folder untouched


def test_a_folder_of_one_set_never_feeds_another(
    two_sets: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kfolder = tmp_path / "site" / "kmnist"
    with pytest.raises(HandgradError, match="the folder holds Kuzushiji-MNIST, not Fashion-MNIST"):
        load_preset("fashion-mnist", data_dir=kfolder)
    # $HANDGRAD_DATA at another set: passed over, the preset's own cache folder is used.
    monkeypatch.setenv("HANDGRAD_DATA", str(kfolder))
    ds = load_preset("fashion-mnist")
    np.testing.assert_array_equal(ds.labels_test.numpy(), two_sets["fashion-mnist"]["test_labels"])
    assert ds.source.endswith("fashion-mnist")
    # $HANDGRAD_DATA at this set's folder is used.
    assert load_preset("kmnist").source == str(kfolder)


def test_env_at_other_set_without_cache_says_so(
    two_sets: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANDGRAD_DATA", str(tmp_path / "site" / "kmnist"))
    with pytest.raises(HandgradError) as info:
        load_preset("fashion-mnist", download=False)
    message = str(info.value)
    assert "$HANDGRAD_DATA" in message and "holds Kuzushiji-MNIST" in message
    assert "download disabled" in message and "--data DIR" in message


def test_damaged_and_uncompressed_files_refused(two_sets: dict, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    write_gz_set(folder, seed=5)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    content = gzip.decompress(labels.read_bytes())
    labels.write_bytes(gzip.compress(content[:-1] + bytes([(content[-1] + 1) % 10]), mtime=0))
    with pytest.raises(HandgradError, match=r"checksum mismatch.*not the official Fashion-MNIST"):
        load_preset("fashion-mnist", data_dir=folder)
    labels.unlink()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(content)
    with pytest.raises(HandgradError, match=r"checksums are of the \.gz files"):
        load_preset("fashion-mnist", data_dir=folder)
    with pytest.raises(HandgradError, match="no such directory"):
        load_preset("kmnist", data_dir=tmp_path / "none")


def test_bad_download_leaves_nothing(two_sets: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(
        IMAGE_SETS,
        "kmnist",
        dataclasses.replace(IMAGE_SETS["kmnist"], md5={f.key: "0" * 32 for f in MNIST_FILES}),
    )
    with pytest.raises(HandgradError, match=r"Kuzushiji-MNIST not found.*MD5"):
        load_preset("kmnist")
    folder = two_sets["cache"].parent / "kmnist"
    assert not folder.exists() or list(folder.iterdir()) == []


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="needs ../shared/data/mnist")
def test_real_mnist_folder_is_not_fashion_mnist(tmp_path: Path, monkeypatch) -> None:
    """With the published checksums: the real MNIST files are recognised as MNIST."""
    isolate(monkeypatch, tmp_path)
    assert sets.identify(SHARED_MNIST) == "mnist"
    with pytest.raises(HandgradError, match="the folder holds MNIST, not Fashion-MNIST"):
        load_preset("fashion-mnist", data_dir=SHARED_MNIST)
    monkeypatch.setenv("HANDGRAD_DATA", str(SHARED_MNIST))
    with pytest.raises(HandgradError, match=r"holds MNIST; cache .*kmnist incomplete"):
        load_preset("kmnist", download=False)
