"""The training loop: one function, ``train(config)``, for every run and both engines.

Each optimizer step runs the engine's ``forward_backward`` on each of the step's micro-batches
(``handgrad.train.steps``: one, or several when gradients are accumulated, as Fleuret's
practical does over a whole pass), then ``engine.step()``. Nothing else runs per step but
adding the loss value, still a tensor, into a preallocated buffer; it is read only at
evaluations and checkpoints, which is also where a NaN or infinite loss is noticed and named.

The pieces live beside it: the records in ``evaluation``, the state and checkpoints in
``checkpoints``, divergence, early stopping and Ctrl-C in ``stopping``, the engines in
``engines``, the thread count in ``threads``.

Per-layer statistics (``layer_stats``) are taken at the steps of ``layer_stats.stats_steps``
(every step of the first ten, the powers of two, every evaluation) when ``config.layer_stats``
is on: those steps run through ``layer_stats.EngineMeter``, which makes the same calls, so the
weights are the same bit for bit; the records go to ``layers.jsonl``. After each evaluation
``doctor.divergence`` stops a run whose loss blew up (10x its step-0 value, or not finite).
With ``config.keep_best`` the weights at the best ``monitor`` figure are kept in
``best.safetensors`` (and in each checkpoint, so a resumed run keeps the same ones).

In a data-parallel run (``dist``, under torchrun) the engine is ``DataParallelEngine`` (each
rank's shard of the global batch, the gradient all-reduced); rank 0 alone evaluates, sending
each record to the others so that every rank stops alike, and alone writes the run directory;
a Ctrl-C on any rank is agreed with the step's all-reduce, so all stop after the same step.

The loop never prints. It reports through ``on_step(steps_done)`` and ``on_eval(record)`` and
returns a :class:`RunResult`. Ctrl-C (SIGINT) is turned into a flag checked after each step:
the loop then writes a checkpoint at that step boundary and returns ``status="interrupted"``; a
second Ctrl-C stops at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from handgrad import nn
from handgrad.train import doctor
from handgrad.train import layer_stats as ls
from handgrad.train import records as rec
from handgrad.train.build import (
    TrainData,
    build_batches,
    build_schedule,
    build_training_parts,
    check_config,
)
from handgrad.train.checkpoints import LoopState, checkpoint_of, restore
from handgrad.train.config import TrainConfig
from handgrad.train.distributed_run import DataParallelEngine, DistContext
from handgrad.train.engines import Engine, build_engine, grad_mode
from handgrad.train.evaluation import Record, add_test_figures, evaluation_record
from handgrad.train.steps import BatchTransform, Plan, StepBatches, build_plan, build_transform
from handgrad.train.stopping import (
    EarlyStopping,
    diverged_message,
    first_nonfinite,
    sigint_flag,
)
from handgrad.train.threads import load_with_threads, torch_threads


@dataclass
class RunResult:
    """How a run ended and what it measured.

    Attributes:
        status: ``completed``, ``early_stopped``, ``interrupted`` or ``diverged``.
        message: one sentence for a person (why it stopped, how to resume).
        config: the config the run ran (with ``threads="auto"`` resolved to the count chosen).
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
    checkpoint: rec.Checkpoint | None = None,
    checked: bool = False,
    dist: DistContext | None = None,
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
        checkpoint: on resume, the checkpoint already read from ``run_dir`` (else read here).
        checked: the caller already ran ``build.check_config(config)``.
        dist: this rank's place in a data-parallel run (``handgrad.train.distributed_run``):
            every rank trains on its shard of each global batch; rank 0 alone evaluates (the
            records are sent to the others) and writes into ``run_dir``.

    Raises:
        ValueError, HandgradError: bad settings, missing data, an unreadable checkpoint.
    """
    if not checked:
        check_config(config)
    if resume and run_dir is None:
        raise ValueError("train: resume needs the run directory")
    config, data = load_with_threads(config, data)
    if resume and checkpoint is None:
        assert run_dir is not None
        checkpoint = rec.load_checkpoint(run_dir / rec.CHECKPOINT)
    with torch_threads(config.threads):
        return _Run(config, data, run_dir, transform, on_step, on_eval, dist).run(
            checkpoint if resume else None, handle_interrupt
        )


class _Run:
    """One training run: its parts, its state, and the loop over its steps."""

    def __init__(
        self,
        config: TrainConfig,
        data: TrainData,
        run_dir: Path | None,
        transform: BatchTransform | None,
        on_step: Callable[[int], None] | None,
        on_eval: Callable[[Record], None] | None,
        dist: DistContext | None = None,
    ) -> None:
        self.config, self.data, self.run_dir = config, data, run_dir
        self.dist = dist
        # Where this process writes: the run directory, or nowhere (ranks other than 0).
        self.out = run_dir if dist is None or dist.is_main else None
        self.on_step, self.on_eval = on_step, on_eval
        self.plan = plan = build_plan(config, data.n_train)
        parts = build_training_parts(config, data.n_train)
        self.engine: Engine
        if dist is not None:
            self.engine = DataParallelEngine(*parts, context=dist, config=config)
        else:
            self.engine = build_engine(config, *parts)
        self.schedule = build_schedule(config, data.n_train, plan.total_steps)
        if transform is None:
            transform = build_transform(config)
        self.steps = StepBatches(build_batches(config, data), plan, transform)
        self.state = LoopState(
            step=0,
            interval_start=0,
            losses=torch.zeros(plan.eval_every, dtype=torch.float64, device=config.device),
            stopping=EarlyStopping(config.monitor, config.patience),
        )
        self.records: list[Record] = []
        self.fingerprint = config.fingerprint()
        self.checkpoint_path = self.out / rec.CHECKPOINT if self.out is not None else None
        self.last_checkpoint: int | None = None
        self.test_at_end = config.eval_test == "end"
        self._started = time.perf_counter()
        self._elapsed_before = 0.0
        self.meter: ls.EngineMeter | None = None
        self.measure_at: set[int] = set()
        # (not in a data-parallel run: the probes would see one rank's shard, not the batch)
        if config.layer_stats and dist is None and ls.EngineMeter.supports(self.engine):
            self.meter = ls.EngineMeter(self.engine)
            self.measure_at = set(ls.stats_steps(plan.total_steps, plan.eval_every))
        self.layer_records: list[ls.Record] = []
        self.best_state: dict[str, torch.Tensor] | None = None

    # -- the pieces --------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._started

    def resume_from(self, ckpt: rec.Checkpoint) -> None:
        assert self.run_dir is not None
        restore(self.engine, self.state, ckpt, self.fingerprint, self.run_dir)
        if self.out is not None:
            self.records = rec.read_metrics(self.out, upto=ckpt.step)
            if len(rec.read_metrics(self.out)) != len(self.records):  # prepare_resume trimmed
                rec.rewrite_metrics(self.out, self.records)  # drop records after the checkpoint
            ls.truncate_layers(self.out, ckpt.step)  # and the layer records after it
            self.layer_records = ls.read_layers(self.out)
        if self.dist is not None:  # rank 0's records, read once; every rank continues alike
            self.records = self.dist.share(self.records, "the records at resume")
            assert isinstance(self.engine, DataParallelEngine)
            self.engine.check_in_step("the checkpoint read at resume")
        self.last_checkpoint = ckpt.step
        best = {k[len("best.") :]: v for k, v in ckpt.loop.items() if k.startswith("best.")}
        if self.config.keep_best and best:
            self.best_state = best
            self.write_best()  # a best.safetensors written after the checkpoint is undone

    def evaluate(self, *, test: bool) -> Record:
        """A record of the model now; the running losses start again from it."""
        state = self.state
        record: Record = {}
        if self.dist is None or self.dist.is_main:  # the weights are the same on every rank
            record = evaluation_record(
                self.engine,
                self.data,
                self.plan,
                state.step,
                state.since_record(),
                test=test,
                test_at_end=self.test_at_end,
            )
            record["seconds"] = round(self.elapsed(), 3)
        if self.dist is not None:
            record = self.dist.share(record)
        state.losses.zero_()
        state.interval_start = state.step
        return record

    def add_test_figures(self, record: Record) -> None:
        """The end-of-run test figures, measured by rank 0 and sent to every rank."""
        if self.dist is None or self.dist.is_main:
            add_test_figures(self.engine, self.data, record)
        if self.dist is not None:
            record.update(self.dist.share(record, "rank 0's test figures"))

    def add_record(self, record: Record) -> None:
        self.records.append(record)
        if self.out is not None:
            rec.append_metrics(self.out, record)
        if self.on_eval is not None:
            self.on_eval(record)

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is None:
            return
        self.state.elapsed = self.elapsed()
        ckpt = checkpoint_of(self.engine, self.state, self.plan.steps_per_epoch, self.fingerprint)
        if self.best_state is not None:
            ckpt.loop.update({f"best.{k}": v for k, v in self.best_state.items()})
        rec.save_checkpoint(self.checkpoint_path, ckpt)
        self.last_checkpoint = self.state.step

    def write_best(self) -> None:
        """``best.safetensors``: the kept best weights, with the step and figure they had."""
        if self.out is None or self.best_state is None:
            return
        stopping = self.state.stopping
        rec.save_model(
            self.out / rec.BEST,
            self.best_state,
            {
                "model": self.config.model,
                "step": str(stopping.best_step),
                "monitor": self.config.monitor,
                "value": repr(stopping.best),
            },
        )

    def keep_best(self, record: Record) -> None:
        """Keep the weights when ``record`` brought the best monitored figure so far."""
        stopping = self.state.stopping
        if stopping.best_step == record["step"] and record.get(stopping.monitor) is not None:
            self.best_state = self.engine.model_state()
            self.write_best()

    def diverged(self, step: int, what: str) -> tuple[str, str]:
        return "diverged", diverged_message(step, what, self.last_checkpoint, self.checkpoint_path)

    def take_step(self) -> None:
        """One optimizer step over its micro-batches; its loss summed into the buffer."""
        state = self.state
        step = state.step
        if self.schedule is not None:
            self.schedule.apply(self.engine, step)
        slot = state.losses[step - state.interval_start]
        if self.meter is not None and step + 1 in self.measure_at:
            values, records = self.meter.step(self.steps.micro_batches(step), step + 1)
            for value in values:
                slot.add_(value)
            self.layer_records.extend(records)
            if self.out is not None:
                ls.append_layers(self.out, records)
        else:
            for xb, yb in self.steps.micro_batches(step):
                slot.add_(self.engine.forward_backward(xb, yb))
            self.engine.step()
        state.step = step + 1
        if self.on_step is not None:
            self.on_step(state.step)

    def after_step(self, interrupted: bool) -> tuple[str, str] | None:
        """Evaluate, check and checkpoint as due after a step; ``(status, message)`` to stop."""
        state, plan, total = self.state, self.plan, self.plan.total_steps
        step = state.step
        if isinstance(self.engine, DataParallelEngine):  # stop together: any rank's Ctrl-C
            interrupted = self.engine.stop_agreed
        due_eval = step % plan.eval_every == 0 or step == total
        due_checkpoint = step % plan.checkpoint_every == 0 or step == total
        if not (due_eval or due_checkpoint or interrupted):
            return None
        bad = first_nonfinite(state.since_record())
        if bad is not None:
            value = state.losses[bad].item()
            return self.diverged(state.interval_start + bad, f"the training loss is {value}")
        early = False
        if due_eval:
            record = self.evaluate(test=not self.test_at_end)
            if not math.isfinite(record["train_loss"]):
                return self.diverged(step, f"the train loss is {record['train_loss']}")
            early = state.stopping.update(record)
            if self.test_at_end and (step == total or early):
                self.add_test_figures(record)
            self.add_record(record)
            if self.config.keep_best:
                self.keep_best(record)
            blown = doctor.divergence(self.records)
            if blown is not None:
                where = (
                    f"the last good checkpoint is step {self.last_checkpoint} in "
                    f"{self.checkpoint_path}"
                    if self.last_checkpoint is not None
                    else "no checkpoint was written"
                )
                return "diverged", f"{blown.message}; training stopped; {where}"
        if not self.engine.weights_finite():
            return self.diverged(step, "the weights are not finite")
        if due_checkpoint or interrupted or early:
            self.save_checkpoint()
        if early:
            return "early_stopped", state.stopping.message()
        if interrupted and step < total:
            return "interrupted", f"interrupted at step {step} of {total}; checkpoint written"
        return None

    # -- the loop ----------------------------------------------------------------------------
    def run(self, ckpt: rec.Checkpoint | None, handle_interrupt: bool) -> RunResult:
        config, state, total = self.config, self.state, self.plan.total_steps
        if ckpt is not None:
            self.resume_from(ckpt)
        elif self.out is not None:
            rec.atomic_write(self.out / rec.CONFIG, config.to_json().encode())
        self._started, self._elapsed_before = time.perf_counter(), state.elapsed
        status, message = "completed", ""
        with grad_mode(self.engine), sigint_flag(handle_interrupt) as interrupt:
            if isinstance(self.engine, DataParallelEngine):
                self.engine.dp.stop_vote = lambda: interrupt.requested
            if self.schedule is not None:
                self.schedule.apply(self.engine, min(state.step, total - 1))
            if state.step == 0 and not self.records:
                self.add_record(self.evaluate(test=not self.test_at_end))
                self.save_checkpoint()
            if state.step >= total:
                message = f"the run had already finished its {total} steps"
            while state.step < total:
                self.take_step()
                stop = self.after_step(interrupt.requested)
                if stop is not None:
                    status, message = stop
                    break
        if isinstance(self.engine, DataParallelEngine):
            self.engine.check_in_step("the final weights")  # no rank drifted from the others
        if self.out is not None and status != "diverged":
            rec.save_model(
                self.out / rec.MODEL,
                self.engine.model_state(),
                {"model": config.model, "config_sha256": self.fingerprint},
            )
        if status == "completed" and not message:
            message = f"finished {total} steps"
        stopping = state.stopping
        best = None
        if stopping.best is not None:
            best = {"step": stopping.best_step, "monitor": config.monitor, "value": stopping.best}
        return RunResult(
            status=status,
            message=message,
            config=config,
            plan=self.plan,
            steps=state.step,
            records=self.records,
            run_dir=self.run_dir,
            seconds=self.elapsed(),
            model=self.engine.final_model(),
            data=self.data,
            best=best,
            extra={"layers": self.layer_records},
        )
