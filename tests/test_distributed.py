"""Data-parallel training over 2 real processes (gloo, 127.0.0.1) against the single process.

Each test launches the ranks of tests/dist_worker.py as subprocesses with torchrun's
environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), with its own timeout, and kills
whatever is left when it ends.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from handgrad.distributed import DataParallel, shard_bounds

WORKER = Path(__file__).with_name("dist_worker.py")
_spec = importlib.util.spec_from_file_location("dist_worker", WORKER)
assert _spec is not None and _spec.loader is not None
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed not built in"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(
    case: str,
    out: Path,
    timeout: float = 120.0,
    group_timeout: float = 20.0,
    wait_for: tuple[int, ...] = (0, 1),
) -> list[subprocess.CompletedProcess[str]]:
    """Run 2 ranks of the worker, wait for the ranks ``wait_for`` (each within ``timeout``);
    every process is gone when this returns (or raises): the others are killed."""
    port = free_port()
    procs = []
    try:
        for rank in range(2):
            env = dict(
                os.environ,
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE="2",
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
                HG_TEST_TIMEOUT=str(group_timeout),
                OMP_NUM_THREADS="1",
            )
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), case, str(out)],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        deadline = time.monotonic() + timeout
        results = []
        for p in (procs[r] for r in wait_for):
            left = max(0.1, deadline - time.monotonic())
            stdout, stderr = p.communicate(timeout=left)
            results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


@pytest.mark.parametrize("case", ["mlp_sum", "mlp_mean", "bn_mean", "bn_sum"])
def test_two_ranks_equal_single_process(case: str, tmp_path: Path) -> None:
    results = launch(case, tmp_path)
    for r in results:
        assert r.returncode == 0, r.stderr
    want_losses, want_state = worker.single_process(case)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert got["world"] == 2 and got["backend"] == "gloo"
        assert got["buckets"] > 1  # the gradient went in several all-reduces
        assert got["losses"] == pytest.approx(want_losses, abs=1e-10, rel=1e-10)
        for name, value in want_state.items():
            diff = (got["state"][name].double() - value.double()).abs().max().item()
            assert diff <= 1e-10, (rank, name, diff)
        # the step really moved the weights (the comparison is not of two untouched models)
    first = worker.build(case)[0].state_dict()
    assert any((first[k] - want_state[k]).abs().max() > 1e-3 for k in first)


@pytest.mark.parametrize("case", ["die", "hang"])
def test_a_lost_rank_stops_the_other_with_a_clear_message(case: str, tmp_path: Path) -> None:
    start = time.monotonic()
    results = launch(case, tmp_path, timeout=60.0, group_timeout=5.0, wait_for=(0,))
    elapsed = time.monotonic() - start
    survivor = results[0]
    assert survivor.returncode == 1, survivor.stderr
    lines = [ln for ln in survivor.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, survivor.stderr
    assert "distributed: rank 0:" in lines[0] and "another rank died or hangs" in lines[0]
    assert "Traceback" not in survivor.stderr
    assert elapsed < 60
    assert not (tmp_path / "rank0.pt").exists()


def test_a_config_mismatch_is_one_line_at_start(tmp_path: Path) -> None:
    results = launch("mismatch", tmp_path, timeout=90.0)
    for r in results:
        assert r.returncode == 1, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and "ranks [1] differ from rank 0" in lines[0], r.stderr


def test_shard_bounds_cover_the_batch_once() -> None:
    for n in (2, 7, 13, 128):
        for world in (1, 2, 3):
            if n < world:
                continue
            bounds = [shard_bounds(n, world, r) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("case", ["mlp_mean", "bn_sum"])
def test_one_process_wrapper_equals_the_plain_loop(case: str) -> None:
    model, opt, loss_fn, batches = worker.build(case)
    dp = DataParallel(model, opt, loss_fn, bucket_numel=7)
    losses = [float(dp.step(x, y)) for x, y in batches]
    want_losses, want_state = worker.single_process(case)
    assert losses == pytest.approx(want_losses, abs=1e-12)
    for k, v in model.state_dict().items():
        assert torch.allclose(v, want_state[k], atol=1e-12, rtol=0), k


def test_bad_loss_reduction_is_refused() -> None:
    model, opt, _, _ = worker.build("mlp_mean")
    import handgrad.nn as hnn

    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        DataParallel(model, opt, hnn.MSELoss(reduction="none"))


def test_under_torchrun_two_ranks_equal_single_process(tmp_path: Path) -> None:
    """The same worker launched by torchrun itself (its own agent sets the environment)."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        str(WORKER),
        "bn_mean",
        str(tmp_path),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", HG_TEST_TIMEOUT="20")
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)  # torchrun and the ranks it started: one session
            proc.wait(timeout=10)
    assert proc.returncode == 0, stderr[-2000:]
    want_losses, want_state = worker.single_process("bn_mean")
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert got["losses"] == pytest.approx(want_losses, abs=1e-10, rel=1e-10)
        for name, value in want_state.items():
            assert (got["state"][name].double() - value.double()).abs().max() <= 1e-10, name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_one_process_wrapper_on_cuda_equals_the_cpu_loop() -> None:
    model, opt, loss_fn, batches = worker.build("bn_mean")
    model.to(device="cuda")
    loss_fn.to(device="cuda")
    dp = DataParallel(model, opt, loss_fn, bucket_numel=7)
    losses = [float(dp.step(x.cuda(), y.cuda())) for x, y in batches]
    want_losses, want_state = worker.single_process("bn_mean")
    assert losses == pytest.approx(want_losses, abs=1e-10)
    for k, v in model.state_dict().items():
        assert torch.allclose(v.cpu(), want_state[k], atol=1e-10, rtol=0), k
