"""Check a run's saved state against the run before anything is loaded, trimmed or rewritten.

A checkpoint or a model file is read back from disk, where it can be damaged or edited. Each
function here checks everything that can be checked without touching the run, and raises one
line naming the file and what does not fit; nothing is written:

- :func:`check_weights`: a state dict against the model's (same names, shapes, dtypes, all
  values finite);
- :func:`check_checkpoint`: a checkpoint against its run, for ``--resume`` (fingerprint, step
  within the run and consistent with the loop's position, the optimizer's step count and
  ``metrics.jsonl``; weights, optimizer buffers, generator state); returns the metrics records
  to keep;
- :func:`check_run_model`: the weights ``evaluate``/``predict`` load, against the model that
  ``config.json`` describes and the fingerprint the run's files carry.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from handgrad.errors import HandgradError
from handgrad.limits import MAX_SAFETENSORS_HEADER
from handgrad.train import records as rec

Record = dict[str, Any]


class PlanLike(Protocol):
    """What the checks need of ``handgrad.train.build.Plan``."""

    @property
    def steps_per_epoch(self) -> int: ...
    @property
    def total_steps(self) -> int: ...
    @property
    def eval_every(self) -> int: ...


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _first_bad(tensor: Tensor) -> str | None:
    """``'nan'`` / ``'inf'`` / ``'-inf'`` for the first non-finite value of a float tensor."""
    if not tensor.is_floating_point() and not tensor.is_complex():
        return None
    bad = ~torch.isfinite(tensor.detach())
    if not bool(bad.any()):
        return None
    value = tensor.detach().reshape(-1)[int(bad.reshape(-1).nonzero()[0, 0])].item()
    return str(value)


def check_weights(
    state: Mapping[str, Tensor], expected: Mapping[str, Tensor], where: str | Path
) -> None:
    """Check a state dict against the model's: names, shapes, dtypes, and finite values.

    Args:
        state: the weights read from ``where``.
        expected: the state dict of the model the config builds (values unused).
        where: the file, for the message.

    Raises:
        HandgradError: a missing or unexpected name, a wrong shape or dtype (e.g. int32 weights
            for a float32 model), or a NaN/infinite value; naming the file and the tensor.
    """
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise HandgradError(
            f"{where}: weights do not fit the model config.json describes ({'; '.join(parts)})"
        )
    for key, want in expected.items():
        got = state[key]
        if not isinstance(got, Tensor):
            raise HandgradError(f"{where}: {key} is a {type(got).__name__}, expected a tensor")
        if tuple(got.shape) != tuple(want.shape):
            raise HandgradError(
                f"{where}: {key} has shape {tuple(got.shape)}, the model's is {tuple(want.shape)}"
            )
        if got.dtype != want.dtype:
            raise HandgradError(
                f"{where}: {key} has dtype {got.dtype}, the model's is {want.dtype}; "
                "the file was edited or is not this run's"
            )
        bad = _first_bad(got)
        if bad is not None:
            raise HandgradError(f"{where}: {key} holds {bad}: the weights are not finite")


def check_checkpoint(
    ckpt: rec.Checkpoint,
    *,
    path: Path,
    run: Path,
    fingerprint: str,
    plan: PlanLike,
    expected_model: Mapping[str, Tensor],
) -> list[Record]:
    """Check everything about ``ckpt`` (read from ``path``) against the run ``run``, and return
    the records of ``metrics.jsonl`` that resuming keeps (those up to the checkpoint's step).

    Nothing is written: call it before anything of the run is trimmed or rewritten.

    Args:
        ckpt: ``records.load_checkpoint(path)``.
        fingerprint: ``config.fingerprint()`` of the run's ``config.json``.
        plan: the run's plan (``steps.build_plan``): total steps, evaluation interval, epoch.
        expected_model: the state dict of the model the config builds.

    Raises:
        HandgradError: one line naming the file and the first thing that does not fit.
    """
    if ckpt.config_sha256 != fingerprint:
        raise HandgradError(
            f"{path}: written by another configuration than {run / rec.CONFIG} "
            "(the config was edited after the run started)"
        )
    step, total = ckpt.step, plan.total_steps
    if not _is_int(step) or not 0 <= step <= total:
        raise HandgradError(
            f"{path}: checkpoint step {step} is outside the run's steps 0 to {total}; "
            "the checkpoint is damaged or was edited"
        )
    _check_position(ckpt, path, plan)
    optim_step = ckpt.optim.get("step")
    if optim_step != step:
        raise HandgradError(
            f"{path}: checkpoint step {step}, but its optimizer state has taken {optim_step} "
            "steps; the checkpoint is damaged or was edited"
        )
    _check_tensors(ckpt, path, plan)
    check_weights(ckpt.model, expected_model, path)
    return _check_metrics(run, step, ckpt.meta["interval_start"], path)


def _check_position(ckpt: rec.Checkpoint, path: Path, plan: PlanLike) -> None:
    """The loop's position in the metadata agrees with the step."""
    meta, step = ckpt.meta, ckpt.step
    damaged = "the checkpoint is damaged or was edited"
    for key in ("interval_start", "bad_evals"):
        if not _is_int(meta.get(key)) or meta[key] < 0:
            raise HandgradError(f"{path}: loop.{key} is {meta.get(key)!r}; {damaged}")
    for key in ("elapsed", "epoch"):
        if not _is_number(meta.get(key)) or not math.isfinite(meta[key]) or meta[key] < 0:
            raise HandgradError(f"{path}: loop.{key} is {meta.get(key)!r}; {damaged}")
    start = meta["interval_start"]
    if start > step or step - start >= plan.eval_every:
        raise HandgradError(
            f"{path}: checkpoint step {step} does not follow its last evaluation at step "
            f"{start} (evaluations every {plan.eval_every} steps); {damaged}"
        )
    on_grid = start % plan.eval_every == 0 or start == plan.total_steps
    if not on_grid:
        raise HandgradError(
            f"{path}: last evaluation at step {start} is not a step the run evaluates at "
            f"(every {plan.eval_every} steps); {damaged}"
        )
    best, best_step = meta.get("best"), meta.get("best_step")
    if best is not None and not _is_number(best):
        raise HandgradError(f"{path}: loop.best is {best!r}; {damaged}")
    if best_step is not None and (not _is_int(best_step) or not 0 <= best_step <= step):
        raise HandgradError(f"{path}: loop.best_step {best_step!r} is not in 0..{step}; {damaged}")
    epoch = step / plan.steps_per_epoch
    if not math.isclose(meta["epoch"], epoch, rel_tol=1e-12, abs_tol=1e-12):
        implied = meta["epoch"] * plan.steps_per_epoch
        raise HandgradError(
            f"{path}: checkpoint step {step} does not match its epoch {meta['epoch']:g} "
            f"(that is step {implied:g}); {damaged}"
        )


def _check_tensors(ckpt: rec.Checkpoint, path: Path, plan: PlanLike) -> None:
    """The loop's running losses, the generator state and the optimizer's buffers."""
    damaged = "the checkpoint is damaged or was edited"
    losses = ckpt.loop.get("losses")
    if (
        not isinstance(losses, Tensor)
        or losses.dtype != torch.float64
        or tuple(losses.shape) != (plan.eval_every,)
    ):
        got = f"{losses.dtype} {tuple(losses.shape)}" if isinstance(losses, Tensor) else losses
        raise HandgradError(
            f"{path}: loop.losses is {got}, expected float64 ({plan.eval_every},); {damaged}"
        )
    bad = _first_bad(losses)
    if bad is not None:
        raise HandgradError(f"{path}: loop.losses holds {bad}; {damaged}")
    done = ckpt.step - ckpt.meta["interval_start"]
    if bool(losses[done:].ne(0).any()):
        raise HandgradError(
            f"{path}: loop.losses has values past the {done} steps since the last evaluation; "
            f"{damaged}"
        )
    rng = ckpt.rng.get("torch")
    size = torch.get_rng_state().numel()
    if not isinstance(rng, Tensor) or rng.dtype != torch.uint8 or tuple(rng.shape) != (size,):
        raise HandgradError(f"{path}: rng.torch is not a generator state; {damaged}")
    for key, tensor in ckpt.optim.get("buffers", {}).items():
        bad = _first_bad(tensor)
        if bad is not None:
            raise HandgradError(f"{path}: optimizer buffer {key} holds {bad}; {damaged}")


def _check_metrics(run: Path, step: int, interval_start: int, path: Path) -> list[Record]:
    """``metrics.jsonl`` in step order, with the checkpoint's last evaluation in it."""
    metrics = run / rec.METRICS
    records = rec.read_metrics(run)
    for i, record in enumerate(records):
        if not _is_int(record.get("step")):
            raise HandgradError(f"{metrics}: record {i + 1} has step {record.get('step')!r}")
    steps: list[int] = [r["step"] for r in records]
    for i, (a, b) in enumerate(itertools.pairwise(steps)):
        if b <= a:
            raise HandgradError(
                f"{metrics}: step {b} follows step {a} (record {i + 2}): the records are out of "
                "order or repeated (two processes wrote to this run?); nothing was changed"
            )
    kept = [r for r in records if r["step"] <= step]
    if not kept or kept[0]["step"] != 0:
        raise HandgradError(f"{metrics}: no record of step 0; it does not belong to {path}'s run")
    if kept[-1]["step"] != interval_start:
        raise HandgradError(
            f"{path}: its last evaluation was at step {interval_start}, but {metrics} has "
            f"step {kept[-1]['step']} as the last record up to step {step}; the checkpoint "
            "or the metrics were edited"
        )
    return kept


# -- evaluate / predict -------------------------------------------------------------------
def read_metadata(path: Path, what: str) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, reading its header only.

    Raises:
        HandgradError: unreadable, or not a safetensors header.
    """
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size <= MAX_SAFETENSORS_HEADER:
                raise ValueError(f"header size {size}")
            header = json.loads(f.read(size))
    except OSError as exc:
        raise HandgradError(f"{path}: cannot read {what} ({exc.strerror})") from None
    except ValueError as exc:
        raise HandgradError(f"{path}: damaged {what}, cannot be read ({exc})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def check_run_model(
    run: Path,
    fingerprint: str,
    state: Mapping[str, Tensor],
    source: Path,
    expected_model: Mapping[str, Tensor],
) -> None:
    """Check the weights ``evaluate``/``predict`` load (``records.load_model_state``) against
    the run: its config's fingerprint against the one its checkpoint and model file carry (an
    edited ``act`` builds another model that the same weights fit), and the weights against
    the model's names, shapes and dtypes, all finite.

    Args:
        run: the run directory.
        fingerprint: ``config.fingerprint()`` of its ``config.json``.
        state, source: what ``records.load_model_state(run)`` returned.
        expected_model: the state dict of the model the config builds.

    Raises:
        HandgradError: naming the file and what does not fit.
    """
    for path in (run / rec.MODEL, run / rec.CHECKPOINT):
        if not path.exists():
            continue
        written = read_metadata(path, "model file" if path.name == rec.MODEL else "checkpoint")
        saved = written.get("config_sha256")
        if saved and saved != fingerprint:
            raise HandgradError(
                f"{run / rec.CONFIG}: does not describe the run that wrote {path} (the config "
                "was edited after the run, e.g. its act or model)"
            )
    check_weights(state, expected_model, source)
