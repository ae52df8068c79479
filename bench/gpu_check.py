"""CUDA checks for bench/gpu_check.sh: float64 agreement with autograd per layer,
``handgrad compare --device cuda`` for two recipes (float64, the engines step by step), and the
step time of handgrad against autograd at batches 128 and 4,096, as one table.

Usage: python bench/gpu_check.py   (exits 0 with a note when there is no CUDA device)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time

import torch

import handgrad.nn as hnn
from handgrad.optim import SGD
from handgrad.reference import loss_to_torch, to_torch


def agreement(dev: str) -> list[tuple[str, float]]:
    """max |handgrad grad − autograd grad| per layer kind, float64 on ``dev``."""
    rows = []
    layers = {
        "Linear": hnn.Sequential(hnn.Linear(6, 4)),
        "ReLU": hnn.Sequential(hnn.Linear(6, 4), hnn.ReLU()),
        "Tanh": hnn.Sequential(hnn.Linear(6, 4), hnn.Tanh()),
        "Sigmoid": hnn.Sequential(hnn.Linear(6, 4), hnn.Sigmoid()),
        "GELU": hnn.Sequential(hnn.Linear(6, 4), hnn.GELU()),
        "BatchNorm1d": hnn.Sequential(hnn.Linear(6, 4), hnn.BatchNorm1d(4)),
        "LayerNorm": hnn.Sequential(hnn.Linear(6, 4), hnn.LayerNorm(4)),
    }
    for name, model in layers.items():
        torch.manual_seed(0)
        model = model.double().to(device=dev)
        twin = to_torch(model)
        x = torch.randn(9, 6, dtype=torch.float64, device=dev)
        y = torch.randint(0, 4, (9,), device=dev)
        loss_fn = hnn.CrossEntropyLoss()
        model.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        ref = loss_to_torch(loss_fn)(twin(x), y)
        ref.backward()  # autograd: the reference
        worst = 0.0
        for (_, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
            assert p.grad is not None and q.grad is not None
            worst = max(worst, (p.grad - q.grad).abs().max().item())
        rows.append((name, worst))
    return rows


def step_time(dev: str, batch: int, autograd: bool, steps: int = 50) -> float:
    torch.manual_seed(0)
    model = hnn.mlp([784, 100, 10]).to(device=dev)
    model.flatten_parameters()
    x = torch.randn(batch, 784, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    loss_fn = hnn.CrossEntropyLoss()
    if autograd:
        twin = to_torch(model)
        opt_t = torch.optim.SGD(twin.parameters(), lr=0.01)
        ref_loss = loss_to_torch(loss_fn)

        def one() -> None:
            opt_t.zero_grad()
            ref_loss(twin(x), y).backward()
            opt_t.step()
    else:
        opt = SGD(model.parameters(), lr=0.01)

        def one() -> None:
            opt.zero_grad()
            loss_fn(model(x), y)
            model.backward(loss_fn.backward())
            opt.step()

    for _ in range(5):
        one()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps * 1e3


COMPARE_RECIPES = ("ninja-gd", "fleuret-practical3")
COMPARE_STEPS = 20


def compare_on_cuda(recipe: str, out: str) -> dict[str, object]:
    """``handgrad compare --recipe RECIPE --device cuda`` (float64): its JSON summary."""
    cmd = [sys.executable, "-m", "handgrad", "compare", "--recipe", recipe, "--device", "cuda"]
    cmd += ["--dtype", "float64", "--steps", str(COMPARE_STEPS), "--out", out]
    done = subprocess.run([*cmd, "--no-plot", "--json"], capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: the engines differ (reported in the table)
        raise SystemExit(f"gpu_check: {' '.join(cmd)} failed: {done.stderr.strip()}")
    summary: dict[str, object] = json.loads(done.stdout)
    return summary


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine; nothing to check (skipped)")
        return 0
    print(f"{'check':<28} {'value':>14}")
    for name, worst in agreement("cuda"):
        print(f"{'grad vs autograd ' + name:<28} {worst:>14.2e}")
    with tempfile.TemporaryDirectory() as out:
        for recipe in COMPARE_RECIPES:
            summary = compare_on_cuda(recipe, out)
            result = summary["results"][0]  # type: ignore[index]
            worst = max(result["max_loss_diff"], result["max_param_diff"])
            verdict = "ok" if summary["ok"] else "DIFFER"
            label = f"compare {recipe} {COMPARE_STEPS} st"
            print(f"{label:<28} {worst:>14.2e}  {verdict}")
    for batch in (128, 4096):
        hg = step_time("cuda", batch, autograd=False)
        ag = step_time("cuda", batch, autograd=True)
        print(f"{f'step ms handgrad b={batch}':<28} {hg:>14.3f}")
        print(f"{f'step ms autograd b={batch}':<28} {ag:>14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
