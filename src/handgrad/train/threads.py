"""Torch's thread count during a run: set it, restore it, or measure which count is fastest.

A config's ``threads`` is ``None`` (torch's own default, left as it is), a count, or ``"auto"``:
:func:`probe_threads` then times a few optimizer steps of the run's own model at each count
from 1 to torch's default and keeps the fastest. The run writes the chosen count into its
``config.json``, so a resumed run reuses it (float sums, and so the exact results, can depend
on the thread count).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from handgrad.train.build import TrainData
    from handgrad.train.config import TrainConfig


@contextlib.contextmanager
def torch_threads(threads: int | str | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (None: as they are), then restore them."""
    if threads == "auto":
        raise ValueError("threads: resolve 'auto' first (handgrad.train.threads.resolve_threads)")
    previous = torch.get_num_threads()
    if isinstance(threads, int):
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def probe_threads(
    config: TrainConfig, data: TrainData, *, steps: int = 8, repeats: int = 3
) -> dict[int, float]:
    """Median seconds per optimizer step of ``config``'s own model at each thread count.

    Counts 1 to torch's current default; each is timed ``repeats`` times over ``steps`` steps
    on the run's first training batches (a fresh model; torch's generator and the thread
    count are left as they were).
    """
    from handgrad.train.build import build_training_parts
    from handgrad.train.engines import build_engine, grad_mode

    most = max(1, torch.get_num_threads())
    size = config.batch_size or data.n_train
    xb, yb = data.x_train[:size], data.y_train[:size]
    seconds: dict[int, float] = {}
    with torch.random.fork_rng(devices=[]), torch_threads(None):
        for count in range(1, most + 1):
            torch.set_num_threads(count)
            engine = build_engine(config, *build_training_parts(config, data.n_train))
            times = []
            with grad_mode(engine):
                engine.forward_backward(xb, yb)  # warm-up
                engine.step()
                for _ in range(repeats):
                    start = time.perf_counter()
                    for _ in range(steps):
                        engine.forward_backward(xb, yb)
                        engine.step()
                    times.append((time.perf_counter() - start) / steps)
            seconds[count] = statistics.median(times)
    return seconds


def resolve_threads(config: TrainConfig, data: TrainData) -> TrainConfig:
    """``config`` with ``threads="auto"`` replaced by the fastest count :func:`probe_threads`
    finds (any other config is returned as it is)."""
    if config.threads != "auto":
        return config
    seconds = probe_threads(config, data)
    best = min(seconds, key=lambda n: seconds[n])
    return config.replace(threads=best)


def load_with_threads(
    config: TrainConfig, data: TrainData | None = None
) -> tuple[TrainConfig, TrainData]:
    """The run's data, loaded under the run's thread count, and the config with ``"auto"``
    resolved (the data's normalization sums can depend on the thread count, so a resumed run,
    which loads under the recorded count, sees the very same tensors).

    ``data``, when given, is used as it is.
    """
    from handgrad.train.build import load_data

    if data is not None:
        return resolve_threads(config, data), data
    if config.threads != "auto":
        with torch_threads(config.threads):
            return config, load_data(config)
    data = load_data(config)
    resolved = resolve_threads(config, data)
    if resolved.threads != torch.get_num_threads():
        with torch_threads(resolved.threads):
            data = load_data(resolved)
    return resolved, data
