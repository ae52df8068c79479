"""One writer per run directory: a second writer gets one line naming the run and the holder's
pid; the lock goes with its holder however it ends; a dead holder's lock file is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from handgrad.errors import HandgradError
from handgrad.train.lock import LOCK_NAME, RunLock, RunLocked, pid_alive

SRC = str(Path(__file__).resolve().parents[1] / "src")
TIMEOUT = 60

HOLDER = """
import sys, time
from handgrad.train.lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
how = sys.stdin.readline().strip()
if how == "raise":
    raise SystemExit("bye")
if how == "exit":
    import os
    os._exit(3)
time.sleep(600)
"""


class Holder:
    """A child process that takes the lock of ``run`` and waits for a word on stdin."""

    def __init__(self, run: Path) -> None:
        env = {**os.environ, "PYTHONPATH": SRC}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(run)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == "locked", line
        self.pid = self.proc.pid

    def say(self, word: str) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        return self.proc.wait(timeout=TIMEOUT)

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=TIMEOUT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:  # no process outlives its test
        holder.close()


def test_second_writer_in_another_process_is_refused(tmp_path: Path, holders: list[Holder]) -> None:
    holder = Holder(tmp_path)
    holders.append(holder)
    with pytest.raises(RunLocked) as info:
        RunLock(tmp_path).acquire()
    message = str(info.value)
    assert message.startswith(
        f"{tmp_path}: another handgrad process is writing to this run (pid {holder.pid}, since "
    )
    assert message.endswith("wait for it to finish, or stop it, then try again")
    assert "\n" not in message
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid


def test_sigkilled_holder_releases_and_its_lock_file_is_taken_over(
    tmp_path: Path, holders: list[Holder]
) -> None:
    holder = Holder(tmp_path)
    holders.append(holder)
    assert holder.kill() == -signal.SIGKILL
    assert (tmp_path / LOCK_NAME).exists()  # left behind: stale
    assert not pid_alive(holder.pid)
    with RunLock(tmp_path) as lock:
        assert lock.stale is not None and lock.stale["pid"] == holder.pid
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize(("word", "code"), [("raise", 1), ("exit", 3)])
def test_lock_goes_with_its_holder_however_it_ends(
    tmp_path: Path, holders: list[Holder], word: str, code: int
) -> None:
    holder = Holder(tmp_path)
    holders.append(holder)
    assert holder.say(word) == code
    with RunLock(tmp_path) as lock:
        assert lock.held


def test_second_writer_in_this_process_is_refused_and_release_frees(tmp_path: Path) -> None:
    with RunLock(tmp_path) as first:
        assert first.held and first.stale is None
        with pytest.raises(RunLocked, match=rf"\(pid {os.getpid()}, since "):
            RunLock(tmp_path).acquire()
    assert not first.held and not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path) as again:
        assert again.held and again.stale is None


def test_released_on_an_exception(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), RunLock(tmp_path):
        1 / 0  # noqa: B018
    with RunLock(tmp_path) as lock:
        assert lock.held


def test_stale_lock_file_of_a_dead_pid(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=TIMEOUT)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "since": 0}))
    with RunLock(tmp_path) as lock:
        assert lock.stale == {"pid": dead.pid, "since": 0}
    (tmp_path / LOCK_NAME).write_text("garbage")  # unreadable holder record: still taken over
    with RunLock(tmp_path) as lock:
        assert lock.stale is None and lock.held


def test_run_directory_missing(tmp_path: Path) -> None:
    with pytest.raises(HandgradError) as info:
        RunLock(tmp_path / "nope").acquire()
    assert str(info.value) == (
        f"{tmp_path / 'nope'}: cannot lock the run for writing (No such file or directory: "
        f"{tmp_path / 'nope' / LOCK_NAME})"
    )


def test_acquire_twice_is_a_bug(tmp_path: Path) -> None:
    lock = RunLock(tmp_path).acquire()
    try:
        with pytest.raises(RuntimeError, match="called twice"):
            lock.acquire()
    finally:
        lock.release()
    lock.release()  # idempotent
