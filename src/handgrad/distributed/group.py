"""The process group of a data-parallel run: backend, timeout, and the checks at start.

``init_process_group`` joins the group ``torchrun`` describes (the environment variables
``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``): gloo on the CPU, NCCL when the
model lives on CUDA, chosen automatically, with a timeout so that a rank that dies or hangs
makes the others stop with a clear message (``DistributedError``) instead of waiting forever.
``check_same_everywhere`` compares a fingerprint of the model, optimizer and config across
ranks once at start.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from handgrad.errors import HandgradError

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 60.0


class DistributedError(HandgradError):
    """A collective failed or timed out, or the ranks disagree: the message says which."""


def backend_for(device: torch.device | str | None) -> str:
    """``"nccl"`` for a CUDA device (when NCCL is built in), else ``"gloo"``."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def init_process_group(
    device: torch.device | str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    init_method: str = "env://",
) -> tuple[int, int, str]:
    """Join the process group (once); returns ``(rank, world_size, backend)``.

    Args:
        device: where the model lives; picks the backend (``backend_for``).
        timeout_s: how long any collective may wait for the other ranks before every rank
            still alive raises ``DistributedError``.
        init_method: ``"env://"`` (torchrun's variables) or ``"tcp://host:port"``.
    """
    if timeout_s <= 0:
        raise ValueError(f"init_process_group: timeout_s must be > 0, got {timeout_s}")
    if not dist.is_available():
        raise DistributedError("distributed: this torch build has no torch.distributed")
    if not dist.is_initialized():
        backend = backend_for(device)
        try:
            dist.init_process_group(
                backend=backend, init_method=init_method, timeout=timedelta(seconds=timeout_s)
            )
        except ValueError as e:  # missing RANK/WORLD_SIZE/...: not launched by torchrun
            raise DistributedError(
                f"distributed: cannot join the process group ({e}); launch with "
                "torchrun --nproc_per_node=K ..."
            ) from None
    return dist.get_rank(), dist.get_world_size(), str(dist.get_backend())


def collective(what: str, fn: Callable[[], T], timeout_s: float | None = None) -> T:
    """Run ``fn`` (a collective, or a wait on one) turning torch's failure into one clear line.

    A peer that died shows as a closed connection, one that hangs as a timeout; both become
    ``DistributedError`` naming this rank and the operation.
    """
    try:
        return fn()
    except (RuntimeError, dist.DistBackendError) as e:  # DistBackendError is a RuntimeError
        rank = dist.get_rank() if dist.is_initialized() else "?"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        within = f" within the {timeout_s:g} s timeout" if timeout_s else ""
        raise DistributedError(
            f"distributed: rank {rank}: {what} failed{within}: another rank died or hangs "
            f"({first[:200]})"
        ) from None


def fingerprint(model: Any, optimizer: Any = None, config: Any = None) -> str:
    """A digest of what every rank must share: the model's structure, parameter names, shapes,
    dtypes and values, the optimizer's class and hyper-parameters, and ``config`` (JSON-able)."""
    h = hashlib.sha256()
    h.update(repr(model).encode())
    for name, p in model.named_parameters():
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    if optimizer is not None:
        h.update(type(optimizer).__name__.encode())
        h.update(
            json.dumps(getattr(optimizer, "defaults", {}), sort_keys=True, default=str).encode()
        )
    if config is not None:
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()


def check_same_everywhere(digest: str, timeout_s: float | None = None) -> None:
    """Raise ``DistributedError`` (on every rank) unless every rank passed the same ``digest``."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    gathered: list[Any] = [None] * world
    collective(
        "the config check at start",
        lambda: dist.all_gather_object(gathered, digest),
        timeout_s,
    )
    differ = [r for r, d in enumerate(gathered) if d != gathered[0]]
    if differ:
        raise DistributedError(
            f"distributed: ranks {differ} differ from rank 0 in model, optimizer or config "
            f"(fingerprint {gathered[0][:12]} on rank 0); every rank must start from the same"
        )
