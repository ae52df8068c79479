"""The training loop: one function, ``train(config)``, for every run and both engines.

Each optimizer step is, on the handgrad engine::

    out = model(xb)                       # (B, C)
    value = loss(out, yb)                 # 0-dim
    model.backward(loss.backward())       # grads accumulate into each param's .grad
    opt.step()
    opt.zero_grad()

(the first three lines once per micro-batch when gradients are accumulated over several, as
Fleuret's practical does over a whole pass). Nothing else runs per step but adding the loss
value, still a tensor, into a preallocated buffer; it is read only at evaluations, every
``eval_every`` steps, which is also where a NaN or infinite loss is noticed and named.

A record describes the model after ``step`` optimizer steps: ``train_loss``/``train_error``
etc. are measured on whole splits in eval mode at that point, so the step-0 record is the
initial model (the ninja notebook's "step = 0, loss = 809.9498") and the step-100 record the
model after 100 updates. ``batch_loss`` is the mean of the training losses the steps since the
previous record computed on their batches (with dropout, before their updates).

The loop never prints. It reports through ``on_step(steps_done)`` and ``on_eval(record)`` and
returns a :class:`RunResult`. Ctrl-C (SIGINT) is turned into a flag checked after each step:
the loop then writes a checkpoint at that step boundary and returns ``status="interrupted"``; a
second Ctrl-C stops at once.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from handgrad import nn
from handgrad.errors import HandgradError
from handgrad.optim import Optimizer
from handgrad.train import records as rec
from handgrad.train.build import (
    BatchTransform,
    Plan,
    TrainData,
    TrainLoss,
    build_batches,
    build_schedule,
    build_training_parts,
    build_transform,
    check_config,
    load_data,
    make_plan,
)
from handgrad.train.config import TrainConfig
from handgrad.train.metrics import evaluate_split

Record = dict[str, Any]


class LossModule(Protocol):
    """A handgrad loss: ``value = loss(out, target)``, then ``grad = loss.backward()``."""

    reduction: str

    def __call__(self, input: Tensor, target: Tensor) -> Tensor: ...
    def backward(self, grad_output: Tensor | float | None = None) -> Tensor: ...


class Engine(Protocol):
    """What the loop needs from an engine (handgrad's here, autograd's in reference_engine)."""

    name: str
    loss_reduction: str
    lr: float

    def forward_backward(self, xb: Tensor, yb: Tensor) -> Tensor: ...
    def step(self) -> None: ...
    def predict(self, x: Tensor) -> Tensor: ...
    def eval_loss(self, outputs: Tensor, y: Tensor) -> Tensor: ...
    def forward_loss(self, x: Tensor, y: Tensor) -> Tensor: ...
    def backward_last(self) -> None: ...
    def zero_grad(self) -> None: ...
    def model_state(self) -> dict[str, Tensor]: ...
    def load_model_state(self, state: dict[str, Tensor]) -> None: ...
    def optim_state(self) -> dict[str, Any]: ...
    def load_optim_state(self, state: dict[str, Any]) -> None: ...
    def final_model(self) -> nn.Module: ...
    def weights_finite(self) -> bool: ...


class HandgradEngine:
    """Hand-written backward passes and a handgrad optimizer, autograd off."""

    name = "handgrad"

    def __init__(self, model: nn.Module, loss: LossModule, opt: Optimizer) -> None:
        self.model, self.loss, self.opt = model, loss, opt
        self.loss_reduction = loss.reduction
        self._eval_loss = copy.copy(loss)  # its own saved tensors, so evaluation disturbs nothing

    @property
    def lr(self) -> float:
        return self.opt.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.opt.lr = value

    def forward_backward(self, xb: Tensor, yb: Tensor) -> Tensor:
        out = self.model(xb)  # (B, C)
        value = self.loss(out, yb)  # 0-dim
        self.model.backward(self.loss.backward())
        return value

    def step(self) -> None:
        self.opt.step()
        # In place until nn's backward re-attaches a None .grad's flat slot (branch i14nn).
        self.opt.zero_grad(set_to_none=False)

    def predict(self, x: Tensor) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model(x)
        finally:
            self.model.train(was_training)

    def eval_loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return self._eval_loss(outputs, y)

    def forward_loss(self, x: Tensor, y: Tensor) -> Tensor:
        return self.loss(self.model(x), y)

    def backward_last(self) -> None:
        self.model.backward(self.loss.backward())

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=False)  # see step()

    def model_state(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_model_state(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state)

    def optim_state(self) -> dict[str, Any]:
        return self.opt.checkpoint_state()

    def load_optim_state(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state)

    def final_model(self) -> nn.Module:
        return self.model

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())


def make_engine(config: TrainConfig, model: nn.Module, loss: TrainLoss, opt: Optimizer) -> Engine:
    """The config's engine over an already built model, loss and handgrad optimizer.

    The autograd engine copies them into a ``torch.nn`` twin and a ``torch.optim`` optimizer
    of the same type and settings (see ``handgrad.reference_engine``).
    """
    if config.engine == "autograd":
        from handgrad.reference_engine import AutogradEngine

        return AutogradEngine(model, loss, opt)
    return HandgradEngine(model, loss, opt)


@dataclass
class RunResult:
    """How a run ended and what it measured.

    Attributes:
        status: ``completed``, ``early_stopped``, ``interrupted`` or ``diverged``.
        message: one sentence for a person (why it stopped, how to resume).
        steps: optimizer steps done; ``plan.total_steps`` were planned.
        records: every evaluation record, the first at step 0.
        best: ``{"step", "monitor", "value"}`` of the best validation figure, or None.
        model: the final model as a handgrad module (for the autograd engine, its weights).
        data: the tensors the run used.
    """

    status: str
    message: str
    config: TrainConfig
    plan: Plan
    steps: int
    records: list[Record]
    run_dir: Path | None
    seconds: float
    model: nn.Module
    data: TrainData
    best: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> Record:
        return self.records[-1] if self.records else {}


class _Interrupt:
    requested = False


@contextlib.contextmanager
def _sigint_flag(enabled: bool) -> Iterator[_Interrupt]:
    """Turn the first SIGINT into a flag (a second one raises KeyboardInterrupt at once)."""
    flag = _Interrupt()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class _State:
    """The loop's position and running sums; all of it goes into a checkpoint."""

    step: int
    interval_start: int  # the step of the last record; losses[i] belongs to step start + i
    losses: Tensor  # (eval_every,) float64: each step's training loss, summed over micro-batches
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    elapsed: float = 0.0

    def meta(self) -> dict[str, Any]:
        return {
            "interval_start": self.interval_start,
            "best": self.best,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "elapsed": self.elapsed,
        }


def train(
    config: TrainConfig,
    *,
    run_dir: Path | None = None,
    resume: bool = False,
    data: TrainData | None = None,
    on_step: Callable[[int], None] | None = None,
    on_eval: Callable[[Record], None] | None = None,
    transform: BatchTransform | None = None,
    handle_interrupt: bool = True,
) -> RunResult:
    """Train as ``config`` says; write records into ``run_dir`` (if given); return the result.

    Args:
        config: the run.
        run_dir: an existing directory for ``config.json``, ``metrics.jsonl``, checkpoints and
            ``model.safetensors``; None keeps everything in memory.
        resume: continue the run in ``run_dir`` from its checkpoint (bit for bit as if it had
            never stopped). ``config`` must be the one saved there.
        data: the tensors, if already loaded (``build.load_data(config)``).
        on_step: called after every optimizer step with the number of steps done.
        on_eval: called with each evaluation record.
        transform: ``transform(xb, yb, batch_index) -> (xb, yb)``, applied to each training
            batch before the forward pass (data augmentation); ``batch_index`` counts batches
            from the start of the run, so a transform that draws its randomness from
            ``(config.seed, batch_index)`` keeps resumed runs exact. Default: the one
            ``config.augment`` names.
        handle_interrupt: turn Ctrl-C into a clean stop with a checkpoint.

    Raises:
        ValueError, HandgradError: bad settings, missing data, an unreadable checkpoint.
    """
    previous = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _train(
            config,
            run_dir=run_dir,
            resume=resume,
            data=data,
            on_step=on_step,
            on_eval=on_eval,
            transform=transform,
            handle_interrupt=handle_interrupt,
        )
    finally:
        torch.set_num_threads(previous)


def _train(
    config: TrainConfig,
    *,
    run_dir: Path | None = None,
    resume: bool = False,
    data: TrainData | None = None,
    on_step: Callable[[int], None] | None = None,
    on_eval: Callable[[Record], None] | None = None,
    transform: BatchTransform | None = None,
    handle_interrupt: bool = True,
) -> RunResult:
    check_config(config)
    if resume and run_dir is None:
        raise ValueError("train: resume needs the run directory")
    data = data if data is not None else load_data(config)
    plan = make_plan(config, data.n_train)
    model, loss, opt = build_training_parts(config, data.n_train)
    schedule = build_schedule(config, data.n_train, plan.total_steps)
    if transform is None:
        transform = build_transform(config)
    engine = make_engine(config, model, loss, opt)
    batches = build_batches(config, data)
    state = _State(
        step=0,
        interval_start=0,
        losses=torch.zeros(plan.eval_every, dtype=torch.float64, device=config.device),
    )
    records: list[Record] = []
    fingerprint = config.fingerprint()
    checkpoint_path = run_dir / rec.CHECKPOINT if run_dir is not None else None
    last_checkpoint: int | None = None

    if resume:
        assert run_dir is not None and checkpoint_path is not None
        ckpt = rec.load_checkpoint(checkpoint_path)
        if ckpt.config_sha256 != fingerprint:
            raise HandgradError(
                f"{checkpoint_path}: written by another configuration than {run_dir / rec.CONFIG} "
                "(the config was edited after the run started)"
            )
        try:
            engine.load_model_state(ckpt.model)
            engine.load_optim_state(ckpt.optim)
            torch.set_rng_state(ckpt.rng["torch"])
            losses = ckpt.loop["losses"]
            state.losses.copy_(losses)
            for key in ("interval_start", "best", "best_step", "bad_evals", "elapsed"):
                setattr(state, key, ckpt.meta[key])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise HandgradError(
                f"{checkpoint_path}: damaged checkpoint, does not fit the run "
                f"({type(exc).__name__}: {exc})"
            ) from None
        state.step = ckpt.step
        records = rec.read_metrics(run_dir, upto=ckpt.step)
        rec.rewrite_metrics(run_dir, records)  # drop records a crash left after the checkpoint
        last_checkpoint = ckpt.step
    elif run_dir is not None:
        rec.atomic_write(run_dir / rec.CONFIG, config.to_json().encode())

    started = time.perf_counter()
    elapsed_before = state.elapsed

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - started

    test_at_end = config.eval_test == "end"

    def evaluate(*, test: bool = True) -> Record:
        """A record of the model now; ``test=False`` leaves the test figures null."""
        step = state.step
        n = step - state.interval_start
        batch_loss = float(state.losses[:n].mean().item()) if n else None
        record: Record = {
            "step": step,
            "epoch": round(step / plan.steps_per_epoch, 6),
            "lr": engine.lr,
            "batch_loss": rec.jsonable(batch_loss),
        }
        splits = [("train", data.x_train, data.y_train, data.labels_train)]
        if data.x_valid is not None and data.y_valid is not None and data.labels_valid is not None:
            splits.append(("valid", data.x_valid, data.y_valid, data.labels_valid))
        splits.append(("test", data.x_test, data.y_test, data.labels_test))
        for split, x, y, labels in splits:
            if split == "test" and not test:
                record["test_loss"] = record["test_error"] = None
                continue
            figures = evaluate_split(
                engine.predict, engine.eval_loss, engine.loss_reduction, x, y, labels
            )
            record[f"{split}_loss"] = figures.loss
            record[f"{split}_error"] = figures.error
        if data.x_valid is None:
            record["valid_loss"] = record["valid_error"] = None
        if test_at_end:
            record["test_evaluated"] = "once, at the end"
        record["seconds"] = round(elapsed(), 3)
        state.losses.zero_()
        state.interval_start = step
        return record

    def _add_test(record: Record) -> None:
        """The one test evaluation of an ``eval_test="end"`` run, after its last step."""
        figures = evaluate_split(
            engine.predict,
            engine.eval_loss,
            engine.loss_reduction,
            data.x_test,
            data.y_test,
            data.labels_test,
        )
        record["test_loss"], record["test_error"] = figures.loss, figures.error

    def save_checkpoint() -> None:
        nonlocal last_checkpoint
        if checkpoint_path is None:
            return
        state.elapsed = elapsed()
        ckpt = rec.Checkpoint(
            step=state.step,
            model=engine.model_state(),
            optim=engine.optim_state(),
            rng={"torch": torch.get_rng_state()},
            loop={"losses": state.losses},
            meta={**state.meta(), "epoch": state.step / plan.steps_per_epoch},
            config_sha256=fingerprint,
        )
        rec.save_checkpoint(checkpoint_path, ckpt)
        last_checkpoint = state.step

    def add_record(record: Record) -> None:
        records.append(record)
        if run_dir is not None:
            rec.append_metrics(run_dir, record)
        if on_eval is not None:
            on_eval(record)

    def diverged_at(step: int, what: str) -> str:
        where = (
            f"the last good checkpoint is step {last_checkpoint} in {checkpoint_path}"
            if last_checkpoint is not None
            else "no checkpoint was written"
        )
        return f"{what} at step {step}: training stopped; {where}"

    status, message = "completed", ""
    total = plan.total_steps
    micro = plan.micro_per_step
    # The handgrad engine runs with autograd off (inference_mode would also do, but its tensors
    # could not be handed to the autograd twin afterwards, e.g. by handgrad compare).
    grad_mode = torch.no_grad() if engine.name == "handgrad" else contextlib.nullcontext()
    with grad_mode, _sigint_flag(handle_interrupt) as interrupt:
        if schedule is not None:
            schedule.apply(engine, min(state.step, total - 1))
        if state.step == 0 and not records:
            add_record(evaluate(test=not test_at_end))
            save_checkpoint()
        if state.step >= total:
            message = f"the run had already finished its {total} steps"
        batch_iter: Iterator[tuple[Tensor, Tensor]] | None = None
        while state.step < total:
            step = state.step
            epoch, position = divmod(step, plan.steps_per_epoch)
            if batch_iter is None or position == 0:
                batch_iter = batches.epoch(epoch)
                if position:  # resuming inside an epoch: skip the batches already seen
                    for _ in islice(batch_iter, position * micro):
                        pass
            if schedule is not None:
                schedule.apply(engine, step)
            slot = state.losses[step - state.interval_start]
            first_batch = epoch * plan.batches_per_epoch + position * micro
            for j, (xb, yb) in enumerate(islice(batch_iter, micro)):
                if transform is not None:
                    xb, yb = transform(xb, yb, first_batch + j)
                slot.add_(engine.forward_backward(xb, yb))
            engine.step()
            state.step = step = step + 1
            if on_step is not None:
                on_step(step)

            due_eval = step % plan.eval_every == 0 or step == total
            due_checkpoint = step % plan.checkpoint_every == 0 or step == total
            stop = interrupt.requested
            if not (due_eval or due_checkpoint or stop):
                continue
            bad = _first_nonfinite(state.losses[: step - state.interval_start])
            if bad is not None:
                value = state.losses[bad].item()
                status = "diverged"
                message = diverged_at(state.interval_start + bad, f"the training loss is {value}")
                break
            if due_eval:
                record = evaluate(test=not test_at_end)
                if not math.isfinite(record["train_loss"]):
                    status = "diverged"
                    message = diverged_at(step, f"the train loss is {record['train_loss']}")
                    break
                if _early_stop(config, state, record):
                    status = "early_stopped"
                    message = (
                        f"early stop: {config.monitor} did not improve for {config.patience} "
                        f"evaluations; best {state.best:.6g} at step {state.best_step}"
                    )
                if test_at_end and (step == total or status == "early_stopped"):
                    _add_test(record)
                add_record(record)
            if not engine.weights_finite():
                status = "diverged"
                message = diverged_at(step, "the weights are not finite")
                break
            if due_checkpoint or stop or status == "early_stopped":
                save_checkpoint()
            if status == "early_stopped":
                break
            if stop and step < total:
                status = "interrupted"
                message = f"interrupted at step {step} of {total}; checkpoint written"
                break

    if run_dir is not None and status != "diverged":
        rec.save_model(run_dir / rec.MODEL, engine.model_state(), {"model": config.model})
    if status == "completed" and not message:
        message = f"finished {total} steps"
    best = None
    if state.best is not None:
        best = {"step": state.best_step, "monitor": config.monitor, "value": state.best}
    return RunResult(
        status=status,
        message=message,
        config=config,
        plan=plan,
        steps=state.step,
        records=records,
        run_dir=run_dir,
        seconds=elapsed(),
        model=engine.final_model(),
        data=data,
        best=best,
    )


def _first_nonfinite(losses: Tensor) -> int | None:
    """The index of the first NaN or infinite value in ``losses``, or None."""
    bad = ~torch.isfinite(losses)
    if not bool(bad.any()):
        return None
    return int(bad.nonzero()[0, 0].item())


def _early_stop(config: TrainConfig, state: _State, record: Record) -> bool:
    """Track the best validation figure; True when ``patience`` evaluations brought none."""
    value = record.get(config.monitor)
    if value is None:
        return False
    if state.best is None or value < state.best:
        state.best, state.best_step, state.bad_evals = value, record["step"], 0
        return False
    state.bad_evals += 1
    return config.patience is not None and state.bad_evals >= config.patience


def time_forward_backward(
    engine: Engine, x: Tensor, y: Tensor, repeats: int = 5
) -> tuple[float, float]:
    """Median wall seconds of one forward (with the loss) and one backward on all of ``x``,
    as the fastai notebooks time ``model(x_train, y_train)`` and ``model.backward()``."""
    forward, backward = [], []
    grad_mode = torch.no_grad() if engine.name == "handgrad" else contextlib.nullcontext()
    with grad_mode:
        for _ in range(repeats):
            t0 = time.perf_counter()
            engine.forward_loss(x, y)
            t1 = time.perf_counter()
            engine.backward_last()
            t2 = time.perf_counter()
            engine.zero_grad()
            forward.append(t1 - t0)
            backward.append(t2 - t1)
    return statistics.median(forward), statistics.median(backward)
