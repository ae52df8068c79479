"""The loop's state and its checkpoints: what is saved at a step boundary and restored on resume.

A checkpoint holds the engine's model and optimizer state, torch's generator, the training
losses summed since the last record and the loop's position (``LoopState.meta``), with the
SHA-256 of the config that wrote it. Resuming from it continues bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from handgrad.errors import HandgradError
from handgrad.train import records as rec
from handgrad.train.engines import Engine
from handgrad.train.stopping import EarlyStopping


@dataclass
class LoopState:
    """The loop's position and running sums; all of it goes into a checkpoint."""

    step: int
    interval_start: int  # the step of the last record; losses[i] belongs to step start + i
    losses: Tensor  # (eval_every,) float64: each step's training loss, summed over micro-batches
    stopping: EarlyStopping
    elapsed: float = 0.0

    def meta(self) -> dict[str, Any]:
        return {
            "interval_start": self.interval_start,
            "best": self.stopping.best,
            "best_step": self.stopping.best_step,
            "bad_evals": self.stopping.bad_evals,
            "elapsed": self.elapsed,
        }

    def since_record(self) -> Tensor:
        """``(n,)`` the losses of the steps since the last record."""
        return self.losses[: self.step - self.interval_start]


def checkpoint_of(
    engine: Engine, state: LoopState, steps_per_epoch: int, fingerprint: str
) -> rec.Checkpoint:
    """The checkpoint of the run now (at a step boundary)."""
    return rec.Checkpoint(
        step=state.step,
        model=engine.model_state(),
        optim=engine.optim_state(),
        rng={"torch": torch.get_rng_state()},
        loop={"losses": state.losses},
        meta={**state.meta(), "epoch": state.step / steps_per_epoch},
        config_sha256=fingerprint,
    )


def restore(
    engine: Engine, state: LoopState, ckpt: rec.Checkpoint, fingerprint: str, run_dir: Path
) -> None:
    """Put ``ckpt`` back into the engine, torch's generator and ``state``.

    Raises:
        HandgradError: the checkpoint was written by another configuration, or does not fit.
    """
    path = run_dir / rec.CHECKPOINT
    if ckpt.config_sha256 != fingerprint:
        raise HandgradError(
            f"{path}: written by another configuration than {run_dir / rec.CONFIG} "
            "(the config was edited after the run started)"
        )
    try:
        engine.load_model_state(ckpt.model)
        engine.load_optim_state(ckpt.optim)
        torch.set_rng_state(ckpt.rng["torch"])
        state.losses.copy_(ckpt.loop["losses"])
        state.interval_start = ckpt.meta["interval_start"]
        state.elapsed = ckpt.meta["elapsed"]
        for key in ("best", "best_step", "bad_evals"):
            setattr(state.stopping, key, ckpt.meta[key])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise HandgradError(
            f"{path}: damaged checkpoint, does not fit the run ({type(exc).__name__}: {exc})"
        ) from None
    state.step = ckpt.step
