"""Run records on disk: find_run takes its argument literally, temporaries a killed writer left
are recognised and removed, and write errors are one line naming the file, leaving no half file."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from handgrad.cli.main import main
from handgrad.errors import HandgradError
from handgrad.train import records as rec
from handgrad.train.records import find_run

SRC = str(Path(__file__).resolve().parents[1] / "src")


def make_run(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / rec.CONFIG).write_text("{}")
    return path


# -- find_run -------------------------------------------------------------------------------
@pytest.fixture
def in_folder_with_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd = a folder that holds a ``runs/`` with a run in it (what tripped the README)."""
    make_run(tmp_path / "runs" / "mlp-20261201-101010")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("run", ["/no/such/run", "/", "a/b/c", "../x", "*", "mlp-*", "[a]"])
def test_find_run_takes_the_argument_literally(in_folder_with_runs: Path, run: str) -> None:
    with pytest.raises(HandgradError) as info:
        find_run(run)
    assert str(info.value) in (
        f"{run}: no such run directory (looked in . and runs/)",
        f"{run}: not a run directory (no config.json)",  # "/" exists but is no run
    )


def test_find_run_pattern_is_not_a_glob(in_folder_with_runs: Path) -> None:
    star = make_run(in_folder_with_runs / "runs" / "*-20261201-101010")
    assert find_run("*") == Path("runs") / "*-20261201-101010"
    assert star.is_dir()


def test_find_run_picks_the_latest_of_that_name_only(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    for name in (
        "mlp-20261201-101010",
        "mlp-20261201-101010-2",
        "mlp-20261201-101010-10",
        "mlp-20261130-235959-99",
        "mlp-wide-20261231-000000",
        "mlpx-20261231-000000",
    ):
        make_run(out / name)  # fmt: skip
    (out / "mlp-20261231-000000").mkdir()  # no config.json: not a run
    assert find_run("mlp", out) == out / "mlp-20261201-101010-10"
    assert find_run("mlp-wide", out) == out / "mlp-wide-20261231-000000"
    assert find_run(str(out / "mlpx-20261231-000000"), out) == out / "mlpx-20261231-000000"
    assert find_run("mlpx-20261231-000000", out) == out / "mlpx-20261231-000000"


@pytest.mark.parametrize("run", ["", "  "])
def test_find_run_empty_name(tmp_path: Path, run: str) -> None:
    with pytest.raises(HandgradError, match=r"^empty run name: give a run directory"):
        find_run(run, tmp_path)


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "/no/such/run"],
        ["evaluate", "*"],
        ["predict", "/no/such/run", "--index", "0"],
        ["train", "--resume", "/no/such/run"],
    ],
)
def test_cli_from_a_folder_that_holds_runs(
    in_folder_with_runs: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    assert err.strip().splitlines() == [
        f"handgrad: error: {argv[1] if argv[0] != 'train' else argv[2]}: no such run directory "
        "(looked in . and runs/)"
    ]


# -- temporaries ----------------------------------------------------------------------------
def test_temp_names_are_recognisable(tmp_path: Path) -> None:
    target = tmp_path / rec.CHECKPOINT
    tmp = rec.temp_name(target)
    assert tmp.parent == tmp_path and rec.is_own_temp(tmp.name)
    match = rec.TEMP_PATTERN.fullmatch(tmp.name)
    assert match and match["target"] == rec.CHECKPOINT and match["pid"] == str(os.getpid())


def test_remove_stale_temps_removes_only_handgrads_own(tmp_path: Path) -> None:
    own = [
        f".{rec.CHECKPOINT}.handgrad-123-0123abcd.tmp",
        ".anything.png.handgrad-9-ffffffff.tmp",
        f".{rec.METRICS}.89abcdef.tmp",  # the naming before the pid was added
        ".curves.png.00000000.tmp",
    ]
    foreign = [
        "notes.tmp",
        ".notes.txt.0123abcd.tmp",  # old naming, but not a run file: not ours to remove
        f".{rec.CHECKPOINT}.handgrad-x-0123abcd.tmp",
        f".{rec.CHECKPOINT}.0123abcd.tmp.bak",
        rec.CHECKPOINT,
        rec.CONFIG,
    ]
    for name in own + foreign:
        (tmp_path / name).write_bytes(b"x" * 10)
    (tmp_path / f".{rec.MODEL}.handgrad-1-00000000.tmp").mkdir()  # a directory: left alone
    removed = rec.remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(own)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([*foreign, f".{rec.MODEL}.handgrad-1-00000000.tmp"])
    assert rec.remove_stale_temps(tmp_path) == []


def test_temp_left_by_a_killed_writer_is_removed(tmp_path: Path) -> None:
    target = tmp_path / rec.CHECKPOINT
    target.write_bytes(b"old")
    code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from handgrad.train import records as rec\n"
        "os.replace = lambda a, b: (print('written', flush=True), time.sleep(60))\n"
        "rec.atomic_write(Path(sys.argv[1]), b'n' * 1_000_000)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "written"
        child.send_signal(signal.SIGKILL)  # killed between the write and the rename
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    (left,) = [p for p in tmp_path.iterdir() if p.name != rec.CHECKPOINT]
    assert left.stat().st_size == 1_000_000 and rec.is_own_temp(left.name)
    assert rec.remove_stale_temps(tmp_path) == [left]
    assert [p.name for p in tmp_path.iterdir()] == [rec.CHECKPOINT]
    assert target.read_bytes() == b"old"


# -- write errors ---------------------------------------------------------------------------
def fail_with(code: int) -> object:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize(
    ("where", "code"),
    [("fsync", errno.ENOSPC), ("open", errno.EROFS), ("write", errno.EDQUOT)],
)
def test_atomic_write_error_is_one_line_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, code: int
) -> None:
    target = tmp_path / rec.CHECKPOINT
    target.write_bytes(b"previous")
    monkeypatch.setattr(rec.os, where, fail_with(code))
    with pytest.raises(HandgradError) as info:
        rec.atomic_write(target, b"new" * 1000)
    monkeypatch.undo()
    assert str(info.value) == (
        f"{target}: cannot write ({os.strerror(code)}); the previous version is intact"
    )
    assert ".tmp" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == [rec.CHECKPOINT]
    assert target.read_bytes() == b"previous"


def test_atomic_write_real_errors(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / rec.CONFIG
    with pytest.raises(HandgradError) as info:
        rec.atomic_write(missing, b"{}")
    assert str(info.value) == (
        f"{missing}: cannot write (No such file or directory); nothing was written"
    )
    directory = tmp_path / rec.MODEL
    directory.mkdir()  # a directory where the file should go: the rename fails
    with pytest.raises(HandgradError) as info:
        rec.atomic_write(directory, b"x")
    assert str(info.value).startswith(f"{directory}: cannot write (Is a directory)")
    assert sorted(p.name for p in tmp_path.iterdir()) == [rec.MODEL]


def test_full_disk_during_a_metrics_append_keeps_whole_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec.append_metrics(tmp_path, {"step": 0, "train_loss": 1.0})
    before = (tmp_path / rec.METRICS).read_bytes()
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 5:
            return real_write(fd, bytes(data)[:5])  # a short write, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rec.os, "write", half_then_full)
    with pytest.raises(HandgradError) as info:
        rec.append_metrics(tmp_path, {"step": 5, "train_loss": 0.5})
    monkeypatch.undo()
    assert str(info.value) == (
        f"{tmp_path / rec.METRICS}: cannot write (No space left on device); "
        "the records before are intact"
    )
    assert (tmp_path / rec.METRICS).read_bytes() == before
    assert rec.read_metrics(tmp_path) == [{"step": 0, "train_loss": 1.0}]


def test_plots_are_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from handgrad.train import plots

    records = [{"step": 0, "train_loss": 1.0, "train_error": 0.5},
               {"step": 5, "train_loss": 0.5, "train_error": 0.25}]  # fmt: skip
    path = plots.plot_curves(records, tmp_path / "curves.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    monkeypatch.setattr(rec.os, "fsync", fail_with(errno.ENOSPC))
    with pytest.raises(HandgradError) as info:
        plots.plot_curves(records, tmp_path / "again.png")
    assert str(info.value) == (
        f"{tmp_path / 'again.png'}: cannot write (No space left on device); nothing was written"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]


def test_a_checkpoint_that_is_not_a_regular_file_is_never_read(tmp_path: Path) -> None:
    (tmp_path / rec.CHECKPOINT).symlink_to("/dev/zero")
    with pytest.raises(HandgradError) as info:
        rec.load_checkpoint(tmp_path / rec.CHECKPOINT)
    assert str(info.value) == (
        f"{tmp_path / rec.CHECKPOINT}: not a regular file, expected a checkpoint"
    )
