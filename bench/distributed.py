"""Data-parallel step rate: steps/s for K = 1 and 2 ranks at global batches 128 and 1,024.

Model 784-100-10 (ReLU, float32, cross-entropy, SGD), random MNIST-shaped data. Each K=2 run
launches 2 ranks on 127.0.0.1 (gloo) with torchrun's environment; K=1 runs the same
``DataParallel`` code with no process group. "all-reduce" is the fraction of the step spent
after the backward pass waiting for the gradient buckets (the part not overlapped).

Usage: python bench/distributed.py [--steps 60] [--cli]
On a 2-core machine the point is the overhead, not a speed-up.

``--cli`` also times the command line's default run (784-128-10, batch 64, 20 epochs = 300
steps on the embedded subset, float32, one thread per rank): ``handgrad train`` in one process
against ``torchrun --nproc_per_node=2 -m handgrad train``, steps/s of the training loop (the
run's own clock, evaluations included; start-up excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

import torch


def run_rank(batch: int, steps: int) -> dict[str, float]:
    import handgrad.nn as hnn
    from handgrad.distributed import DataParallel, init_process_group
    from handgrad.optim import SGD

    if "RANK" in os.environ:
        init_process_group(timeout_s=60)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = hnn.mlp([784, 100, 10])
    model.flatten_parameters()
    dp = DataParallel(model, SGD(model.parameters(), lr=0.01), hnn.CrossEntropyLoss())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 784, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    for _ in range(5):
        dp.step(x, y)
    dp.allreduce_seconds = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        dp.step(x, y)
    total = time.perf_counter() - t0
    return {"steps_per_s": steps / total, "allreduce_fraction": dp.allreduce_seconds / total}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(k: int, batch: int, steps: int) -> dict[str, float]:
    if k == 1:
        return run_rank(batch, steps)
    port = free_port()
    procs = []
    try:
        for rank in range(k):
            env = dict(
                os.environ,
                RANK=str(rank),
                WORLD_SIZE=str(k),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
                OMP_NUM_THREADS="1",
            )
            cmd = [sys.executable, __file__, "--rank-run", str(batch), "--steps", str(steps)]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    rank0 = json.loads(outs[0].strip().splitlines()[-1])
    return dict(rank0)


def cli_rate(k: int, out: str) -> float:
    """Steps/s of the default ``handgrad train`` run on ``k`` processes (1: no torchrun)."""
    args = ["--epochs", "20", "--threads", "1", "--quiet", "--no-plots", "--no-report"]
    args += ["--out", out]
    if k == 1:
        cmd = [sys.executable, "-m", "handgrad", "train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={k}"]
        cmd += ["--master_addr=127.0.0.1", f"--master_port={free_port()}"]
        cmd += ["-m", "handgrad", "train", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    (run_dir,) = [p for p in os.scandir(out) if p.is_dir()]
    with open(os.path.join(run_dir.path, "metrics.jsonl")) as f:
        last = json.loads(f.read().strip().splitlines()[-1])
    return float(last["step"]) / float(last["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--cli", action="store_true", help="also time handgrad train, K = 1 and 2")
    ap.add_argument("--rank-run", type=int, default=None)
    args = ap.parse_args()
    if args.rank_run is not None:
        print(json.dumps(run_rank(args.rank_run, args.steps)))
        return
    print(f"{'K':>2} {'batch':>6} {'steps/s':>9} {'all-reduce':>11}")
    for batch in (128, 1024):
        for k in (1, 2):
            r = launch(k, batch, args.steps)
            print(f"{k:>2} {batch:>6} {r['steps_per_s']:>9.1f} {r['allreduce_fraction']:>10.1%}")
    if args.cli:
        import tempfile

        for k in (1, 2):
            with tempfile.TemporaryDirectory() as out:
                rate = cli_rate(k, out)
            print(f"handgrad train, default run, K={k}: {rate:.1f} steps/s")


if __name__ == "__main__":
    main()
