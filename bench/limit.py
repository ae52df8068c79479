"""The machine's own matmul peak, and full-batch forward+backward throughput as a share of it.

- **Peak**: the median GFLOPS of large float32 ``torch.mm`` (square 1024, 2048, 4096), the best
  size taken, at each thread count. This is what this CPU and torch's BLAS reach on the
  friendliest matmul, so it bounds what any MLP step can do here.
- **Shapes**: the GFLOPS of each matmul of a full-batch 784-H-10 step on its own, at its own
  shape (tall and thin shapes reach less than the square peak).
- **Step**: the useful FLOPs of one full-batch (60,000 records) forward+backward divided by
  its median time, for handgrad and (for comparison) torch autograd; and the *matmul floor*:
  the same FLOPs over the time of the step's five matmuls alone (at the step's shapes, on
  random data), which is the most a step built on these ``torch.mm`` calls can reach. The
  three are timed interleaved, one step per block.

Useful FLOPs of 784-H-10 forward+backward at batch N (multiply-add = 2 FLOPs):

    forward            2·N·(784·H + H·10)
    weight gradients   2·N·(784·H + H·10)
    input gradient     2·N·H·10             (layer 2 only: the first layer's input gradient is
                                             not needed, and handgrad skips it)

Bias additions, ReLU, softmax and reductions are O(N·H) and are not counted.

Usage:
    .venv/bin/python bench/limit.py --data /path/to/mnist        # ~3 minutes
    .venv/bin/python bench/limit.py --quick                      # 784-100-10, 1 thread
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch
from common import data_dir, finish, format_table, interleaved, machine_info, write_json
from step import FULL, batches_of, get_data, handgrad_step, torch_step

SQUARE_SIZES = (1024, 2048, 4096)
TARGET_SHARE = 0.75  # issue 8: full-batch forward+backward at >= 75% of the matmul peak


def useful_flops(hidden: int, n: int, d_in: int = 784, d_out: int = 10) -> float:
    """Forward, weight gradients and layer 2's input gradient of d_in-H-d_out at batch n."""
    forward = 2 * n * (d_in * hidden + hidden * d_out)
    weight_grads = 2 * n * (d_in * hidden + hidden * d_out)
    input_grad = 2 * n * hidden * d_out
    return float(forward + weight_grads + input_grad)


def median_seconds(fn: Any, reps: int) -> float:
    """Median wall time of ``fn()`` over ``reps`` calls, after one untimed call."""
    import time

    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def square_peak(sizes: tuple[int, ...], reps: int) -> dict[str, float]:
    """GFLOPS of ``torch.mm`` of two n-by-n float32 matrices, by n."""
    found = {}
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        a = torch.rand(n, n, generator=gen)
        b = torch.rand(n, n, generator=gen)
        out = torch.empty(n, n)
        seconds = median_seconds(lambda a=a, b=b, out=out: torch.mm(a, b, out=out), reps)
        found[str(n)] = 2 * n**3 / seconds / 1e9
    return found


def step_matmuls(hidden: int, n: int) -> dict[str, tuple[Any, int]]:
    """Each matmul of a full-batch 784-H-10 forward+backward: name -> (call, MACs per row)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 784, generator=gen)  # (N, 784)
    w1 = torch.randn(hidden, 784, generator=gen)  # (H, 784)
    w2 = torch.randn(10, hidden, generator=gen)  # (10, H)
    h = torch.rand(n, hidden, generator=gen)  # (N, H)
    g = torch.randn(n, 10, generator=gen)  # (N, 10)
    out1, out2, dx2 = torch.empty(n, hidden), torch.empty(n, 10), torch.empty(n, hidden)
    gw1, gw2 = torch.zeros(hidden, 784), torch.zeros(10, hidden)
    return {
        f"forward 1: ({n},784)@(784,{hidden})": (
            lambda: torch.mm(x, w1.t(), out=out1),
            784 * hidden,
        ),
        f"forward 2: ({n},{hidden})@({hidden},10)": (
            lambda: torch.mm(h, w2.t(), out=out2),
            hidden * 10,
        ),
        f"dW1 += ({hidden},{n})@({n},784)": (lambda: gw1.addmm_(h.t(), x), 784 * hidden),
        f"dW2 += (10,{n})@({n},{hidden})": (lambda: gw2.addmm_(g.t(), h), hidden * 10),
        f"dx2: ({n},10)@(10,{hidden})": (lambda: torch.mm(g, w2, out=dx2), hidden * 10),
    }


def blocked_forward(hidden: int, n: int, rows: int = 512) -> Any:
    """Forward 1 computed in blocks of ``rows`` rows (the same values, a cache-sized output)."""
    x = torch.rand(n, 784)  # (N, 784)
    w1 = torch.randn(hidden, 784)  # (H, 784)
    out = torch.empty(n, hidden)  # (N, H)

    def forward() -> None:
        for start in range(0, n, rows):
            torch.mm(x[start : start + rows], w1.t(), out=out[start : start + rows])

    return forward


def shape_figures(hidden: int, n: int, reps: int) -> dict[str, dict[str, float]]:
    """Milliseconds and GFLOPS of each matmul of the step alone, and of a blocked forward 1.

    The calls are timed interleaved, one call per block, ``reps`` rounds.
    """
    found = {}
    calls = step_matmuls(hidden, n)
    calls["forward 1 in 512-row blocks (not in the floor)"] = (
        blocked_forward(hidden, n),
        784 * hidden,
    )
    times = interleaved({name: fn for name, (fn, _) in calls.items()}, rounds=reps, steps=1)
    for name, (_, macs_per_row) in calls.items():
        seconds = statistics.median(times[name])
        found[name] = {"ms": seconds * 1e3, "gflops": 2 * n * macs_per_row / seconds / 1e9}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="MNIST folder (default: $HANDGRAD_DATA)")
    parser.add_argument("--random", action="store_true", help="use random data, not MNIST")
    parser.add_argument("--model", nargs="+", default=["784-100-10", "784-800-10"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved full-batch rounds")
    parser.add_argument("--quick", action="store_true", help="784-100-10, 1 thread, 3 rounds")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/limit.json)")
    args = parser.parse_args()
    if args.quick:
        args.model, args.threads, args.rounds = ["784-100-10"], [1], 3

    machine = machine_info(args.threads)
    x, y, source = get_data(data_dir(args.data), args.random)
    full = batches_of(x, y, FULL)
    print(f"data: {source}")
    results: list[dict[str, Any]] = []
    rows: list[list[object]] = []
    peaks: dict[str, Any] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        squares = square_peak(SQUARE_SIZES, reps=5 if threads > 1 else 3)
        peak = max(squares.values())
        peaks[str(threads)] = {"gflops": peak, "by_size": squares}
        print(
            f"\n{threads} thread(s): sgemm peak {peak:.1f} GFLOPS  ("
            + ", ".join(f"{n}: {g:.1f}" for n, g in squares.items())
            + ")"
        )
        for spec in args.model:
            hidden = int(spec.split("-")[1])
            flops = useful_flops(hidden, FULL)
            shapes = shape_figures(hidden, FULL, reps=args.rounds)
            for name, s in shapes.items():
                print(f"  {name:48s} {s['ms']:8.1f} ms {s['gflops']:6.1f} GFLOPS")
            matmuls = [fn for fn, _ in step_matmuls(hidden, FULL).values()]

            def matmul_floor(matmuls: list[Any] = matmuls) -> None:
                for fn in matmuls:
                    fn()

            steps = {
                "handgrad": handgrad_step(spec, None, full),
                "torch": torch_step(spec, None, full),
                "matmul_floor": matmul_floor,
            }
            times = interleaved(steps, rounds=args.rounds, steps=1, warmup_s=0.0)
            entry: dict[str, Any] = {
                "threads": threads,
                "model": spec,
                "batch": FULL,
                "useful_gflop": flops / 1e9,
                "peak_gflops": peak,
                "matmul_shapes": shapes,
            }
            for name, ts in times.items():
                seconds = statistics.median(ts)
                gflops = flops / seconds / 1e9
                entry[name] = {
                    "ms": seconds * 1e3,
                    "gflops": gflops,
                    "share_of_peak": gflops / peak,
                    "rounds": len(ts),
                }
            share = entry["handgrad"]["share_of_peak"]
            met = share >= TARGET_SHARE if (spec, threads) == ("784-100-10", 1) else None
            entry["target_share"] = TARGET_SHARE if met is not None else None
            entry["target_met"] = met
            results.append(entry)
            rows.append(
                [
                    threads,
                    spec,
                    f"{peak:.1f}",
                    f"{entry['handgrad']['ms']:,.0f}",
                    f"{entry['handgrad']['gflops']:.1f}",
                    f"{share:.0%}",
                    f"{entry['torch']['ms']:,.0f}",
                    f"{entry['torch']['share_of_peak']:.0%}",
                    f"{entry['matmul_floor']['ms']:,.0f}",
                    f"{entry['matmul_floor']['share_of_peak']:.0%}",
                    "" if met is None else f"75% {'met' if met else 'MISSED'}",
                ]
            )

    headers = [
        "threads",
        "model",
        "peak GFLOPS",
        "handgrad ms",
        "handgrad GFLOPS",
        "share",
        "torch ms",
        "torch share",
        "matmuls alone ms",
        "their share",
        "target",
    ]
    print(f"\nFull batch ({FULL:,}) forward+backward, useful FLOPs / median time ({source})")
    print(format_table(headers, rows))
    if "1" in peaks and "2" in peaks and peaks["2"]["gflops"] < 1.3 * peaks["1"]["gflops"]:
        note = (
            f"2 threads reached {peaks['2']['gflops']:.0f} GFLOPS against "
            f"{peaks['1']['gflops']:.0f} on 1: other jobs hold the second core, so the "
            "2-thread figures of this run say little"
        )
        peaks["note"] = note
        print(f"\nNote: {note}.")
    record = {
        "bench": "limit",
        "machine": finish(machine),
        "data": source,
        "flops": (
            "forward 2N(784H+10H) + weight grads 2N(784H+10H) + layer-2 input grad 2N·10H; "
            "the first layer's input gradient is not needed and not counted"
        ),
        "peak": peaks,
        "results": results,
    }
    path = write_json("limit", record, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
