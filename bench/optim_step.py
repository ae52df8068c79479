"""Time one optimizer step over an MNIST MLP's parameters (784-100-10): handgrad vs torch.optim.

Contenders, all float32 on one thread, timed interleaved (one step each per round, in a new
random order each round) so that machine noise and cache effects hit them alike; the table
gives the median and the 10th-90th percentiles over the rounds:

- handgrad flat:          the model's parameters are views into one buffer (flatten_parameters),
                          updated by the compiled one-pass loop (the default on the CPU)
- handgrad flat, zero_grad(): the same, with ``opt.zero_grad()`` (``.grad = None``) and each
                          ``.grad`` re-attached as its slot of the flat gradient buffer before
                          the step, as handgrad's backward does: the plain step's optimizer part
- handgrad flat, ops:     the same buffer, the plain update as torch operations (fused=False)
- handgrad per-parameter: the update once per tensor (the state's first step always is)
- torch for-loop:         torch.optim.Adam(foreach=False), torch's default on CPU
- torch foreach:          torch.optim.Adam(foreach=True)
- torch fused:            torch.optim.Adam(fused=True)

``--optim rmsprop`` times RMSprop instead (handgrad's compiled loop against torch's
for-loop and foreach implementations).

Usage:
    .venv/bin/python bench/optim_step.py [--rounds 3000] [--optim adam|rmsprop]
        [--out bench/results/optim_step.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from handgrad.nn.flat import flatten_into_buffer
from handgrad.optim import Adam, RMSprop

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


def reattaching(opt: torch.optim.Optimizer, params: list[Tensor]) -> Callable[[], None]:
    """``opt.zero_grad()`` (``.grad = None``), the flat slots re-attached, ``opt.step()``."""
    slots = [p.grad for p in params]

    def step() -> None:
        opt.zero_grad()
        for p, slot in zip(params, slots, strict=True):
            p.grad = slot
        opt.step()

    return step


def contenders(optim: str) -> dict[str, Callable[[], None]]:
    kind = {"adam": (Adam, torch.optim.Adam), "rmsprop": (RMSprop, torch.optim.RMSprop)}[optim]
    ours, theirs = kind
    lr = 1e-3
    reattached = make_params(flat=True)
    per_param = make_params(flat=False)
    per_param_opt = ours(per_param, lr=lr)
    for p in per_param[-1:]:  # one parameter without a gradient: every step goes per parameter
        p.grad = None
    steps: dict[str, Callable[[], None]] = {
        "handgrad flat": ours(make_params(flat=True), lr=lr).step,
        "handgrad flat, zero_grad()": reattaching(ours(reattached, lr=lr), reattached),
        "handgrad flat, ops": ours(make_params(flat=True), lr=lr, fused=False).step,
        "handgrad per-parameter": per_param_opt.step,
        "torch for-loop": theirs(make_params(False), lr=lr, foreach=False).step,
        "torch foreach": theirs(make_params(False), lr=lr, foreach=True).step,
    }
    if optim == "adam":
        try:
            fused = torch.optim.Adam(make_params(False), lr=lr, fused=True)
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
    parser.add_argument("--optim", choices=("adam", "rmsprop"), default="adam")
    args = parser.parse_args()

    torch.set_num_threads(1)
    steps = contenders(args.optim)
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    order, rng = list(steps), random.Random(0)
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            step = steps[name]
            start = time.perf_counter_ns()
            step()
            times[name].append((time.perf_counter_ns() - start) / 1e3)

    n_params = sum(torch.Size(s).numel() for s in SHAPES)
    title = {"adam": "Adam", "rmsprop": "RMSprop"}[args.optim]
    print(f"{title} step over {n_params:,} float32 parameters, 1 thread, {args.rounds} rounds")
    print(f"{'contender':28s} {'median us':>10s} {'p10 us':>8s} {'p90 us':>8s}")
    figures = {}
    for name, ts in times.items():
        deciles = statistics.quantiles(ts, n=10)
        figures[name] = {
            "median_us": statistics.median(ts),
            "p10_us": deciles[0],
            "p90_us": deciles[-1],
        }
        row = figures[name]
        print(f"{name:28s} {row['median_us']:10.1f} {row['p10_us']:8.1f} {row['p90_us']:8.1f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "bench": "optim_step",
            "optimizer": args.optim,
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
