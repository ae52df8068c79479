"""When a run stops early: divergence, early stopping, Ctrl-C.

- divergence: a NaN or infinite training loss (checked at evaluations and checkpoints, on the
  losses summed since the last record), evaluation loss, or weights;
- early stopping: ``patience`` evaluations without a better ``monitor`` figure;
- Ctrl-C: the first SIGINT becomes a flag the loop reads after each step (it then writes a
  checkpoint at that step boundary and stops); a second one stops at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


@dataclass
class EarlyStopping:
    """The best validation figure so far and how many evaluations since brought none better."""

    monitor: str
    patience: int | None
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0

    def update(self, record: dict[str, Any]) -> bool:
        """Track ``record``'s monitored figure; True when ``patience`` evaluations brought none
        better."""
        value = record.get(self.monitor)
        if value is None:
            return False
        if self.best is None or value < self.best:
            self.best, self.best_step, self.bad_evals = value, record["step"], 0
            return False
        self.bad_evals += 1
        return self.patience is not None and self.bad_evals >= self.patience

    def message(self) -> str:
        return (
            f"early stop: {self.monitor} did not improve for {self.patience} evaluations; "
            f"best {self.best:.6g} at step {self.best_step}"
        )


def first_nonfinite(losses: Tensor) -> int | None:
    """The index of the first NaN or infinite value in ``losses``, or None."""
    bad = ~torch.isfinite(losses)
    if not bool(bad.any()):
        return None
    return int(bad.nonzero()[0, 0].item())


def diverged_message(step: int, what: str, last_checkpoint: int | None, path: Path | None) -> str:
    """One sentence: what went non-finite at which step, and the last good checkpoint."""
    where = (
        f"the last good checkpoint is step {last_checkpoint} in {path}"
        if last_checkpoint is not None
        else "no checkpoint was written"
    )
    return f"{what} at step {step}: training stopped; {where}"


class Interrupt:
    """Set when the first Ctrl-C arrived."""

    requested = False


@contextlib.contextmanager
def sigint_flag(enabled: bool) -> Iterator[Interrupt]:
    """Turn the first SIGINT or SIGTERM into a flag (a second one raises KeyboardInterrupt at
    once)."""
    flag = Interrupt()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    previous_term = signal.signal(signal.SIGTERM, handler)  # SIGTERM stops as Ctrl-C does
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
