"""One writer per run directory: an OS file lock held for a run's whole lifetime.

``with RunLock(run_dir):`` takes an exclusive ``fcntl.flock`` on ``<run_dir>/.handgrad.lock``
and writes the holder's pid, host and start time into it. The operating system releases the
lock when the process ends in any way (return, exception, SIGKILL, a crash), so a lock can never
outlive its holder: a lock file left by a dead process is stale by construction, and the next
writer takes it over (its previous holder is reported in :attr:`RunLock.stale`). A second
writer while the first is alive fails at once with one line naming the run and the holder's
pid; it never waits.

Lock files live on the run's file system; ``flock`` is reliable on local file systems (on some
network file systems it is emulated or absent; then an ``OSError`` is reported as such).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from handgrad.errors import HandgradError

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".handgrad.lock"


class RunLocked(HandgradError):
    """Another live process holds the run's lock."""


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (signal 0 probes without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_holder(path: Path) -> dict[str, Any]:
    """The holder record of a lock file (``pid``, ``host``, ``since``), or ``{}``."""
    try:
        text = path.read_text(errors="replace")[:4096]
        data = json.loads(text)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _holder_text(holder: dict[str, Any]) -> str:
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return "another process (pid unknown)"
    host = holder.get("host")
    where = f" on {host}" if isinstance(host, str) and host != socket.gethostname() else ""
    since = holder.get("since")
    when = ""
    if isinstance(since, int | float):
        when = f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}"
    return f"pid {pid}{where}{when}"


class RunLock:
    """An exclusive, non-blocking lock on a run directory, as a context manager.

    Attributes:
        run: the run directory.
        path: the lock file, ``<run>/.handgrad.lock``.
        stale: the holder record a dead process left in the lock file (``{"pid": ...}``), or
            None when the lock was free and clean. Set by :meth:`acquire`.

    Raises (from :meth:`acquire` / ``__enter__``):
        RunLocked: another live process holds the lock (the message names it and the pid).
        HandgradError: the lock file cannot be created (read-only run directory, ...).
    """

    def __init__(self, run: str | os.PathLike[str]) -> None:
        self.run = Path(run)
        self.path = self.run / LOCK_NAME
        self.stale: dict[str, Any] | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: RunLock.acquire called twice")
        if fcntl is None:
            raise HandgradError("run locks need fcntl.flock, which this platform lacks")
        for _ in range(100):  # retried only if the file is replaced while we lock it
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise self._locked_error() from None
                raise HandgradError(f"{self.path}: cannot lock the run ({exc.strerror})") from None
            # A releasing holder unlinks the file: make sure ours is still the one at the path.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            self._fd = fd
            self.stale = self._take_over()
            return self
        raise HandgradError(f"{self.path}: cannot lock the run (the lock file keeps changing)")

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise HandgradError(
                f"{self.run}: cannot lock the run for writing ({exc.strerror}: {self.path})"
            ) from None

    def _locked_error(self) -> RunLocked:
        holder = read_holder(self.path)
        pid = holder.get("pid")
        if (
            isinstance(pid, int)
            and not pid_alive(pid)
            and holder.get("host")
            in (
                None,
                socket.gethostname(),
            )
        ):
            who = f"a process that inherited the lock of pid {pid} (which has exited); stop it"
        else:
            who = _holder_text(holder)
        return RunLocked(
            f"{self.run}: another handgrad process is writing to this run ({who}); wait for "
            "it to finish, or stop it, then try again"
        )

    def _take_over(self) -> dict[str, Any] | None:
        assert self._fd is not None
        previous = read_holder(self.path)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        data = json.dumps(record).encode()
        with contextlib.suppress(OSError):  # a full disk: the lock holds, unlabelled
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        return previous or None

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still locked: a waiting opener re-checks the inode
        os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
