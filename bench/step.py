"""Median time per training step: handgrad against torch autograd, interleaved in one process.

The headline is the plain step, as a user writes it (same data, same batches, same initial
weights, 784-100-10 ReLU, cross-entropy, Adam, 1 thread, batches 1, 32 and 128):

- handgrad plain: ``opt.zero_grad(); loss(model(xb), yb); model.backward(loss.backward());
  opt.step()`` on ``nn.mlp(spec, "relu")`` and ``handgrad.optim.Adam(model.parameters())``,
  nothing tuned (no ``flatten_parameters``, no ``input_grad`` switch);
- torch: ``opt.zero_grad(); loss(model(xb), yb).backward(); opt.step()`` (below).

Beside it, the tuned figures (``--headline`` runs only the headline rows):

- handgrad: ``out = model(xb); loss(out, yb); model.backward(loss.backward()); opt.step();
  opt.zero_grad()`` on ``nn.mlp(spec, "relu").flatten_parameters()`` with
  ``model.input_grad = False`` and ``handgrad.optim.Adam`` / ``SGD``;
- torch: ``opt.zero_grad(); loss(model(xb), yb).backward(); opt.step()`` on
  ``torch.nn.Sequential(Linear, ReLU, Linear)``, ``torch.nn.CrossEntropyLoss()`` and
  ``torch.optim.Adam`` / ``SGD`` with torch's defaults (on the CPU: the for-loop
  implementation);
- torch fused: the same with ``fused=True``, the strongest ``torch.optim`` on the CPU.

At the full batch (all 60,000 training records) a step is forward + backward only, with no
optimizer: ``zero_grad``, forward, loss, backward. Adam runs at lr 1e-3, SGD at lr 0.01
(no momentum). Batches are consecutive slices of the MNIST training set (or of random data of
the same shape when MNIST is not found, which the output says), cycled.

Usage:
    .venv/bin/python bench/step.py --data /path/to/mnist            # the full run, ~5 min
    .venv/bin/python bench/step.py --quick                          # 784-100-10, Adam, 1 thread
    .venv/bin/python bench/step.py --headline                       # the plain step, b 1/32/128
    .venv/bin/python bench/step.py --batch 1 32 --threads 1 --model 784-100-10 --optim adam
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from common import (
    Step,
    data_dir,
    finish,
    format_table,
    interleaved,
    load_mnist,
    machine_info,
    paired_ratio,
    summary,
    write_json,
)
from torch import Tensor

import handgrad.optim
from handgrad import nn

FULL = 60_000
MODELS = ("784-100-10", "784-800-10")
OPTIMIZERS = ("adam", "sgd")
BATCHES = (1, 32, 128, 1000, FULL)
THREADS = (1, 2)
LR = {"adam": 1e-3, "sgd": 0.01}
# Issue 8: torch (default) time / handgrad time, 784-100-10, Adam, 1 thread.
TARGETS = {1: 3.5, 32: 3.0, 128: 1.8, FULL: 1.1}
TARGET_MODEL, TARGET_OPTIM, TARGET_THREADS = "784-100-10", "adam", 1

Batch = tuple[Tensor, Tensor]


def get_data(directory: str | None, random_data: bool) -> tuple[Tensor, Tensor, str]:
    """The 60,000 training inputs (float32, (N, 784)) and labels, and where they came from."""
    if not random_data:
        ds, note = load_mnist(directory)
        if ds is not None:
            return ds.x_train.contiguous(), ds.labels_train, note
    else:
        note = "--random"
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(FULL, 784, generator=gen)  # (N, 784)
    y = torch.randint(0, 10, (FULL,), generator=gen)  # (N,)
    return x, y, f"random data of MNIST's shape ({note})"


def batches_of(x: Tensor, y: Tensor, size: int) -> list[Batch]:
    """Consecutive slices (views, no copies) of ``size`` records; a last partial one dropped."""
    n = len(x) // size * size
    return list(zip(x[:n].split(size), y[:n].split(size), strict=True))


def handgrad_model(spec: str, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.mlp(spec, "relu")
    model.flatten_parameters()
    model.input_grad = False
    return model


def torch_model(spec: str, like: nn.Module) -> torch.nn.Sequential:
    """``Sequential(Linear, ReLU, Linear)`` holding the same initial weights as ``like``."""
    d_in, hidden, d_out = (int(s) for s in spec.split("-"))
    model = torch.nn.Sequential(
        torch.nn.Linear(d_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, d_out)
    )
    model.load_state_dict({k: v.clone() for k, v in like.state_dict().items()})
    return model


def handgrad_step(spec: str, optim: str | None, batches: list[Batch], seed: int = 0) -> Step:
    model = handgrad_model(spec, seed)
    loss = nn.CrossEntropyLoss()
    data = itertools.cycle(batches)
    if optim is None:

        def forward_backward() -> None:
            xb, yb = next(data)
            model.zero_grad()
            out = model(xb)
            loss(out, yb)
            model.backward(loss.backward())

        return forward_backward

    opt = handgrad.optim.make_optimizer(optim, model.parameters(), lr=LR[optim])

    def step() -> None:
        xb, yb = next(data)
        out = model(xb)
        loss(out, yb)
        model.backward(loss.backward())
        opt.step()
        opt.zero_grad()

    return step


def plain_step(spec: str, optim: str, batches: list[Batch], seed: int = 0) -> Step:
    """The step as a user writes it: an untuned ``nn.mlp`` and the optimizer's defaults."""
    torch.manual_seed(seed)
    model = nn.mlp(spec, "relu")
    loss = nn.CrossEntropyLoss()
    opt = handgrad.optim.make_optimizer(optim, model.parameters(), lr=LR[optim])
    data = itertools.cycle(batches)

    def step() -> None:
        xb, yb = next(data)
        opt.zero_grad()
        loss(model(xb), yb)
        model.backward(loss.backward())
        opt.step()

    return step


def torch_optimizer(optim: str, params: Any, fused: bool) -> torch.optim.Optimizer:
    kind = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optim]
    if fused:
        return kind(params, lr=LR[optim], fused=True)
    return kind(params, lr=LR[optim])


def torch_step(
    spec: str, optim: str | None, batches: list[Batch], seed: int = 0, fused: bool = False
) -> Step:
    model = torch_model(spec, handgrad_model(spec, seed))
    loss = torch.nn.CrossEntropyLoss()
    data = itertools.cycle(batches)
    if optim is None:

        def forward_backward() -> None:
            xb, yb = next(data)
            model.zero_grad()
            loss(model(xb), yb).backward()

        return forward_backward

    opt = torch_optimizer(optim, model.parameters(), fused)

    def step() -> None:
        xb, yb = next(data)
        opt.zero_grad()
        loss(model(xb), yb).backward()
        opt.step()

    return step


def fused_available(optim: str) -> bool:
    """Whether this torch has a CPU ``fused=True`` implementation of ``optim``."""
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.ones(3)
    try:
        torch_optimizer(optim, [p], fused=True).step()
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def contenders(spec: str, optim: str | None, batches: list[Batch]) -> dict[str, Step]:
    steps: dict[str, Step] = {
        "handgrad": handgrad_step(spec, optim, batches),
        "torch": torch_step(spec, optim, batches),
    }
    if optim is not None:
        steps["handgrad plain"] = plain_step(spec, optim, batches)
    if optim is not None and fused_available(optim):
        steps["torch fused"] = torch_step(spec, optim, batches, fused=True)
    return steps


# -- where the time goes ------------------------------------------------------------------
def phase_times(
    phases: Sequence[tuple[str, Callable[[], object]]], steps: int, warmup: int
) -> dict[str, float]:
    """Median microseconds of each phase of a step, timed phase by phase over ``steps`` steps."""
    clock = time.perf_counter
    times: dict[str, list[float]] = {name: [] for name, _ in phases}
    for i in range(warmup + steps):
        for name, phase in phases:
            start = clock()
            phase()
            if i >= warmup:
                times[name].append((clock() - start) * 1e6)
    result = {name: statistics.median(ts) for name, ts in times.items()}
    result["sum of phases"] = sum(result.values())
    return result


def breakdown(spec: str, optim: str, batches: list[Batch], steps: int) -> dict[str, Any]:
    """Phase-by-phase medians of the handgrad and torch steps, and the top handgrad ops."""
    model = handgrad_model(spec, 0)
    loss = nn.CrossEntropyLoss()
    opt = handgrad.optim.make_optimizer(optim, model.parameters(), lr=LR[optim])
    data = itertools.cycle(batches)
    box: dict[str, Any] = {}

    def fetch() -> None:
        box["xb"], box["yb"] = next(data)

    hg_phases: list[tuple[str, Callable[[], object]]] = [
        ("batch", fetch),
        ("forward", lambda: box.__setitem__("out", model(box["xb"]))),
        ("loss forward", lambda: loss(box["out"], box["yb"])),
        ("loss backward", lambda: box.__setitem__("g", loss.backward())),
        ("model backward", lambda: model.backward(box["g"])),
        ("optimizer step", opt.step),
        ("zero_grad", opt.zero_grad),
    ]
    tmodel = torch_model(spec, handgrad_model(spec, 0))
    tloss = torch.nn.CrossEntropyLoss()
    topt = torch_optimizer(optim, tmodel.parameters(), fused=False)
    tdata = itertools.cycle(batches)
    tbox: dict[str, Any] = {}

    def tfetch() -> None:
        tbox["xb"], tbox["yb"] = next(tdata)

    torch_phases: list[tuple[str, Callable[[], object]]] = [
        ("batch", tfetch),
        ("zero_grad", topt.zero_grad),
        ("forward", lambda: tbox.__setitem__("out", tmodel(tbox["xb"]))),
        ("loss forward", lambda: tbox.__setitem__("loss", tloss(tbox["out"], tbox["yb"]))),
        ("backward", lambda: tbox["loss"].backward()),
        ("optimizer step", topt.step),
    ]
    warmup = max(50, steps // 10)
    result = {
        "handgrad_us": phase_times(hg_phases, steps, warmup),
        "torch_us": phase_times(torch_phases, steps, warmup),
    }

    def hg_step() -> None:
        for _, phase in hg_phases:
            phase()

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(min(steps, 200)):
            hg_step()
    n = min(steps, 200)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    result["handgrad_top_ops_us_per_step"] = {
        e.key: round(e.self_cpu_time_total / n, 2) for e in ops[:10]
    }
    return result


def print_breakdown(batch: int, found: dict[str, Any]) -> None:
    print(f"\nWhere the time goes, {TARGET_MODEL}, Adam, batch {batch}, 1 thread (us, median):")
    for engine in ("handgrad_us", "torch_us"):
        parts = ", ".join(f"{k} {v:.1f}" for k, v in found[engine].items())
        print(f"  {engine[:-3]:8s} {parts}")
    ops = ", ".join(f"{k} {v:.1f}" for k, v in found["handgrad_top_ops_us_per_step"].items())
    print(f"  handgrad ops (torch.profiler, self time per step, with profiler overhead): {ops}")


# -- the run ------------------------------------------------------------------------------
def fmt_us(us: float) -> str:
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="MNIST folder (default: $HANDGRAD_DATA)")
    parser.add_argument("--random", action="store_true", help="use random data, not MNIST")
    parser.add_argument("--batch", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--model", nargs="+", default=list(MODELS), help="e.g. 784-100-10")
    parser.add_argument("--optim", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    parser.add_argument("--threads", type=int, nargs="+", default=list(THREADS))
    parser.add_argument("--budget", type=float, default=6.0, help="seconds per configuration")
    parser.add_argument(
        "--block",
        type=float,
        default=0.02,
        help="seconds per timed block (long against the scheduler's time slice, so that "
        "sharing the CPU with other jobs stretches every contender's blocks alike)",
    )
    parser.add_argument("--rounds", type=int, default=2000, help="most rounds per configuration")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only the targets' row: 784-100-10, Adam, 1 thread, 2 s per configuration",
    )
    parser.add_argument(
        "--headline",
        action="store_true",
        help="only the plain step's rows: 784-100-10, Adam, 1 thread, batches 1, 32, 128",
    )
    parser.add_argument("--no-breakdown", action="store_true", help="skip the phase breakdown")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/step.json)")
    args = parser.parse_args()
    if args.quick:
        args.model, args.optim, args.threads, args.budget = [TARGET_MODEL], ["adam"], [1], 2.0
    if args.headline:
        args.model, args.optim, args.threads = [TARGET_MODEL], ["adam"], [1]
        args.batch, args.no_breakdown = [1, 32, 128], True

    machine = machine_info(args.threads)
    x, y, source = get_data(data_dir(args.data), args.random)
    print(f"data: {source}")
    rows: list[list[object]] = []
    results: list[dict[str, Any]] = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for spec in args.model:
            for batch in args.batch:
                data = batches_of(x, y, batch)
                for optim in [None] if batch >= FULL else args.optim:
                    steps = contenders(spec, optim, data)
                    # Full-batch steps take 0.1-2 s: a few rounds, whole steps as blocks.
                    rounds = 7 if batch >= FULL else args.rounds
                    cpu: dict[str, list[float]] = {}
                    times = interleaved(
                        steps,
                        cpu=cpu,
                        rounds=rounds,
                        block_s=args.block,
                        steps=1 if batch >= FULL else None,
                        warmup_s=0.3 if batch < FULL else 0.0,
                        budget_s=args.budget if batch < FULL else args.budget * 4,
                        min_rounds=5 if batch < FULL else 3,
                    )
                    stats = {name: summary(ts) for name, ts in times.items()}
                    hg = stats["handgrad"]["median_us"]
                    ratios = {
                        name: paired_ratio(ts, times["handgrad"]) for name, ts in times.items()
                    }
                    of_medians = {name: s["median_us"] / hg for name, s in stats.items()}
                    target = None
                    if (spec, optim or TARGET_OPTIM, threads) == (
                        TARGET_MODEL,
                        TARGET_OPTIM,
                        TARGET_THREADS,
                    ):
                        target = TARGETS.get(batch)
                    plain = ratios.get("handgrad plain")
                    plain_vs_torch = (
                        None
                        if plain is None
                        else paired_ratio(times["torch"], times["handgrad plain"])
                    )
                    met = None if target is None else ratios["torch"] >= target
                    results.append(
                        {
                            "threads": threads,
                            "model": spec,
                            "optimizer": optim or "none (forward+backward)",
                            "batch": batch,
                            "us_per_step": stats,
                            "torch_over_handgrad": ratios["torch"],
                            "torch_over_handgrad_plain": plain_vs_torch,
                            "fused_over_handgrad": ratios.get("torch fused"),
                            "ratio_of_medians": of_medians,
                            "cpu_us_per_step": {n: summary(ts) for n, ts in cpu.items()},
                            "cpu_torch_over_handgrad": paired_ratio(cpu["torch"], cpu["handgrad"]),
                            "target": target,
                            "target_met": met,
                        }
                    )
                    fused = stats.get("torch fused")
                    row = [
                        threads,
                        spec,
                        optim or "fwd+bwd",
                        f"{batch:,}",
                        fmt_us(stats["handgrad plain"]["median_us"]) if plain else "-",
                        f"{plain_vs_torch:.2f}x" if plain_vs_torch else "-",
                        fmt_us(hg),
                        fmt_us(stats["torch"]["median_us"]),
                        fmt_us(fused["median_us"]) if fused else "-",
                        f"{ratios['torch']:.2f}x",
                        f"{ratios['torch fused']:.2f}x" if fused else "-",
                        f"{paired_ratio(cpu['torch'], cpu['handgrad']):.2f}x"
                        if threads == 1
                        else "-",
                        "" if target is None else f"{target}x {'met' if met else 'MISSED'}",
                    ]
                    rows.append(row)
                    print(format_table(HEADERS, [row]).splitlines()[-1], flush=True)

    print(
        "\nplain: the step as a user writes it (no tuning); torch/plain: the headline ratio. "
        "us per step: median of interleaved rounds (wall clock); vs: median over rounds of "
        "torch / handgrad in the same round; vs torch, cpu: the same from the thread's CPU "
        f"time (1 thread), blind to time spent descheduled by other jobs ({source})"
    )
    print(format_table(HEADERS, rows))

    found_breakdown: dict[str, Any] = {}
    if not args.no_breakdown and TARGET_MODEL in args.model and "adam" in args.optim:
        torch.set_num_threads(1)
        for batch in [b for b in args.batch if b in (1, 32, 128)]:
            found = breakdown(TARGET_MODEL, "adam", batches_of(x, y, batch), steps=2000)
            found_breakdown[str(batch)] = found
            print_breakdown(batch, found)

    record = {
        "bench": "step",
        "machine": finish(machine),
        "data": source,
        "method": (
            "median over interleaved rounds (order flipped each round) of seconds per step in "
            "a block of steps; ratio = median over rounds of torch time / handgrad time in the "
            "same round (ratio_of_medians: the same from the medians)"
        ),
        "learning_rates": LR,
        "results": results,
        "breakdown_1_thread": found_breakdown,
    }
    path = write_json("step", record, args.out)
    print(f"\nwrote {path}")


HEADERS = [
    "threads",
    "model",
    "optim",
    "batch",
    "plain us",
    "torch/plain",
    "handgrad us",
    "torch us",
    "torch fused us",
    "vs torch",
    "vs fused",
    "vs torch, cpu",
    "target (vs torch)",
]

if __name__ == "__main__":
    main()
