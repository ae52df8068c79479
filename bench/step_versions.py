"""The plain step of two versions of handgrad in one process, interleaved round by round.

Two runs of ``bench/step.py`` on two checkouts drift apart on a shared machine (a VM's
neighbours, the CPU clock): figures of one run vary by ±15%. Here both versions are imported
into the same process (each under its own ``sys.modules`` entries, loaded one after the
other) and their steps alternate in rounds with the torch step, so drift hits all three
alike; ``old/new`` is the median over rounds of the two times in the same round.

The step is the plain one, as a user writes it: ``opt.zero_grad(); loss(model(xb), yb);
model.backward(loss.backward()); opt.step()`` on ``nn.mlp("784-100-10", "relu")`` with
``optim.Adam(lr=1e-3)``, 1 thread, thread CPU time, random data of MNIST's shape. Both
versions start from the same weights and must agree after 20 steps (printed: the largest
parameter difference), so the two really run the same arithmetic.

Usage (the old version from a commit, e.g. the one before a round's changes):
    git archive 92d0ae2 | tar -x -C /tmp/old
    .venv/bin/python bench/step_versions.py --old /tmp/old/src --new src
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

Step = Callable[[], None]


def load(src: Path) -> tuple[ModuleType, ModuleType]:
    """``handgrad.nn`` and ``handgrad.optim`` imported from ``src``, apart from any other."""
    for name in [k for k in sys.modules if k == "handgrad" or k.startswith("handgrad.")]:
        del sys.modules[name]
    sys.path.insert(0, str(src))
    try:
        import handgrad.nn
        import handgrad.optim

        return handgrad.nn, handgrad.optim
    finally:
        sys.path.remove(str(src))


def plain_step(
    nn: Any, optim: Any, batches: list[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[Step, Any]:
    torch.manual_seed(0)
    model, loss = nn.mlp("784-100-10", "relu"), nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    data = itertools.cycle(batches)

    def step() -> None:
        xb, yb = next(data)
        opt.zero_grad()
        loss(model(xb), yb)
        model.backward(loss.backward())
        opt.step()

    return step, model


def torch_step(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> Step:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10)
    )
    loss, opt = torch.nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-3)
    data = itertools.cycle(batches)

    def step() -> None:
        xb, yb = next(data)
        opt.zero_grad()
        loss(model(xb), yb).backward()
        opt.step()

    return step


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """The median over rounds of ``a``'s time over ``b``'s in the same round."""
    return statistics.median(p / q for p, q in zip(times[a], times[b], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the old version's src folder")
    parser.add_argument("--new", type=Path, required=True, help="the new version's src folder")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--seconds", type=float, default=20.0, help="per batch size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    versions = {"old": load(args.old.resolve()), "new": load(args.new.resolve())}
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(8192, 784, generator=gen), torch.randint(0, 10, (8192,), generator=gen)
    print("| batch | old us | new us | torch us | old/new | torch/old | torch/new | rounds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for batch in args.batch:
        batches = list(zip(x.split(batch), y.split(batch), strict=True))[:-1]
        steps, models = {}, {}
        for name, (nn, optim) in versions.items():
            steps[name], models[name] = plain_step(nn, optim, batches)
        steps["torch"] = torch_step(batches)
        for _ in range(20):
            steps["old"]()
            steps["new"]()
        pairs = zip(models["old"].parameters(), models["new"].parameters(), strict=True)
        apart = max((a - b).abs().max().item() for a, b in pairs)
        assert apart == 0.0, f"the versions disagree after 20 steps by {apart:.2e}"
        per_round = max(1, 6400 // (batch + 31))  # about 2-5 ms of work per block
        times: dict[str, list[float]] = {name: [] for name in steps}
        deadline, rounds = time.monotonic() + args.seconds, 0
        while time.monotonic() < deadline:
            order = list(steps.items())
            if rounds % 2:
                order.reverse()
            for name, step in order:
                start = time.thread_time()
                for _ in range(per_round):
                    step()
                times[name].append((time.thread_time() - start) / per_round * 1e6)
            rounds += 1
        med = {name: statistics.median(ts) for name, ts in times.items()}

        print(
            f"| {batch} | {med['old']:.0f} | {med['new']:.0f} | {med['torch']:.0f} | "
            f"{ratio(times, 'old', 'new'):.3f} | {ratio(times, 'torch', 'old'):.2f}x | "
            f"{ratio(times, 'torch', 'new'):.2f}x | {rounds} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
