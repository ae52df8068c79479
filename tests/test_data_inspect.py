"""``handgrad.data.inspect`` with plain arguments: the figures, verdicts and digits that
``handgrad data info|verify|show`` print, without the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from handgrad.cli import data_cmd
from handgrad.data import inspect, sources
from handgrad.data.sources import FileCheck
from handgrad.errors import HandgradError
from tests.data_fixtures import isolate, write_mnist_dir


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate(monkeypatch, tmp_path)


def loaded_of(images: np.ndarray, labels: np.ndarray, checks: list[FileCheck]) -> inspect.Loaded:
    splits = {"train": (images, labels), "test": (images[:2], labels[:2])}
    return inspect.Loaded(splits, checks, "made here", 0.5)


def test_the_cli_names_the_same_environment_variable() -> None:
    assert data_cmd.ENV_VAR == sources.ENV_VAR


def test_split_stats_count_each_class_and_every_pixel() -> None:
    images = np.array([[[0, 255]], [[10, 20]], [[30, 40]]], dtype=np.uint8)  # (3, 1, 2)
    labels = np.array([3, 3, 9], dtype=np.uint8)
    train, test = inspect.split_stats(loaded_of(images, labels, []))
    assert (train.split, train.records, test.records) == ("train", 3, 2)
    assert train.counts == (0, 0, 0, 2, 0, 0, 0, 0, 0, 1)
    assert train.mean == pytest.approx(np.mean([0, 255, 10, 20, 30, 40]))
    assert train.std == pytest.approx(np.std([0, 255, 10, 20, 30, 40]))
    assert test.counts[3] == 2 and sum(test.counts) == 2


def test_pixel_format_tells_bytes_from_a_pickles_floats() -> None:
    labels = np.zeros(3, dtype=np.int64)
    as_bytes = loaded_of(np.zeros((3, 28, 28), dtype=np.uint8), labels, [])
    assert inspect.pixel_format(as_bytes) == "pixels are uint8 0-255, images 28x28"
    floats = np.full((3, 784), 0.25, dtype=np.float32)
    floats[1, 5] = 0.996
    text = inspect.pixel_format(loaded_of(floats, labels, []))
    assert text == "pixels are float32 as stored, max 0.99599999, images flattened to 784"


def check(name: str, md5: str, expected: str, error: str = "") -> FileCheck:
    return FileCheck(name, Path("/d") / name, md5, expected, error)


def test_first_failure_names_the_first_file_and_counts_the_rest() -> None:
    good = check("a.gz", "1" * 32, "1" * 32)
    wrong = check("b.gz", "2" * 32, "3" * 32)
    broken = check("c.gz", "", "4" * 32, error="truncated gzip")
    assert inspect.first_failure([good]) is None
    assert inspect.first_failure([good, wrong, broken]) == (
        f"/d/b.gz: checksum mismatch (MD5 {'2' * 32}, expected {'3' * 32}) (and 1 more)"
    )
    assert inspect.first_failure([broken]) == "/d/c.gz: truncated gzip"
    lines = inspect.check_lines([good, wrong, broken])
    assert [line.split()[0] for line in lines] == ["ok", "MISMATCH", "FAILED"]
    assert lines[2].endswith("truncated gzip")


def test_info_lines_end_with_the_verdict_and_a_line_per_file() -> None:
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    labels = np.array([1, 2, 2])
    wrong = check("b.gz", "2" * 32, "3" * 32)
    lines = inspect.info_lines(loaded_of(images, labels, [check("a", "1", "1"), wrong]))
    assert lines[0] == "source:    made here"
    assert lines[1] == "load time: 0.50 s (read, decompress, check, MD5)"
    assert lines[3].split() == ["train", "3", "0.000", "0.000", "0", "1", "2"] + ["0"] * 7
    assert lines[-3] == "checksums: FAILED (1 of 2 files match)"
    assert lines[-1].startswith("  MISMATCH  b.gz")
    unchecked = inspect.info_lines(loaded_of(images, labels, []))
    assert unchecked[-1] == "checksums: none published for this file; its structure was checked"


def test_verify_source_checks_the_embedded_subset_or_a_folder(tmp_path: Path) -> None:
    source, checks = inspect.verify_source(embedded=True)
    assert source == sources.EMBEDDED_SOURCE and len(checks) == 4 and all(c.ok for c in checks)
    write_mnist_dir(tmp_path / "tiny")
    source, checks = inspect.verify_source(tmp_path / "tiny")
    assert source == f"{tmp_path / 'tiny'} (--data)"
    assert len(checks) == 4 and not any(c.ok for c in checks)  # tiny files, not the real MNIST
    with pytest.raises(HandgradError, match="no MNIST files to verify"):
        inspect.verify_source(None)


def test_pick_digits_first_or_seeded() -> None:
    images = np.arange(10 * 4, dtype=np.uint8).reshape(10, 2, 2)
    labels = np.arange(10) % 10
    loaded = loaded_of(images, labels, [])
    first, first_labels, what = inspect.pick_digits(loaded, "train", 3)
    assert np.array_equal(first, images[:3]) and list(first_labels) == [0, 1, 2]
    assert what == "train digits 0-2"
    drawn, drawn_labels, what = inspect.pick_digits(loaded, "train", 4, seed=5)
    assert what == "4 random train digits (seed 5)"
    assert list(drawn_labels) == sorted(set(drawn_labels)) and len(drawn_labels) == 4
    assert np.array_equal(drawn, images[drawn_labels])  # label i is image i here
    again = inspect.pick_digits(loaded, "train", 4, seed=5)[1]
    assert list(again) == list(drawn_labels)


def test_pick_digits_scales_a_pickles_floats_for_display() -> None:
    floats = np.array([[0.0, 0.5, 1.0]] * 3, dtype=np.float32)
    scaled, _, _ = inspect.pick_digits(loaded_of(floats, np.zeros(3), []), "train", 2)
    assert scaled.dtype == np.uint8 and scaled[0].tolist() == [0, 128, 255]


def test_pick_digits_refuses_a_missing_split_or_too_many() -> None:
    loaded = loaded_of(np.zeros((3, 2, 2), dtype=np.uint8), np.zeros(3), [])
    with pytest.raises(ValueError, match="--split valid: made here has train, test only"):
        inspect.pick_digits(loaded, "valid", 1)
    with pytest.raises(ValueError, match="--n: the test set has 2 digits, got 3"):
        inspect.pick_digits(loaded, "test", 3)


def test_check_show_options() -> None:
    inspect.check_show_options(1, "grid.PNG")
    with pytest.raises(ValueError, match="--n: expected a positive number"):
        inspect.check_show_options(0, "grid.png")
    with pytest.raises(ValueError, match=r"use a \.png file name"):
        inspect.check_show_options(4, "grid.jpg")
