"""What a run leaves on disk, and how it is written so that a crash never loses it.

A run directory ``<out>/<name>-<YYYYmmdd-HHMMSS>/`` holds:

- ``config.json``: the :class:`~handgrad.train.config.TrainConfig`; it reproduces the run.
- ``metrics.jsonl``: one JSON object per evaluation (see ``handgrad.train.loop``).
- ``checkpoint.safetensors``: the latest checkpoint: tensors ``model.<key>`` (the state dict),
  ``optim.<buffer>.<i>`` (optimizer state), ``rng.torch`` (torch's CPU generator state as
  uint8) and ``loop.<name>`` (the loop's running sums); scalars as JSON strings in the
  safetensors metadata. Never pickle.
- ``model.safetensors``: the final state dict alone, with torch.nn's keys, so that
  ``torch.nn.Sequential(...).load_state_dict(safetensors.torch.load_file(path), strict=True)``
  works.
- PNG plots (``handgrad.train.plots``).

Every file but ``metrics.jsonl`` (appended line by line) is written atomically: to a temporary
file in the same directory, flushed and fsynced, then renamed over the old one with
``os.replace``. A crash or a full disk mid-write leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import Tensor

from handgrad.errors import HandgradError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.safetensors"
MODEL = "model.safetensors"
BEST = "best.safetensors"  # --keep-best: the weights at the best validation figure
FORMAT = "handgrad-checkpoint/1"


# -- run directories ------------------------------------------------------------------------
def check_writable(out: str | os.PathLike[str]) -> Path:
    """Prove that a run directory can be created under ``out`` (creating ``out`` to try, and
    removing what it created); return ``out``.

    Raises:
        HandgradError: the directory cannot be created or written (before any training).
    """
    path = Path(out).expanduser()
    missing = [p for p in [path, *path.parents] if not p.exists()]  # deepest first
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".handgrad-write-test-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
        for created in missing:  # leave no trace until a run really starts
            created.rmdir()
    except OSError as exc:
        raise HandgradError(
            f"{path}: cannot write run directories there ({exc.strerror or exc}); "
            "choose another with --out DIR"
        ) from None
    return path


def new_run_dir(out: str | os.PathLike[str], name: str) -> Path:
    """Create and return a fresh ``<out>/<name>-<YYYYmmdd-HHMMSS>[-k]/``."""
    base = check_writable(out)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HandgradError(f"{base}: cannot create it ({exc.strerror or exc})") from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1, 1000):
        path = base / (f"{name}-{stamp}" if k == 1 else f"{name}-{stamp}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise HandgradError(f"{path}: cannot create run directory ({exc.strerror})") from None
        return path
    raise HandgradError(f"{base}: too many runs named {name}-{stamp}")


_STAMP = re.compile(r"-(\d{8}-\d{6})(?:-(\d+))?")


def find_run(run: str | os.PathLike[str], out: str | os.PathLike[str] = "runs") -> Path:
    """The run directory ``run`` names: a path, a directory under ``out``, or the latest run
    under ``out`` named ``run-<YYYYmmdd-HHMMSS>[-k]`` (as :func:`new_run_dir` names them).

    ``run`` is taken literally, never as a pattern: ``'*'`` names a run called ``*``, and an
    absolute or nested path that does not exist is simply not found.

    Raises:
        HandgradError: an empty name, no such run, or the directory holds no ``config.json``.
    """
    text = os.fspath(run)
    if not text.strip():
        raise HandgradError("empty run name: give a run directory, or a run's name under --out")
    base = Path(out).expanduser()
    candidates = [Path(text).expanduser()]
    if not candidates[0].is_absolute():
        candidates.append(base / text)
    plain_name = os.sep not in text and (os.altsep is None or os.altsep not in text)
    path = next((p for p in candidates if p.is_dir()), None)
    if path is None and plain_name:
        path = _latest_named(base, text)
    if path is None:
        raise HandgradError(f"{text}: no such run directory (looked in . and {out}/)")
    if not (path / CONFIG).is_file():
        raise HandgradError(f"{path}: not a run directory (no {CONFIG})")
    return path


def _latest_named(base: Path, name: str) -> Path | None:
    """The latest ``<base>/<name>-<stamp>[-k]`` holding a config, by its stamp then ``k``."""
    try:
        entries = list(base.iterdir()) if base.is_dir() else []
    except OSError:
        return None
    found: list[tuple[str, int, Path]] = []
    for entry in entries:
        if not entry.name.startswith(f"{name}-"):
            continue
        match = _STAMP.fullmatch(entry.name, len(name))
        if match and (entry / CONFIG).is_file():
            found.append((match[1], int(match[2] or 1), entry))
    return max(found)[2] if found else None


# -- atomic files ---------------------------------------------------------------------------
# Temporary files are named ``.<target>.handgrad-<pid>-<8 hex>.tmp`` so that one left behind
# by a killed writer (SIGKILL, power loss) is recognisable as handgrad's own and removed at
# resume by :func:`remove_stale_temps`; nothing else in a run directory is ever touched.
TEMP_PATTERN = re.compile(r"\.(?P<target>.+)\.handgrad-(?P<pid>\d+)-[0-9a-f]{8}\.tmp")
# Before that naming, temporaries were ``.<target>.<8 hex>.tmp``: recognised for run files only.
_RUN_FILES = r"config\.json|metrics\.jsonl|checkpoint\.safetensors|model\.safetensors|\w+\.png"
_OLD_TEMP_PATTERN = re.compile(rf"\.(?P<target>{_RUN_FILES})\.[0-9a-f]{{8}}\.tmp")


def temp_name(path: Path) -> Path:
    """A fresh temporary path next to ``path``, matching ``TEMP_PATTERN``."""
    return path.with_name(f".{path.name}.handgrad-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def is_own_temp(name: str) -> bool:
    """Whether a file name is one of handgrad's atomic-write temporaries."""
    return bool(TEMP_PATTERN.fullmatch(name) or _OLD_TEMP_PATTERN.fullmatch(name))


def remove_stale_temps(run: Path) -> list[Path]:
    """Remove the temporaries an interrupted atomic write left in ``run``; return them.

    Only names matching handgrad's own pattern are removed (see ``TEMP_PATTERN``); any other
    file is left alone. Call it while holding the run's lock (``handgrad.train.lock.RunLock``),
    which proves that no other process is writing there: every such file is then stale.

    Raises:
        HandgradError: one cannot be removed (naming it).
    """
    removed: list[Path] = []
    try:
        entries = sorted(run.iterdir())
    except OSError as exc:
        raise HandgradError(f"{run}: cannot list the run directory ({exc.strerror})") from None
    for entry in entries:
        if not is_own_temp(entry.name) or not entry.is_file() or entry.is_symlink():
            continue
        try:
            entry.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise HandgradError(
                f"{entry}: cannot remove this stale temporary file ({exc.strerror})"
            ) from None
        removed.append(entry)
    return removed


def write_error(path: Path, exc: OSError, kept: str) -> HandgradError:
    """One line for a failed write of ``path``: the file, the reason, and what ``kept``."""
    reason = exc.strerror or str(exc)  # e.g. "No space left on device"
    return HandgradError(f"{path}: cannot write ({reason}); {kept}")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is always either the old or the new file.

    A temporary file in the same directory (see ``TEMP_PATTERN``) is written, flushed and
    fsynced, then renamed over ``path``; on any failure it is removed and the old ``path`` is
    untouched.

    Raises:
        HandgradError: the write failed (read-only directory, full disk, ...): one line naming
            ``path`` (never the temporary) and saying that the previous file is intact.
    """
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            kept = "the previous version is intact" if path.exists() else "nothing was written"
            raise write_error(path, exc, kept) from None
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every platform opens directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _save_tensors(path: Path, tensors: Mapping[str, Tensor], metadata: dict[str, str]) -> None:
    # Copies: safetensors refuses views that share storage (a flattened model's parameters).
    owned = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
    atomic_write(path, _sorted_metadata(safetensors.torch.save(owned, metadata=metadata)))


def _sorted_metadata(data: bytes) -> bytes:
    """``data`` with its header's metadata in sorted key order: safetensors writes it from a
    hash map, in an order that changes from one write to the next, and two runs that end in the
    same state must write the same bytes. Same length (padded with spaces, which the format
    allows), so the tensors' offsets are unchanged."""
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError:  # not safetensors' own output: written as it is
        return data
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or len(meta) < 2:
        return data
    header["__metadata__"] = dict(sorted(meta.items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    if len(text) > size:
        return data
    return data[:8] + text + b" " * (size - len(text)) + data[8 + size :]


def read_safetensors(path: Path, what: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file.

    Raises:
        HandgradError: the file is missing, not a regular file (``/dev/zero``, a pipe: never
            read), truncated or not a safetensors file.
    """
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise HandgradError(f"{path}: not a regular file, expected a {what}")
            data = f.read()
    except FileNotFoundError:
        raise HandgradError(f"{path}: no {what}") from None
    except OSError as exc:
        raise HandgradError(f"{path}: cannot read {what} ({exc.strerror})") from None
    try:
        tensors = safetensors.torch.load(data)
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        metadata = header.get("__metadata__") or {}
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise HandgradError(
            f"{path}: damaged {what}, cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    return tensors, metadata


# -- metrics --------------------------------------------------------------------------------
def jsonable(value: float | None) -> float | None:
    """A float for JSON, with NaN and infinities written as null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def append_metrics(run: Path, record: Mapping[str, Any]) -> None:
    """Append one record as one line of ``metrics.jsonl``.

    The line goes out in a single ``write``; if that fails (a full disk), what it wrote is cut
    off again so the file ends on the previous complete line.

    Raises:
        HandgradError: the write failed, naming the file (earlier records are kept).
    """
    path = run / METRICS
    line = (json.dumps(record) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as exc:
        raise write_error(path, exc, "the records before are intact") from None
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise write_error(path, exc, "the records before are intact") from None
    finally:
        os.close(fd)


def read_metrics(run: Path, *, upto: int | None = None) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (with ``step <= upto`` if given).

    A last line cut short by a crash is ignored; any other bad line is an error.
    """
    path = run / METRICS
    if not path.exists():
        return []
    lines = path.read_text().split("\n")
    records: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # a partial last line, cut by a crash mid-write
                break
            raise HandgradError(f"{path}: line {i + 1} is not valid JSON") from None
        if upto is None or record.get("step", 0) <= upto:
            records.append(record)
    return records


def rewrite_metrics(run: Path, records: list[dict[str, Any]]) -> None:
    atomic_write(run / METRICS, "".join(json.dumps(r) + "\n" for r in records).encode())


# -- checkpoints ----------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """Everything needed to continue a run bit for bit.

    Attributes:
        step: optimizer steps done.
        model: the model's state dict (torch.nn keys).
        optim: the optimizer's ``state_dict()``: ``{"type", "hyper", "step", "buffers"}``.
        rng: generator states as uint8 tensors (``"torch"``: ``torch.get_rng_state()``).
        loop: the loop's tensors (running loss sums).
        meta: the loop's scalars (JSON-able).
        config_sha256: the fingerprint of the config the run was started with.
    """

    step: int
    model: dict[str, Tensor]
    optim: dict[str, Any]
    rng: dict[str, Tensor]
    loop: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    config_sha256: str = ""


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically (the previous checkpoint survives any failure)."""
    tensors: dict[str, Tensor] = {}
    tensors.update({f"model.{k}": v for k, v in ckpt.model.items()})
    tensors.update({f"optim.{k}": v for k, v in ckpt.optim["buffers"].items()})
    tensors.update({f"rng.{k}": v for k, v in ckpt.rng.items()})
    tensors.update({f"loop.{k}": v for k, v in ckpt.loop.items()})
    optim_meta = {k: v for k, v in ckpt.optim.items() if k != "buffers"}
    metadata = {
        "format": FORMAT,
        "step": str(ckpt.step),
        "optimizer": json.dumps(optim_meta),
        "loop": json.dumps(ckpt.meta),
        "config_sha256": ckpt.config_sha256,
    }
    _save_tensors(path, tensors, metadata)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        HandgradError: missing, truncated or damaged file, naming it.
    """
    tensors, metadata = read_safetensors(path, "checkpoint")
    if metadata.get("format") != FORMAT:
        raise HandgradError(
            f"{path}: damaged checkpoint or not a handgrad checkpoint "
            f"(format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    try:
        step = int(metadata["step"])
        optim = json.loads(metadata["optimizer"])
        meta = json.loads(metadata["loop"])
        config_sha256 = metadata["config_sha256"]
    except (KeyError, ValueError) as exc:
        raise HandgradError(f"{path}: damaged checkpoint metadata ({exc})") from None

    def part(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    optim["buffers"] = part("optim.")
    return Checkpoint(
        step=step,
        model=part("model."),
        optim=optim,
        rng=part("rng."),
        loop=part("loop."),
        meta=meta,
        config_sha256=config_sha256,
    )


def save_model(
    path: Path, state: Mapping[str, Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write a state dict (torch.nn keys) as safetensors, atomically."""
    _save_tensors(path, state, metadata or {})


def load_model_state(run: Path) -> tuple[dict[str, Tensor], Path]:
    """The run's final model (``model.safetensors``), else its checkpoint's model; and the file.

    Raises:
        HandgradError: neither file exists, or the one found is damaged.
    """
    model_path = run / MODEL
    if model_path.exists():
        tensors, _ = read_safetensors(model_path, "model file")
        return tensors, model_path
    ckpt_path = run / CHECKPOINT
    if ckpt_path.exists():
        return load_checkpoint(ckpt_path).model, ckpt_path
    raise HandgradError(f"{run}: no {MODEL} or {CHECKPOINT}; the run saved no model yet")


def load_best_state(run: Path) -> tuple[dict[str, Tensor], Path]:
    """The run's best weights (``best.safetensors``, kept by ``--keep-best``) and the file.

    Raises:
        HandgradError: the run kept no best weights, or the file is damaged.
    """
    path = run / BEST
    if not path.exists():
        raise HandgradError(
            f"{run}: no {BEST}; the run did not keep its best weights (train with --keep-best)"
        )
    tensors, _ = read_safetensors(path, "model file")
    return tensors, path
