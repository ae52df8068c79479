"""What measuring a step's per-layer statistics costs, against the plain step, interleaved.

A plain step is the loop's: ``out = model(xb); loss(out, yb); model.backward(loss.backward());
opt.step(); opt.zero_grad()``. A measured step is the same through
``handgrad.train.layer_stats.probe_step`` (the probe's child-by-child forward and backward,
a copy of the parameters before the update, and every layer's figures). Both run on the same
model and random batches of MNIST's shape, one torch thread, in alternating blocks; the
figures are medians over the blocks.

Usage:
    .venv/bin/python bench/layer_stats.py                     # 784-128-10, batch 64, Adam
    .venv/bin/python bench/layer_stats.py --model 784-100-10 --batch 128 --blocks 9
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from handgrad import nn, optim
from handgrad.train import layer_stats as ls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="784-128-10")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200, help="plain steps per block")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.mlp(args.model, "relu").flatten_parameters()
    loss = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    d_in = int(args.model.split("-")[0])
    n_out = int(args.model.split("-")[-1])
    xs = [torch.rand(args.batch, d_in) for _ in range(8)]
    ys = [torch.randint(0, n_out, (args.batch,)) for _ in range(8)]
    probe = ls.SequentialProbe(model)

    def plain(i: int) -> None:
        out = model(xs[i % 8])
        loss(out, ys[i % 8])
        model.backward(loss.backward())
        opt.step()
        opt.zero_grad()

    def measured(i: int) -> None:
        ls.probe_step(probe, loss, opt, [(xs[i % 8], ys[i % 8])], step=i)

    measured_steps = max(1, args.steps // 10)
    with torch.no_grad():
        for i in range(20):  # warm-up (the compiled optimizer loop, caches)
            plain(i)
            measured(i)
        plain_t, measured_t = [], []
        for _ in range(args.blocks):
            t0 = time.perf_counter()
            for i in range(args.steps):
                plain(i)
            plain_t.append((time.perf_counter() - t0) / args.steps)
            t0 = time.perf_counter()
            for i in range(measured_steps):
                measured(i)
            measured_t.append((time.perf_counter() - t0) / measured_steps)
    p, m = statistics.median(plain_t), statistics.median(measured_t)
    print(f"model {args.model}, batch {args.batch}, Adam, 1 thread, {args.blocks} blocks")
    print(f"plain step     {p * 1e6:9.1f} us (median)")
    print(f"measured step  {m * 1e6:9.1f} us (median), {m / p:.2f}x a plain step")
    for every in (1, 10, 100, 938):
        extra = (m - p) / every / p
        print(f"measured every {every:4d} steps: +{100 * extra:.2f}% per step on average")
    # the loop's plan: every step of the first 10, powers of two, then every eval_every-th
    for label, total, every in (
        ("default run (1,000 subset: 300 steps, eval every 15)", 300, 15),
        ("full MNIST, batch 64, 20 epochs (eval every 938)", 18760, 938),
    ):
        n = len(list(ls.stats_steps(total, every)))
        extra = n * (m - p) / (total * p)
        print(f"{label}: {n} measured steps, +{100 * extra:.1f}% of the steps' time")


if __name__ == "__main__":
    main()
