"""One rank of the data-parallel tests (tests/test_distributed.py launches it, or imports it
for the single-process reference). Not a test module itself.

Usage: python dist_worker.py CASE OUT_DIR  (with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set)
"""

from __future__ import annotations

import os
import sys
import time

import torch

import handgrad.nn as hnn
from handgrad.optim import SGD, Adam

N_GLOBAL = 13  # unequal shards over 2 ranks: 7 and 6 rows
STEPS = 6


def build(
    case: str,
) -> tuple[hnn.Module, object, hnn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The model, optimizer, loss and global batches of ``case`` (the same on every rank)."""
    torch.manual_seed(0)
    if case == "mismatch":
        case = "mlp_mean"
    if case in ("die", "hang"):
        case = "mlp_sum"
    if case.startswith("bn"):
        model = hnn.Sequential(  # no bias before BN: its gradient is 0 up to rounding, which Adam
            # would blow up to ±lr and so compare rounding noise
            hnn.Linear(5, 8, bias=False),
            hnn.BatchNorm1d(8),
            hnn.ReLU(),
            hnn.Dropout(0.3),
            hnn.Linear(8, 3),
        )
    else:
        model = hnn.Sequential(hnn.Linear(5, 8), hnn.Tanh(), hnn.Linear(8, 3))
    model = model.double()
    model.flatten_parameters()
    if case.endswith("sum"):
        loss_fn: hnn.Module = hnn.SumSquaredLoss()
        opt: object = SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        loss_fn = hnn.CrossEntropyLoss()
        opt = Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(STEPS):
        x = torch.randn(N_GLOBAL, 5, generator=g, dtype=torch.float64)
        if case.endswith("sum"):
            y = torch.randn(N_GLOBAL, 3, generator=g, dtype=torch.float64)
        else:
            y = torch.randint(0, 3, (N_GLOBAL,), generator=g)
        batches.append((x, y))
    torch.manual_seed(2)  # the dropout masks
    return model, opt, loss_fn, batches


def single_process(case: str) -> tuple[list[float], dict[str, torch.Tensor]]:
    """The plain one-process loop on the global batches: losses and final state."""
    model, opt, loss_fn, batches = build(case)
    losses = []
    for x, y in batches:
        opt.zero_grad()  # type: ignore[attr-defined]
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()  # type: ignore[attr-defined]
        losses.append(float(loss))
    return losses, {k: v.clone() for k, v in model.state_dict().items()}


def main() -> int:
    from handgrad.distributed import DataParallel, DistributedError, init_process_group

    case, out = sys.argv[1], sys.argv[2]
    timeout = float(os.environ.get("HG_TEST_TIMEOUT", "20"))
    try:
        rank, world, backend = init_process_group(timeout_s=timeout)
        model, opt, loss_fn, batches = build(case)
        config = {"lr": 0.01 if not (case == "mismatch" and rank == 1) else 0.02}
        dp = DataParallel(model, opt, loss_fn, bucket_numel=20, config=config, timeout_s=timeout)
        losses = []
        for step, (x, y) in enumerate(batches):
            if case in ("die", "hang") and rank == 1 and step == 3:
                if case == "die":
                    os._exit(3)
                time.sleep(600)
            losses.append(float(dp.step(x, y)))
        torch.save(
            {
                "losses": losses,
                "state": model.state_dict(),
                "backend": backend,
                "world": world,
                "buckets": len(dp.buckets),
            },
            os.path.join(out, f"rank{rank}.pt"),
        )
    except DistributedError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        # A process group whose peer is gone can abort in gloo's destructors at interpreter
        # exit ("terminate called without an active exception"): leave without running them.
        sys.stdout.flush()
        os._exit(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
