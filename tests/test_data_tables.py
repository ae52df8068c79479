"""The user's own tables: CSV/NPZ/NPY parsing, errors naming row and column, limits, splits."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from handgrad.data import tables
from handgrad.data.tables import read_table, split_and_standardize
from handgrad.errors import HandgradError


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_classification_and_regression(tmp_path: Path) -> None:
    csv = write(tmp_path, "a,b,kind,price\n1,2.5,cat,10.5\n3,-4e1,dog,11\n\n5,6,cat,12.25\n")
    table = read_table(csv, "kind")
    assert table.task == "classification" and list(table.classes) == ["cat", "dog"]
    assert table.feature_names == ["a", "b", "price"]
    np.testing.assert_array_equal(table.x, [[1, 2.5, 10.5], [3, -40, 11], [5, 6, 12.25]])
    assert list(table.y) == ["cat", "dog", "cat"]
    with pytest.raises(HandgradError, match="row 2, column 'kind': 'cat' is not a number"):
        read_table(csv, "price")  # with price the target, kind is a feature
    reg = read_table(write(tmp_path, "a,price\n1,10.5\n3,11\n5,12.25\n", "r.csv"), "price")
    assert reg.task == "regression" and reg.y.dtype == np.float64
    ints = write(tmp_path, "x,label\n0.1,1\n0.2,0\n0.3,1\n", "i.csv")
    assert read_table(ints, "label").task == "classification"
    assert list(read_table(ints, "label").classes) == [0, 1]
    assert read_table(ints, "label", task="regression").task == "regression"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,y\n1,0\n2,1\nabc,0\n", "row 4, column 'a': 'abc' is not a number"),
        ("a,y\n1,0\n,1\n", "row 3, column 'a': missing value"),
        ("a,y\n1,0\n2,NA\n", "row 3, column 'y': missing target value"),
        ("a,y\n1,0\n2\n", "row 3: 1 values, but the header has 2 columns"),
        ("a,y\n1,5\n2,5\n", "target 'y' has one class"),
        ("a,b\n1,2\n", "no column 'y'; the columns are a, b"),
        ("", "empty; expected a header row"),
        ("a,y\n", "a header but no rows"),
        ("a,a,y\n1,2,3\n", "column names repeat: a"),
        ("a,y\ninf,1\n2,0\n", "row 2, column 'a': 'inf' is not a number"),
    ],
)
def test_csv_errors_name_row_and_column(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(HandgradError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_table(write(tmp_path, text), "y")


def test_npz_and_npy_pair(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.array([0, 1, 0, 1, 1, 0])
    np.savez_compressed(tmp_path / "d.npz", x=x, y=y)
    table = read_table(tmp_path / "d.npz")
    np.testing.assert_array_equal(table.x, x)
    assert table.x.dtype == np.float64
    assert table.task == "classification" and table.feature_names == ["x0", "x1"]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y * 0.5 + 0.1)
    pair = read_table(tmp_path / "x.npy", y_path=tmp_path / "y.npy")
    assert pair.task == "regression"
    np.testing.assert_allclose(pair.y, y * 0.5 + 0.1)


def test_npz_and_npy_errors(tmp_path: Path) -> None:
    x = np.ones((4, 2))
    x[2, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.array([0, 1, 0, 1]))
    with pytest.raises(HandgradError, match=r"row 2, column 1: nan \(not a finite number\)"):
        read_table(tmp_path / "nan.npz")
    np.savez(tmp_path / "noy.npz", x=np.ones((3, 2)))
    with pytest.raises(HandgradError, match="no array 'y'"):
        read_table(tmp_path / "noy.npz")
    np.savez(tmp_path / "len.npz", x=np.ones((3, 2)), y=np.array([0, 1]))
    with pytest.raises(HandgradError, match="3 rows of x but 2 values of y"):
        read_table(tmp_path / "len.npz")
    np.savez(tmp_path / "obj.npz", x=np.ones((2, 2)), y=np.array([1, "a"], dtype=object))
    with pytest.raises(HandgradError, match="object arrays are refused"):
        read_table(tmp_path / "obj.npz")
    np.save(tmp_path / "x1.npy", np.ones(3))
    np.save(tmp_path / "y1.npy", np.ones(3))
    with pytest.raises(HandgradError, match=r"expected shape \(N, D\), got \(3,\)"):
        read_table(tmp_path / "x1.npy", y_path=tmp_path / "y1.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(HandgradError, match=r"not an \.npz archive"):
        read_table(tmp_path / "junk.npz")
    with pytest.raises(HandgradError, match=r"expected a \.csv, \.npz or \.npy"):
        read_table(tmp_path / "data.parquet")


def test_limits_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A header declaring a huge array is refused from the header alone (no allocation)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 10**3)}
    )
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY\x01\x00" + header.getvalue()[8:])
    np.save(tmp_path / "y.npy", np.ones(3))
    with pytest.raises(HandgradError, match=r"1,000,000,000,000 cells, more than the limit"):
        read_table(tmp_path / "x.npy", y_path=tmp_path / "y.npy")
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", b"\0" * (3 << 20))
        z.writestr("y.npy", b"")
    monkeypatch.setattr(tables, "MAX_FILE_BYTES", 2 << 20)
    with pytest.raises(HandgradError, match=r"x is 3,145,728 bytes uncompressed, more than"):
        read_table(tmp_path / "bomb.npz")
    big = write(tmp_path, "a,y\n" + "1,0\n" * (600 << 10), "big.csv")
    with pytest.raises(HandgradError, match=r"2,457,604 bytes, more than the limit of 2,097,152"):
        read_table(big, "y")
    monkeypatch.setattr(tables, "MAX_CELLS", 1000)
    many = write(tmp_path, "a,b,y\n" + "1,2,0\n2,1,1\n" * 300, "many.csv")
    with pytest.raises(HandgradError, match="more than the limit of 1,000 cells"):
        read_table(many, "y")


def test_split_standardizes_with_training_statistics_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, (200, 3))
    x[:, 2] = 7.0  # a constant column: std 0 becomes 1
    np.savez(tmp_path / "d.npz", x=x, y=rng.normal(size=200))
    table = read_table(tmp_path / "d.npz")
    split = split_and_standardize(table, 0.25, seed=4)
    assert len(split.x_valid) == 50 and len(split.x_train) == 150
    np.testing.assert_allclose(split.x_train[:, :2].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(split.x_train[:, :2].std(0), 1, atol=1e-12)
    assert abs(split.x_valid[:, :2].mean()) > 1e-6  # valid is not standardized on itself
    np.testing.assert_array_equal(split.x_train[:, 2], 0)
    assert split.std[2] == 1
    again = split_and_standardize(table, 0.25, seed=4)
    np.testing.assert_array_equal(again.x_valid, split.x_valid)  # seeded
    other = split_and_standardize(table, 0.25, seed=5)
    assert not np.array_equal(other.y_valid, split.y_valid)
