"""`handgrad data info|verify|show`, in process: exit codes, and one-line errors for bad input."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from handgrad.cli.main import main
from handgrad.data.idx import idx_bytes
from tests.data_fixtures import isolate, tiny_arrays, write_mnist_dir


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate(monkeypatch, tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["data", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("handgrad: error: ") or "handgrad data" in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def test_info_embedded(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "info", "--embedded")
    assert code == 0 and err == ""
    assert "embedded subset" in out
    assert "train     1000     32.701    77.810   97 116 99 93 105 92 94 117 87 100" in out
    assert "checksums: ok (4 of 4 files match)" in out


def test_info_falls_back_to_embedded_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "info")
    assert code == 0 and "embedded subset" in out
    assert err.startswith("note: full MNIST not found") and "--download" in err


def test_info_on_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_mnist_dir(tmp_path / "tiny")
    code, out, err = run(capsys, "info", "--data", str(tmp_path / "tiny"))
    assert code == 1  # the report is printed, but tiny files are not the official MNIST
    assert f"{tmp_path / 'tiny'} (--data)" in out and "train       12" in out
    assert "checksums: FAILED (0 of 4 files match)" in out and "MISMATCH" in out
    one_error_line(err, "train-images-idx3-ubyte.gz", "checksum mismatch", "(and 3 more)")


def test_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", "--embedded")
    assert code == 0 and "all 4 checksums match" in out
    write_mnist_dir(tmp_path / "tiny")
    code, out, err = run(capsys, "verify", "--data", str(tmp_path / "tiny"))
    assert code == 1 and out.count("MISMATCH") == 4
    one_error_line(err, "train-images-idx3-ubyte.gz: checksum mismatch", "6bbc9ace")


def test_verify_reports_unreadable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_mnist_dir(tmp_path / "d")
    path = tmp_path / "d" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    code, out, err = run(capsys, "verify", "--data", str(tmp_path / "d"))
    assert code == 1
    assert "FAILED    t10k-images-idx3-ubyte.gz" in out and "truncated gzip" in out
    one_error_line(err, "(and 3 more)")  # the tiny files are not the official MNIST either


def test_verify_needs_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "verify")
    assert code == 2
    one_error_line(err, "no MNIST files to verify", "--data DIR", "--embedded")


def test_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_png = tmp_path / "digits.png"
    code, out, _ = run(capsys, "show", "--embedded", "--n", "64", "--out", str(out_png))
    assert code == 0 and f"wrote {out_png}" in out
    assert out_png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    code, out, _ = run(
        capsys,
        "show",
        "--embedded",
        "--n",
        "5",
        "--split",
        "test",
        "--seed",
        "1",
        "--out",
        str(tmp_path / "five.png"),
    )
    assert code == 0 and "5 random test digits (seed 1)" in out
    # Only the two PNGs are written (the fixture's cache folder exists or not, by test order).
    written = sorted(p.name for p in tmp_path.iterdir() if p.name != "xdg-cache")
    assert written == ["digits.png", "five.png"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--n", "0"], ["--n", "positive"]),
        (["--n", "1001"], ["the train set has 1000 digits"]),
        (["--out", "digits.jpg"], ["use a .png file name"]),
        (["--out", "{tmp}/no/such/dir/digits.png"], ["no such directory"]),
        (["--split", "valid"], ["has train, test only"]),
    ],
)
def test_show_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragments: list[str]
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "d.png")]
    code, _, err = run(capsys, "show", "--embedded", *args)
    assert code == 2
    one_error_line(err, *fragments)
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.part"))


def _write_set(directory: Path, **replace: np.ndarray) -> Path:
    arrays = tiny_arrays()
    arrays.update(replace)
    write_mnist_dir(directory, arrays)
    return directory


def _truncate(directory: Path) -> Path:
    _write_set(directory)
    path = directory / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-9])
    return directory


def _not_gzip(directory: Path) -> Path:
    _write_set(directory)
    (directory / "t10k-images-idx3-ubyte.gz").write_text("<html>Service Unavailable</html>")
    return directory


def _wrong_magic(directory: Path) -> Path:
    _write_set(directory)
    labels = idx_bytes(np.zeros(6, np.uint8))
    (directory / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(labels))
    return directory


BAD_DIRS = {
    "missing-dir": (lambda d: d / "absent", ["absent: no such directory"]),
    "missing-file": (
        lambda d: (_write_set(d), (d / "train-images-idx3-ubyte.gz").unlink(), d)[2],
        ["missing train-images-idx3-ubyte.gz"],
    ),
    "truncated-gzip": (_truncate, ["train-labels-idx1-ubyte.gz", "truncated gzip"]),
    "not-gzip": (_not_gzip, ["t10k-images-idx3-ubyte.gz", "not a gzip file"]),
    "wrong-magic": (
        _wrong_magic,
        ["t10k-images-idx3-ubyte.gz: wrong IDX magic number 2049, expected 2051 (images)"],
    ),
    "count-mismatch": (
        lambda d: _write_set(d, test_labels=np.zeros(5, np.uint8)),
        ["t10k-images-idx3-ubyte.gz: 6 images but t10k-labels-idx1-ubyte.gz has 5 labels"],
    ),
    "label-range": (
        lambda d: _write_set(d, train_labels=np.full(12, 10, np.uint8)),
        ["train-labels-idx1-ubyte.gz: label 10 at index 0 is outside 0-9"],
    ),
    "not-28x28": (
        lambda d: _write_set(d, test_images=np.zeros((6, 28, 27), np.uint8)),
        ["t10k-images-idx3-ubyte.gz: images are 28x27, expected 28x28"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_DIRS))
@pytest.mark.parametrize("command", ["info", "show"])
def test_bad_data_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, command: str
) -> None:
    make, fragments = BAD_DIRS[case]
    directory = make(tmp_path / "data")
    extra = ["--out", str(tmp_path / "digits.png")] if command == "show" else []
    before = sorted(tmp_path.rglob("*"))
    code, out, err = run(capsys, command, "--data", str(directory), *extra)
    assert code == 2 and out == ""
    one_error_line(err, *fragments)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, nothing left behind


def test_pickle_info_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    parts = tuple(
        (
            (rng.integers(0, 256, (k, 784)) / np.float32(256)).astype(np.float32),
            rng.integers(0, 10, k).astype(np.int64),
        )
        for k in (20, 5, 5)
    )
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(parts, protocol=2)))
    code, out, _ = run(capsys, "info", "--pickle", str(path))
    assert code == 0 and "valid        5" in out and "none published" in out
    code, out, _ = run(
        capsys,
        "show",
        "--pickle",
        str(path),
        "--split",
        "valid",
        "--n",
        "5",
        "--out",
        str(tmp_path / "v.png"),
    )
    assert code == 0 and (tmp_path / "v.png").exists()


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_malicious_pickle_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(Payload(marker), protocol=2)))
    code, out, err = run(capsys, "info", "--pickle", str(path))
    assert code == 2 and out == ""
    one_error_line(
        err,
        "mnist.pkl.gz: refused to load",
        "exec, which is not part of a numpy array",
        "nothing was run",
    )
    assert not marker.exists()


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "frob")
    assert code == 2 and "invalid choice 'frob'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "show", "--embedded", "--pickle", "x")
    assert code == 2 and "not allowed with argument" in err
    code, _, err = run(capsys)
    assert code == 2 and "info" in err  # the data sub-commands are listed
