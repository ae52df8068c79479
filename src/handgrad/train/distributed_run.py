"""``handgrad train`` on K processes: the process group, the data-parallel engine, rank 0's jobs.

Under ``torchrun --nproc_per_node=K -m handgrad train ...`` (found by torchrun's variables
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) every rank runs the same command: the same config,
the same seeds, the same data and the same step plan (``train.steps``: the global batch of each
step, augmented on every rank from the same seeds). The engine
(:class:`DataParallelEngine`) hands each global batch to ``distributed.DataParallel``, which
keeps this rank's rows (``shard_bounds``), runs the hand-written forward and backward on them
and all-reduces the flat gradient buffer, so the optimizer takes the single-process step on
every rank. With ``accumulate`` micro-batches per step the gradients of the earlier ones are
set aside while the next is reduced, then added back:

    G = Σ_j [AR] Σ_r ∇L_{j,r}      (j: the step's micro-batches, r: the ranks)

Rank 0 alone evaluates (the weights are the same everywhere) and sends each record to the
others (:meth:`DistContext.share`), so every rank takes the same decisions (early stopping,
divergence); rank 0 alone holds the run lock and writes the run directory. Every step that
the other ranks could fail on before the first training step is agreed (:meth:`DistContext.agree`):
an error on any rank stops every rank, the failing one with its message, the others quietly.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import Tensor

from handgrad import nn
from handgrad.distributed import DataParallel, DistributedError, init_process_group
from handgrad.distributed.group import DEFAULT_TIMEOUT_S, check_same_everywhere, collective
from handgrad.distributed.group import fingerprint as model_fingerprint
from handgrad.errors import HandgradError
from handgrad.optim import Optimizer
from handgrad.train import records as rec
from handgrad.train.config import TrainConfig
from handgrad.train.engines import HandgradEngine, LossModule

T = TypeVar("T")
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
# Test hook: "STEP" or "STEP:RANK" (rank 1 by default) SIGKILLs that rank after that step.
KILL_ENV = "HANDGRAD_TEST_KILL_AT_STEP"
TORCHRUN_HINT = "torchrun --nproc_per_node=K -m handgrad train"


class PeerFailed(HandgradError):
    """Another rank failed (it reports why); this one stops without a word."""


def under_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by torchrun (its ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``)."""
    env = os.environ if environ is None else environ
    return all(name in env for name in TORCHRUN_VARS)


def check_options(*, engine: str, threads: Any, lr: Any, find_lr: bool) -> None:
    """Refuse what a data-parallel run does not do, before the process group is joined.

    Raises:
        HandgradError: one line naming the option and what to do instead.
    """
    if engine != "handgrad":
        raise HandgradError(
            f"--engine {engine}: a distributed run trains handgrad's engine only; compare the "
            "engines in a single process (handgrad train --engine both, handgrad compare)"
        )
    if find_lr or lr == "auto":
        raise HandgradError(
            "--find-lr / --lr auto: run the LR finder in a single process (handgrad train "
            "--find-lr), then give its --lr to the distributed run"
        )
    if threads == "auto":
        raise HandgradError(
            "--threads auto: give the distributed run a count per rank (--threads N), the same "
            "on every rank"
        )


def check_batches(batch_size: int, n_train: int, drop_last: bool, world_size: int) -> None:
    """Every global batch has a row for every rank (the last, short one too).

    Raises:
        HandgradError: naming the batch and what would fit.
    """
    short = n_train % batch_size
    smallest = batch_size if drop_last or not short else min(batch_size, short)
    if smallest < world_size:
        which = "the last batch of each epoch" if smallest < batch_size else "each batch"
        raise HandgradError(
            f"--batch-size {batch_size}: {which} has {smallest} rows, fewer than the "
            f"{world_size} ranks (each needs one); use --drop-last or a batch size that fits"
        )


@dataclass
class DistContext:
    """This process's place in the group: ``rank`` of ``world_size``, ``backend``, and the
    timeout every collective is bounded by."""

    rank: int
    world_size: int
    backend: str
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, value: T, what: str = "rank 0's record") -> T:
        """Rank 0's ``value`` on every rank (``broadcast_object_list``)."""
        box: list[Any] = [value]
        collective(what, lambda: dist.broadcast_object_list(box, src=0), self.timeout_s)
        result: T = box[0]
        return result

    def agree(self, fn: Callable[[], T], what: str, *, shared: bool = False) -> T:
        """Run ``fn`` on every rank, then agree that it went well everywhere.

        Returns this rank's result (rank 0's, when ``shared``: it is sent to every rank).

        Raises:
            the error ``fn`` raised, on the rank where it failed (on rank 0 alone when it failed
            there too); ``PeerFailed`` on the others.
        """
        value: Any = None
        error: BaseException | None = None
        try:
            value = fn()
        except (HandgradError, ValueError, TypeError, OSError) as exc:
            error = exc
        message = None if error is None else f"{error}"
        mine = (message, value if shared and self.is_main else None)
        gathered: list[Any] = [None] * self.world_size
        collective(what, lambda: dist.all_gather_object(gathered, mine), self.timeout_s)
        failed = [r for r, (text, _) in enumerate(gathered) if text is not None]
        if error is not None and (self.is_main or 0 not in failed):
            raise error  # rank 0 speaks for all when it failed too (the same command)
        if failed:
            raise PeerFailed(f"rank {failed[0]} failed: {gathered[failed[0]][0]}")
        result: T = gathered[0][1] if shared else value
        return result

    def check_same(self, digest: str) -> None:
        check_same_everywhere(digest, self.timeout_s)

    def stamp(self, config: TrainConfig) -> TrainConfig:
        """``config`` recording this group (``world_size``, ``backend``)."""
        return config.replace(world_size=self.world_size, backend=self.backend)


def run_device(
    device: str | None, resume: str | None, out: str, config: Callable[[], TrainConfig]
) -> str:
    """The device a run started this way trains on: ``device`` if given, the resumed run's
    own, or the new config's; "cpu" when it cannot be read yet (the run's own checks then
    say why, on rank 0)."""
    try:
        if device:
            return str(device)
        if resume is not None:
            return TrainConfig.load(rec.find_run(resume, out) / rec.CONFIG).device
        return str(config().device)
    except (HandgradError, ValueError, TypeError, OSError):
        return "cpu"


def join(device: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
    """Join torchrun's process group (gloo on CPU, NCCL for CUDA), bounded by ``timeout_s``."""
    if not under_torchrun():
        raise HandgradError(
            f"--distributed: start the ranks with torchrun, e.g. {TORCHRUN_HINT} --distributed "
            "... (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)"
        )
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    rank, world, backend = init_process_group(device=device, timeout_s=timeout_s)
    return DistContext(rank, world, backend, timeout_s)


def leave(context: DistContext | None) -> None:
    """Leave the process group after a run that ended well."""
    if context is not None and dist.is_initialized():
        dist.destroy_process_group()


def check_world(config: TrainConfig, context: DistContext | None, run: str) -> None:
    """A resumed run continues on as many processes as it started on (the sums, and so the
    exact results, depend on how the batch is sharded)."""
    have = 1 if context is None else context.world_size
    if context is not None and config.engine != "handgrad":
        check_options(engine=config.engine, threads=None, lr=None, find_lr=False)
    if config.world_size == have:
        return
    if config.world_size == 1:
        how = f"handgrad train --resume {run} (a single process)"
    else:
        how = f"torchrun --nproc_per_node={config.world_size} -m handgrad train --resume {run}"
    raise HandgradError(
        f"--resume {run}: the run was trained on {config.world_size} process(es), this is "
        f"{have}; resume it as it ran: {how}"
    )


class DataParallelEngine(HandgradEngine):
    """The handgrad engine whose ``forward_backward`` is ``DataParallel.compute_gradients``:
    the global batch in, this rank's shard through the hand-written passes, the global batch's
    gradient out (all-reduced), on every rank."""

    def __init__(
        self,
        model: nn.Module,
        loss: LossModule,
        opt: Optimizer,
        context: DistContext,
        config: TrainConfig,
    ) -> None:
        super().__init__(model, loss, opt)
        self.context = context
        self.dp = DataParallel(
            model,
            opt,
            cast(nn.Module, loss),
            config=config.fingerprint(),
            timeout_s=context.timeout_s,
        )  # BatchNorm1d -> SyncBatchNorm, Dropout -> ShardedDropout; configs checked equal
        self._accumulated = False  # a micro-batch of this step already holds its gradient
        self._kill_at = _kill_step(context.rank)
        self._steps = 0

    def forward_backward(self, xb: Tensor, yb: Tensor) -> Tensor:
        """One micro-batch ``xb (B, *)``, ``yb (B, *)`` (global): its global loss; the step's
        gradient so far stays in every ``.grad``."""
        earlier = None
        if self._accumulated:  # set the reduced sum aside: the all-reduce must see this one only
            earlier = self.dp.flat_grad.clone()
            self.opt.zero_grad()
        value = self.dp.compute_gradients(xb, yb)
        if earlier is not None:
            self.dp.flat_grad.add_(earlier)
        self._accumulated = True
        return value

    def step(self, after_update: Callable[[], None] | None = None) -> None:
        super().step(after_update)
        self._accumulated = False
        self._steps += 1
        if self._kill_at is not None and self._steps == self._kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # the test of a rank lost mid-run

    def check_in_step(self, what: str) -> None:
        """Every rank holds the same weights and optimizer state (checked by digest)."""
        digest = model_fingerprint(self.model, self.opt)
        try:
            self.context.check_same(digest)
        except DistributedError as exc:
            raise DistributedError(f"{what}: {exc}") from None

    @property
    def stop_agreed(self) -> bool:
        """Some rank was asked to stop (Ctrl-C, SIGTERM) during the last step."""
        return self.dp.stop_agreed


def _kill_step(rank: int) -> int | None:
    text = os.environ.get(KILL_ENV, "").strip()
    if not text:
        return None
    step, _, who = text.partition(":")
    return int(step) if rank == int(who or 1) else None
