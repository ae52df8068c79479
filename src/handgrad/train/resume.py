"""Get a run directory ready to resume: check everything first, then tidy, in that order.

:func:`prepare_resume` is the one call ``--resume`` needs before it loads state into the
engine. It reads the checkpoint, checks it against the run (``handgrad.train.checks``), and
only once all of it fits does it touch the directory: it removes the temporaries an interrupted
atomic write left (``records.remove_stale_temps``) and trims ``metrics.jsonl`` back to the
checkpoint's step. A checkpoint that does not fit leaves every file as it was.

It must be called while holding the run's lock, which proves no other process writes there::

    with RunLock(run_dir) as lock:
        point = prepare_resume(lock, fingerprint=..., plan=..., expected_model=...)
        ...load point.checkpoint into the engine, continue at point.checkpoint.step...
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from handgrad.train import records as rec
from handgrad.train.checks import PlanLike, check_checkpoint
from handgrad.train.lock import RunLock


@dataclass
class ResumePoint:
    """Where a resumed run continues.

    Attributes:
        checkpoint: the checked checkpoint.
        records: the ``metrics.jsonl`` records up to its step (the file now holds exactly these).
        removed: the stale temporaries removed.
        dropped: how many records past the checkpoint were cut from ``metrics.jsonl``.
    """

    checkpoint: rec.Checkpoint
    records: list[dict[str, Any]]
    removed: list[Path] = field(default_factory=list)
    dropped: int = 0


def prepare_resume(
    lock: RunLock,
    *,
    fingerprint: str,
    plan: PlanLike,
    expected_model: Mapping[str, Tensor],
) -> ResumePoint:
    """Check the run ``lock`` holds against its checkpoint; then clean it up for resuming.

    Args:
        lock: the held lock of the run directory.
        fingerprint: ``config.fingerprint()`` of the run's ``config.json``.
        plan: the run's plan (``steps.build_plan``).
        expected_model: the state dict of the model the config builds.

    Raises:
        HandgradError: the checkpoint is missing, damaged, or does not fit the run (nothing
            was changed), or a cleanup write failed (one line naming the file).
        RuntimeError: ``lock`` is not held (a bug in the caller).
    """
    if not lock.held:
        raise RuntimeError(f"prepare_resume: the lock of {lock.run} is not held")
    run = lock.run
    path = run / rec.CHECKPOINT
    ckpt = rec.load_checkpoint(path)
    records = check_checkpoint(
        ckpt, path=path, run=run, fingerprint=fingerprint, plan=plan, expected_model=expected_model
    )
    # Everything fits: from here on the run directory may change.
    removed = rec.remove_stale_temps(run)
    on_disk = rec.read_metrics(run)
    dropped = len(on_disk) - len(records)
    wanted = "".join(json.dumps(r) + "\n" for r in records).encode()
    metrics = run / rec.METRICS
    # Rewritten only if it differs: records past the step, or a last line cut by a crash.
    if not metrics.exists() or metrics.read_bytes() != wanted:
        rec.rewrite_metrics(run, records)
    return ResumePoint(ckpt, records, removed, dropped)
