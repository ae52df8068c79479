"""What the benchmark scripts share: interleaved timing, machine facts, MNIST, tables, JSON.

Timing discipline (the machine is small and shared, so every figure is relative):

- contenders that are compared run in the same process, on the same data, one after another
  in rounds: A, B, C, then C, B, A, then A, B, C, ... (the order flips each round so neither
  always runs on a cache the other just warmed or trashed);
- each round times a *block* of steps with ``time.perf_counter`` (blocks are sized to last a
  few milliseconds, so the clock's resolution and call overhead do not matter);
- the figure is the median over rounds of time per step; p10 and p90 show the spread, and
  ratios are taken between medians of the same rounds.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"

Step = Callable[[], object]


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: Sequence[int] | None = None) -> dict[str, Any]:
    """Where and when the figures were taken: CPU, cores, library versions, date, threads."""
    import numpy

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "blas": "mkl" if torch.backends.mkl.is_available() else "other",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_start": list(os.getloadavg()),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))},
    }
    if threads is not None:
        info["threads"] = list(threads)
    return info


def finish(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with the load average at the end of the run added (other jobs share the CPU)."""
    return {**info, "load_average_end": list(os.getloadavg())}


def time_block(step: Step, steps: int) -> float:
    """Seconds per step over ``steps`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def time_block_cpu(step: Step, steps: int) -> tuple[float, float]:
    """Wall seconds and this thread's CPU seconds per step over ``steps`` calls.

    With one torch thread all the work runs on the calling thread, so its CPU time leaves out
    the time the process spent descheduled by other jobs (not their effect on the caches).
    """
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - wall) / steps, (time.thread_time() - cpu) / steps


def block_size(step: Step, target_s: float, max_steps: int = 10_000) -> int:
    """How many steps make a block of about ``target_s`` seconds (at least one)."""
    once = time_block(step, 1)
    steps = 1
    while once * steps < target_s / 4 and steps < max_steps:
        steps *= 2
    per_step = time_block(step, steps)
    return max(1, min(max_steps, round(target_s / max(per_step, 1e-9))))


def interleaved(
    contenders: Mapping[str, Step],
    *,
    rounds: int,
    block_s: float = 0.02,
    warmup_s: float = 0.2,
    budget_s: float | None = None,
    min_rounds: int = 5,
    steps: int | None = None,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Seconds per step of each contender, one entry per round, timed interleaved.

    Args:
        contenders: name -> a callable doing one step.
        rounds: rounds to run (each round times one block of every contender).
        block_s: target duration of one block; all contenders use the same number of steps
            per block (sized on the slowest), so each round compares like with like.
        warmup_s: untimed running of each contender before the first round.
        budget_s: stop early (after at least ``min_rounds``) once this much time has passed.
        steps: steps per block, instead of sizing blocks from ``block_s``.
        cpu: if given, filled with this thread's CPU seconds per step, like the result.
    """
    names = list(contenders)
    for step in contenders.values():
        end = time.perf_counter() + warmup_s
        step()
        while time.perf_counter() < end:
            step()
    if steps is None:
        steps = min(block_size(contenders[name], block_s) for name in names)
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            wall, thread = time_block_cpu(contenders[name], steps)
            times[name].append(wall)
            if cpu is not None:
                cpu.setdefault(name, []).append(thread)
        if budget_s is not None and r + 1 >= min_rounds and time.perf_counter() - start > budget_s:
            break
    return times


def summary(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p10 and p90 in microseconds, and the number of rounds."""
    us = [s * 1e6 for s in seconds]
    if len(us) >= 2:
        deciles = statistics.quantiles(us, n=10, method="inclusive")
        p10, p90 = deciles[0], deciles[-1]
    else:
        p10 = p90 = us[0]
    return {"median_us": statistics.median(us), "p10_us": p10, "p90_us": p90, "rounds": len(us)}


def paired_ratio(slow: Sequence[float], fast: Sequence[float]) -> float:
    """Median over rounds of slow/fast, each round's two blocks taken side by side."""
    return statistics.median(s / f for s, f in zip(slow, fast, strict=True))


def data_dir(flag: str | None) -> str | None:
    """The MNIST folder: the ``--data`` flag, else ``$HANDGRAD_DATA``, else None."""
    return flag or os.environ.get("HANDGRAD_DATA") or None


def load_mnist(directory: str | None) -> tuple[Any, str] | tuple[None, str]:
    """The full MNIST preset (float32, pixels / 255, class indices) and a note on its source.

    Returns ``(None, reason)`` when the files are not found; nothing is downloaded.
    """
    from handgrad.data import load_preset

    if directory is None:
        return None, "no MNIST folder given (--data or HANDGRAD_DATA)"
    try:
        ds = load_preset("mnist", data_dir=directory, download=False)
    except Exception as exc:  # any failure means: use random data and say why
        return None, f"MNIST not loaded from {directory}: {exc}"
    return ds, f"MNIST from {ds.source}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, numbers right-aligned, as a Markdown pipe table (readable as is)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(row):
            numeric = cell[:1].isdigit() or (cell[:1] in "-+." and cell[1:2].isdigit())
            parts.append(cell.rjust(widths[i]) if numeric else cell.ljust(widths[i]))
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def write_json(name: str, record: Mapping[str, Any], out: Path | None = None) -> Path:
    """Write ``record`` to ``bench/results/<name>.json`` (or ``out``); return the path."""
    path = out if out is not None else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
