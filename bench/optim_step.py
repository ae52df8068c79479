"""Time one Adam step over an MNIST MLP's parameters (784-100-10): handgrad vs torch.optim.

Contenders, all float32 on one thread, timed interleaved (round-robin, one step each per
round) so that machine noise hits them alike; the table gives the median and the 10th-90th
percentiles over the rounds:

- handgrad flat:          the model's parameters are views into one buffer (flatten_parameters),
                          updated by the compiled one-pass loop (the default on the CPU)
- handgrad flat, ops:     the same buffer, the update as six torch operations (fused=False)
- handgrad per-parameter: the compiled loop, once per tensor
- torch for-loop:         torch.optim.Adam(foreach=False), torch's default on CPU
- torch foreach:          torch.optim.Adam(foreach=True)
- torch fused:            torch.optim.Adam(fused=True)

Usage:
    .venv/bin/python bench/optim_step.py [--rounds 3000] [--out bench/results/optim_step.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from handgrad.nn.flat import flatten_into_buffer
from handgrad.optim import Adam

SHAPES = [(100, 784), (100,), (10, 100), (10,)]


def make_params(flat: bool, seed: int = 0) -> list[Tensor]:
    """The MLP's parameters, each with a random ``.grad``; laid end to end if ``flat``."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(shape, generator=gen) * 0.01 for shape in SHAPES]
    grads = [torch.randn(shape, generator=gen) for shape in SHAPES]
    if flat:
        _, params = flatten_into_buffer(params)
        _, grads = flatten_into_buffer(grads)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    return params


def contenders() -> dict[str, Callable[[], None]]:
    steps: dict[str, Callable[[], None]] = {
        "handgrad flat": Adam(make_params(flat=True), lr=1e-3).step,
        "handgrad flat, ops": Adam(make_params(flat=True), lr=1e-3, fused=False).step,
        "handgrad per-parameter": Adam(make_params(flat=False), lr=1e-3).step,
        "torch for-loop": torch.optim.Adam(make_params(False), lr=1e-3, foreach=False).step,
        "torch foreach": torch.optim.Adam(make_params(False), lr=1e-3, foreach=True).step,
    }
    try:
        fused = torch.optim.Adam(make_params(False), lr=1e-3, fused=True)
        fused.step()
        steps["torch fused"] = fused.step
    except RuntimeError:  # fused Adam on CPU needs a recent torch
        pass
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=200, help="untimed steps per contender")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()

    torch.set_num_threads(1)
    steps = contenders()
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter_ns()
            step()
            times[name].append((time.perf_counter_ns() - start) / 1e3)

    n_params = sum(torch.Size(s).numel() for s in SHAPES)
    print(f"Adam step over {n_params:,} float32 parameters, 1 thread, {args.rounds} rounds")
    print(f"{'contender':24s} {'median us':>10s} {'p10 us':>8s} {'p90 us':>8s}")
    figures = {}
    for name, ts in times.items():
        deciles = statistics.quantiles(ts, n=10)
        figures[name] = {
            "median_us": statistics.median(ts),
            "p10_us": deciles[0],
            "p90_us": deciles[-1],
        }
        row = figures[name]
        print(f"{name:24s} {row['median_us']:10.1f} {row['p10_us']:8.1f} {row['p90_us']:8.1f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "bench": "optim_step",
            "n_params": n_params,
            "rounds": args.rounds,
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(),
            "figures": figures,
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
