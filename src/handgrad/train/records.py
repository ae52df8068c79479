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
import secrets
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


def find_run(run: str | os.PathLike[str], out: str | os.PathLike[str] = "runs") -> Path:
    """The run directory ``run`` names: a path, a directory under ``out``, or the latest run
    under ``out`` whose name starts with ``run-``.

    Raises:
        HandgradError: no such run, or the directory holds no ``config.json``.
    """
    candidates = [Path(run).expanduser(), Path(out).expanduser() / run]
    path = next((p for p in candidates if p.is_dir()), None)
    if path is None:
        prefix = Path(out).expanduser()
        matches = sorted(prefix.glob(f"{run}-*")) if prefix.is_dir() else []
        matches = [m for m in matches if (m / CONFIG).is_file()]
        if not matches:
            raise HandgradError(f"{run}: no such run directory (looked in . and {out}/)")
        path = matches[-1]
    if not (path / CONFIG).is_file():
        raise HandgradError(f"{path}: not a run directory (no {CONFIG})")
    return path


# -- atomic files ---------------------------------------------------------------------------
def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is always either the old or the new file.

    A temporary file in the same directory is written, flushed and fsynced, then renamed
    over ``path``; on any failure it is removed and the old ``path`` is untouched.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
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
    atomic_write(path, safetensors.torch.save(owned, metadata=metadata))


def read_safetensors(path: Path, what: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file.

    Raises:
        HandgradError: the file is missing, truncated or not a safetensors file.
    """
    try:
        data = path.read_bytes()
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
    with open(run / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


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
