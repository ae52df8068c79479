"""A run as ``handgrad train`` starts it: a fresh run (one engine or both) or a resumed one.

The command line only parses and prints; this module does the rest, once each:

- the config is checked once (``build.check_config``) and the data loaded once;
- a fresh run is built once in full before anything is written (``build.preflight``), and
  ``threads="auto"`` is measured once, for both engines alike;
- a resumed run reads its ``config.json`` and its checkpoint once (a damaged one fails here,
  before anything runs), and reuses the thread count that config records;
- the closing timings (a recipe's ``forward_ms`` / ``backward_ms``) build their own engine;
- a data-parallel run (``dist``, under torchrun) does the same on every rank, then the ranks
  agree that it went well everywhere (``DistContext.agree``) before anything is trained: rank 0
  alone checks ``--out``, creates the run directory and holds its lock (and tells the others
  its name), on resume rank 0 checks and tidies the run, then the others read its checkpoint.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from handgrad.errors import HandgradError
from handgrad.train import lr_finder
from handgrad.train import records as rec
from handgrad.train.build import (
    TrainData,
    build_loss,
    build_model,
    build_optimizer,
    check_config,
    preflight,
)
from handgrad.train.config import TrainConfig
from handgrad.train.distributed_run import (
    DistContext,
    check_batches,
    check_options,
    check_world,
)
from handgrad.train.engines import ENGINES, Engine, build_engine, grad_mode
from handgrad.train.evaluation import Record
from handgrad.train.lock import LOCK_NAME, RunLock
from handgrad.train.loop import RunResult, train
from handgrad.train.resume import prepare_resume
from handgrad.train.steps import Plan, build_plan
from handgrad.train.tabular import resolve_table
from handgrad.train.threads import load_with_threads, torch_threads

# Exit codes: 0 done (also early stop), 1 diverged, 2 bad input, 130 interrupted.
EXIT_DIVERGED = 1
EXIT_INTERRUPTED = 130


@dataclass
class Session:
    """What a command-line run needs before its first step.

    Attributes:
        config: the checked config (``threads`` resolved; on resume, the run's own).
        data: the loaded tensors.
        plan: the step plan.
        engines: the engines to run in turn (``["handgrad", "autograd"]`` for ``both``).
        out: where new run directories go.
        resume_dir: the run directory to continue, or None for a fresh run.
        checkpoint: the resumed run's checkpoint, read once and checked against the run.
        locks: the run locks this session holds (``RunLock``), released when it closes: a
            session is a context manager, held for the run's whole lifetime.
    """

    config: TrainConfig
    data: TrainData
    plan: Plan
    engines: list[str]
    out: str
    resume_dir: Path | None = None
    checkpoint: rec.Checkpoint | None = None
    locks: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    lr_finder: lr_finder.LRFinderResult | None = None  # --lr auto: the finder that chose lr
    dist: DistContext | None = None  # this rank's place in a data-parallel run

    @property
    def is_main(self) -> bool:
        """Whether this process writes and prints (rank 0, or a single process)."""
        return self.dist is None or self.dist.is_main

    @property
    def start_step(self) -> int:
        return self.checkpoint.step if self.checkpoint is not None else 0

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.locks.close()


def check_out(out: str) -> None:
    """Refuse ``--out`` naming a run directory (new runs go beside runs, never inside one)."""
    path = Path(out).expanduser()
    if (path / LOCK_NAME).exists():
        with RunLock(path):  # RunLocked if a live process writes there
            pass
    if (path / rec.CONFIG).is_file() or (path / rec.CHECKPOINT).is_file():
        raise HandgradError(
            f"--out {out}: is a run directory; give the folder runs go in (e.g. --out "
            f"{path.parent}), or continue that run with --resume {out}"
        )


def fresh_session(
    config: TrainConfig, *, engine: str, out: str, dist: DistContext | None = None
) -> Session:
    """A new run of ``config`` on ``engine`` (``handgrad``, ``autograd`` or ``both``); with
    ``dist``, on every rank of a data-parallel run, agreed between them."""
    if dist is None:
        return _fresh_session(config, engine=engine, out=out, dist=None)

    def start() -> Session:
        check_options(engine=engine, threads=config.threads, lr=config.lr, find_lr=False)
        session = _fresh_session(dist.stamp(config), engine=engine, out=out, dist=dist)
        plan, n_train = session.plan, session.data.n_train
        check_batches(plan.batch_size, n_train, session.config.drop_last, dist.world_size)
        return session

    session = dist.agree(start, "the start of the run")
    dist.check_same(session.config.fingerprint())  # the same command on every rank
    return session


def _fresh_session(
    config: TrainConfig, *, engine: str, out: str, dist: DistContext | None
) -> Session:
    if engine not in (*ENGINES, "both"):
        raise ValueError(f"engine: expected handgrad, autograd or both, got {engine!r}")
    if engine != "both":
        config = config.replace(engine=engine)
    config = resolve_table(config)  # a --data-file run: its task, SHA-256 and standardization
    check_config(config)
    if dist is None or dist.is_main:
        check_out(out)
        rec.check_writable(out)
    config, data = load_with_threads(config)
    found = None
    if config.lr == "auto":  # the LR finder first; the run records the lr it chose
        with torch_threads(config.threads):
            found = lr_finder.find_lr_for(config, data)
        config = config.replace(lr=float(f"{found.suggestion:.3g}"), lr_per_sample=False)
    plan = preflight(config, data)
    engines = list(ENGINES) if engine == "both" else [config.engine]
    return Session(
        config=config,
        data=data,
        plan=plan,
        engines=engines,
        out=out,
        lr_finder=found,
        dist=dist,
    )


def find_lr_run(config: TrainConfig, *, out: str) -> tuple[Path, lr_finder.LRFinderResult]:
    """``handgrad train --find-lr``: the range test alone, in a new run directory
    (``config.json``, ``lr_finder.json``, ``lr_finder.png``); no training."""
    check_config(config)
    rec.check_writable(out)
    config, data = load_with_threads(config)
    with torch_threads(config.threads):
        found = lr_finder.find_lr_for(config, data)
    run_dir = rec.new_run_dir(out, f"{config.name}-lr-finder")
    rec.atomic_write(run_dir / rec.CONFIG, config.to_json().encode())
    lr_finder.write_lr_finder(run_dir, found)
    return run_dir, found


def resume_session(
    run: str,
    *,
    out: str,
    data_dir: str | None = None,
    changes: list[str] | tuple[str, ...] = (),
    dist: DistContext | None = None,
) -> Session:
    """The run in directory ``run`` (or named ``run`` under ``out``), ready to continue.

    Args:
        changes: the options that would change what the run computes (the resume guard
            refuses them: a resumed run continues exactly as configured).
        dist: on every rank of a data-parallel run: rank 0 locks, checks and tidies the run,
            then every other rank reads the same checkpoint.

    Raises:
        HandgradError: a change asked for, no such run, its config or checkpoint cannot be
            read, or the run was trained on another number of processes.
    """
    if dist is None:
        return _resume_session(run, out=out, data_dir=data_dir, changes=changes, dist=None)
    first = dist.agree(
        lambda: (
            _resume_session(run, out=out, data_dir=data_dir, changes=changes, dist=dist)
            if dist.is_main
            else None
        ),
        "the checks of the resumed run",
    )
    where = dist.share(str(first.resume_dir) if first is not None else None, "the run's name")
    follower = dist.agree(  # every rank joins; rank 0 has read it already
        lambda: None if first is not None else _follow_resume(Path(str(where)), data_dir, dist),
        "the checkpoint read",
    )
    session = first if first is not None else follower
    assert session is not None
    return session


def _follow_resume(run_dir: Path, data_dir: str | None, dist: DistContext) -> Session:
    """A rank other than 0 joining the run rank 0 checked: its config and checkpoint, read."""
    config = TrainConfig.load(run_dir / rec.CONFIG)
    if data_dir is not None:
        config = config.replace(data_dir=data_dir)
    check_config(config)
    config, data = load_with_threads(config)
    plan = build_plan(config, data.n_train)
    return Session(
        config=config,
        data=data,
        plan=plan,
        engines=[config.engine],
        out=str(run_dir.parent),
        resume_dir=run_dir,
        checkpoint=rec.load_checkpoint(run_dir / rec.CHECKPOINT),
        dist=dist,
    )


def _resume_session(
    run: str,
    *,
    out: str,
    data_dir: str | None,
    changes: list[str] | tuple[str, ...],
    dist: DistContext | None,
) -> Session:
    if changes:
        flag = changes[0]
        raise HandgradError(
            f"{flag}: --resume continues a run exactly as configured; to change it, start a "
            f"new run with --config {run}/config.json {flag} ..."
        )
    run_dir = rec.find_run(run, out)
    with contextlib.ExitStack() as failing:  # the lock is released if any check fails
        lock = failing.enter_context(RunLock(run_dir))  # one writer: before anything is read
        config = TrainConfig.load(run_dir / rec.CONFIG)
        check_world(config, dist, run)
        if data_dir is not None:
            config = config.replace(data_dir=data_dir)
        check_config(config)
        config, data = load_with_threads(config)
        plan = build_plan(config, data.n_train)
        with torch.random.fork_rng(devices=[]):
            expected = build_model(config, seed=False).state_dict()
        # Everything is checked before anything changes; then stale temporaries go.
        point = prepare_resume(
            lock, fingerprint=config.fingerprint(), plan=plan, expected_model=expected
        )
        locks = failing.pop_all()  # all went well: the session holds the lock from here
    return Session(
        config=config,
        data=data,
        plan=plan,
        engines=[config.engine],
        out=out,
        resume_dir=run_dir,
        checkpoint=point.checkpoint,
        locks=locks,
        dist=dist,
    )


def run_dir_for(session: Session, engine: str) -> Path:
    """The resumed run's directory, or a new one (``<name>-<engine>`` when the session runs
    both engines)."""
    if session.resume_dir is not None:
        return session.resume_dir
    name = session.config.name
    name = name if len(session.engines) == 1 else f"{name}-{engine}"

    def create() -> str | None:
        if not session.is_main:
            return None
        path = rec.new_run_dir(session.out, name)
        session.locks.enter_context(RunLock(path))  # held until the session closes
        return str(path)

    if session.dist is None:
        return Path(str(create()))
    # Rank 0 creates it and holds its lock; the others learn its name, and start after.
    return Path(str(session.dist.agree(create, "the run directory", shared=True)))


def run_engine(
    session: Session,
    engine: str,
    run_dir: Path,
    *,
    on_step: Callable[[int], None] | None = None,
    on_eval: Callable[[Record], None] | None = None,
) -> RunResult:
    """Train the session's config on ``engine``, writing into ``run_dir``."""
    config = session.config.replace(engine=engine)
    if session.lr_finder is not None:
        lr_finder.write_lr_finder(run_dir, session.lr_finder)
    return train(
        config,
        run_dir=run_dir,
        resume=session.resume_dir is not None,
        data=session.data,
        on_step=on_step,
        on_eval=on_eval,
        checkpoint=session.checkpoint,
        checked=True,
        dist=session.dist,
    )


def closing_timings(result: RunResult) -> dict[str, float]:
    """A recipe's closing figures: one forward (with the loss) and one backward on the whole
    training set, in milliseconds, on a fresh engine holding the run's final weights."""
    config, data = result.config, result.data
    engine = build_engine(
        config,
        result.model,
        build_loss(config),
        build_optimizer(config, result.model, data.n_train),
    )
    with torch_threads(config.threads):
        forward, backward = time_forward_backward(engine, data.x_train, data.y_train)
    return {"forward_ms": 1000 * forward, "backward_ms": 1000 * backward}


def time_forward_backward(
    engine: Engine, x: Tensor, y: Tensor, repeats: int = 5
) -> tuple[float, float]:
    """Median wall seconds of one forward (with the loss) and one backward on all of ``x``,
    as the fastai notebooks time ``model(x_train, y_train)`` and ``model.backward()``."""
    forward, backward = [], []
    with grad_mode(engine):
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


def resume_command(session: Session, run_dir: object) -> str:
    """The command that continues the run (under torchrun for a data-parallel one)."""
    if session.dist is None:
        return f"handgrad train --resume {run_dir}"
    k = session.dist.world_size
    return f"torchrun --nproc_per_node={k} -m handgrad train --resume {run_dir}"


def exit_code(result: RunResult) -> int:
    """0 completed or early-stopped, 1 diverged, 130 interrupted."""
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    if result.status == "diverged":
        return EXIT_DIVERGED
    return 0
