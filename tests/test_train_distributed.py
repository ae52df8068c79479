"""``handgrad train`` under ``torchrun --nproc_per_node=2`` (gloo, 127.0.0.1) against the single
process: records and final weights, the run directory rank 0 alone writes, a rank killed
mid-run and the run resumed, the run lock, and the options a distributed run refuses.

Each launch uses the venv's torchrun (``sys.executable -m torch.distributed.run``) on a free
port, in its own process group with its own timeout; the group is killed when the test ends,
whatever happened, so no process is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from handgrad.cli.main import main
from handgrad.errors import HandgradError
from handgrad.train import records as rec
from handgrad.train.distributed_run import check_batches
from handgrad.train.lock import LOCK_NAME, read_holder

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed not built in"
)

TOLERANCE = 1e-10  # float64: sharding reorders the sums
QUIET = ["--no-plots", "--no-report", "--threads", "1"]
# The default run, shortened, in float64.
DEFAULT = ["--epochs", "2", "--dtype", "float64", *QUIET]
# Dropout + BatchNorm, augmented, two micro-batches per step, a schedule, the best weights kept
# and the test set read once at the end (rank 0's figures sent to every rank), float64.
# SGD: Adam would turn the rounding noise of a gradient that is 0 in exact arithmetic (a bias
# before BatchNorm, the weights of a constant pixel) into a ±lr step and so compare noise.
BN_DROPOUT = [
    "--steps", "20", "--eval-every", "4", "--dtype", "float64", "--norm", "batchnorm",
    "--dropout", "0.2", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
    "--augment", "shift", "--accumulate", "2", "--schedule", "cosine", "--keep-best",
    "--eval-test", "end", *QUIET,
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_command(args: list[str], nproc: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        "-m", "handgrad", "train", *args,
    ]  # fmt: skip


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    out.update(OMP_NUM_THREADS="1", **extra)
    return out


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (torchrun starts each rank in a session of its own, so
    killing torchrun's process group would leave them running)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_rank(pid: int) -> bool:
    """Whether ``pid`` runs ``handgrad train`` (a rank, not a helper torch may start)."""
    try:
        return b"handgrad" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@contextlib.contextmanager
def launched(cmd: list[str], cwd: Path, **extra: str) -> Iterator[subprocess.Popen[str]]:
    """``cmd`` started in its own process group; it and every process below it are killed on
    the way out."""
    p = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield p
    finally:
        for pid in descendants(p.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        if p.returncode is None:
            p.communicate(timeout=30)


def run(cmd: list[str], cwd: Path, timeout: float = 180.0, **extra: str) -> tuple[int, str, str]:
    with launched(cmd, cwd, **extra) as p:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err


def only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs  # one run directory, written by rank 0 alone
    return runs[0]


def records(run_dir: Path) -> list[dict[str, object]]:
    return [
        {k: v for k, v in r.items() if k != "seconds"} for r in rec.read_metrics(run_dir)
    ]  # fmt: skip


def assert_records_close(got: list[dict[str, object]], want: list[dict[str, object]]) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys()
        for key, value in b.items():
            if isinstance(value, float):
                assert a[key] == pytest.approx(value, abs=TOLERANCE, rel=TOLERANCE), key
            else:
                assert a[key] == value, key


def assert_weights_close(
    got_dir: Path, want_dir: Path, exact: bool = False, name: str = rec.MODEL
) -> None:
    got, want = load_file(got_dir / name), load_file(want_dir / name)
    assert got.keys() == want.keys()
    for key, value in want.items():
        diff = (got[key].double() - value.double()).abs().max().item()
        assert diff == 0.0 if exact else diff <= TOLERANCE, (key, diff)


def single_process(args: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["train", *args, "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    return only_run(out)


def config_of(run_dir: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((run_dir / rec.CONFIG).read_text())
    return data


def test_default_run_on_two_ranks_equals_the_single_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(torchrun_command([*DEFAULT, "--out", "runs"]), tmp_path)
    assert code == 0, err
    dist_run = only_run(tmp_path / "runs")
    single = single_process(DEFAULT, tmp_path / "single", capsys)
    assert_records_close(records(dist_run), records(single))
    assert_weights_close(dist_run, single)
    got, want = config_of(dist_run), config_of(single)
    assert (got["world_size"], got["backend"]) == (2, "gloo")
    assert (want["world_size"], want["backend"]) == (1, None)
    assert {k: v for k, v in got.items() if k not in ("world_size", "backend")} == {
        k: v for k, v in want.items() if k not in ("world_size", "backend")
    }
    # rank 0 alone prints: each evaluation line and the summary once
    assert out.count("step      0 ") == 1 and out.count("handgrad: completed") == 1, out
    # the run learned (the comparison is not of two untouched models)
    first, last = records(single)[0], records(single)[-1]
    assert float(str(last["train_loss"])) < 0.5 * float(str(first["train_loss"]))
    # a single process refuses to resume it, naming the command that can
    assert main(["train", "--resume", str(dist_run), *QUIET[:2]]) == 2
    line = capsys.readouterr().err.strip()
    assert "trained on 2 process(es)" in line and "torchrun --nproc_per_node=2" in line
    assert len(line.splitlines()) == 1


def test_dropout_batchnorm_on_two_ranks_killed_and_resumed_equals_the_uninterrupted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the uninterrupted 2-process run, against the single process
    code, _, err = run(torchrun_command([*BN_DROPOUT, "--out", "full"]), tmp_path)
    assert code == 0, err
    full = only_run(tmp_path / "full")
    single = single_process(BN_DROPOUT, tmp_path / "single", capsys)
    assert_records_close(records(full), records(single))
    assert_weights_close(full, single)
    assert_weights_close(full, single, name=rec.BEST)
    assert "1.running_mean" in load_file(full / rec.MODEL)  # BatchNorm was there
    assert records(full)[-1]["test_error"] is not None

    # rank 1 SIGKILLed after step 10: rank 0 stops with one line, within the group timeout
    started = time.monotonic()
    code, _, err = run(
        torchrun_command([*BN_DROPOUT, "--out", "cut", "--dist-timeout", "20"]),
        tmp_path,
        HANDGRAD_TEST_KILL_AT_STEP="10",
    )
    # (a hang would last the 20 s group timeout; the bound leaves room for a loaded machine)
    assert code != 0 and time.monotonic() - started < 120
    ours = [line for line in err.splitlines() if line.startswith("handgrad:")]
    assert len(ours) == 1, err
    assert ours[0].startswith("handgrad: error: distributed: rank 0:") and "died" in ours[0]
    assert "handgrad/" not in "".join(ln for ln in err.splitlines() if 'File "' in ln)
    cut = only_run(tmp_path / "cut")
    assert records(cut)[-1]["step"] <= 10 and not (cut / rec.MODEL).exists()

    # resumed under torchrun: bit for bit the uninterrupted run
    code, _, err = run(torchrun_command(["--resume", str(cut), *QUIET[:2]]), tmp_path)
    assert code == 0, err
    assert records(cut) == records(full)
    assert_weights_close(cut, full, exact=True)
    assert_weights_close(cut, full, exact=True, name=rec.BEST)


def test_the_lock_is_held_by_rank_0_under_torchrun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_run = ["--steps", "200000", "--eval-every", "100000", "--no-layer-stats", *QUIET]
    with launched(torchrun_command([*long_run, "--out", "runs"]), tmp_path) as live:
        deadline = time.monotonic() + 60
        run_dir = None
        while time.monotonic() < deadline and live.poll() is None:
            found = list((tmp_path / "runs").glob("*/config.json"))
            if found and (found[0].parent / LOCK_NAME).exists():
                run_dir = found[0].parent
                break
            time.sleep(0.2)
        assert run_dir is not None, "the distributed run did not start"
        holder = read_holder(run_dir / LOCK_NAME)["pid"]
        assert holder != live.pid  # a rank holds it, not the launcher

        # a single process resuming it, and a new run into it, are refused at once
        assert main(["train", "--resume", str(run_dir)]) == 2
        assert f"pid {holder}" in capsys.readouterr().err
        assert main(["train", "--out", str(run_dir), *QUIET]) == 2
        assert "another handgrad process is writing" in capsys.readouterr().err

        # a second torchrun resuming it: rank 0 says so in one line, rank 1 says nothing
        code, _, err = run(torchrun_command(["--resume", str(run_dir)]), tmp_path)
        ours = [line for line in err.splitlines() if line.startswith("handgrad:")]
        assert code != 0 and len(ours) == 1, err
        assert "another handgrad process is writing to this run" in ours[0]
        assert live.poll() is None  # the first run went on

        # SIGTERM to rank 1 alone: the ranks agree to stop at the same step, rank 0 writes a
        # checkpoint there and names the torchrun command that resumes it
        (other,) = [pid for pid in descendants(live.pid) if pid != holder and is_rank(pid)]
        os.kill(other, signal.SIGTERM)
        out, _ = live.communicate(timeout=60)
    stopped = [line for line in out.splitlines() if line.startswith("interrupted at step")]
    assert len(stopped) == 1, out
    where = run_dir.relative_to(tmp_path)  # as the run was started: --out runs
    assert f"torchrun --nproc_per_node=2 -m handgrad train --resume {where}" in stopped[0]
    step = int(stopped[0].split()[3])
    assert rec.load_checkpoint(run_dir / rec.CHECKPOINT).step == step > 0


def test_options_a_distributed_run_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert main(["train", "--distributed", "--out", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip()
    assert "torchrun --nproc_per_node=K -m handgrad train" in line and len(line.splitlines()) == 1
    # under torchrun: --engine both is refused before anything is written, by rank 0 alone
    code, _, err = run(torchrun_command(["--engine", "both", "--out", "runs"]), tmp_path)
    assert code != 0 and not (tmp_path / "runs").exists()
    ours = [line for line in err.splitlines() if line.startswith("handgrad:")]
    assert len(ours) == 1 and "--engine both" in ours[0], err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_compare_on_cuda_without_a_gpu_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compare", "--recipe", "ninja-gd", "--device", "cuda", "--out", str(tmp_path / "c")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "no CUDA device" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_every_global_batch_needs_a_row_per_rank() -> None:
    check_batches(64, 900, False, 2)  # 14 batches of 64 and one of 4
    check_batches(899, 900, True, 2)  # the short batch dropped
    with pytest.raises(HandgradError, match="the last batch of each epoch has 1 rows"):
        check_batches(899, 900, False, 2)
    with pytest.raises(HandgradError, match="each batch has 2 rows, fewer than the 3 ranks"):
        check_batches(2, 900, False, 3)


@pytest.mark.parametrize("extra", [["--lr", "0.002"], ["--epochs", "2"]], ids=["lr", "epochs"])
def test_ranks_started_with_different_configs_stop_at_start(
    tmp_path: Path, extra: list[str]
) -> None:
    # torchrun gives every rank the same command line; a launcher that changes rank 1's (as a
    # wrong script or environment would) must stop both ranks before any step, in one line.
    launcher = tmp_path / "handgrad_launcher.py"
    launcher.write_text(
        "import os, sys\n"
        "from handgrad.cli.main import main\n"
        "args = sys.argv[1:]\n"
        "if os.environ.get('RANK') == '1':\n"
        f"    args += {extra!r}\n"
        "sys.exit(main(args))\n"
    )
    cmd = torchrun_command(["--epochs", "1", "--out", "runs", *QUIET])
    at = cmd.index("-m", 3)
    cmd[at : at + 2] = [str(launcher)]  # the launcher in place of "-m handgrad"
    code, _, err = run(cmd, tmp_path, timeout=120)
    assert code != 0
    ours = [line for line in err.splitlines() if line.startswith("handgrad:")]
    assert ours and all("differ from rank 0" in line for line in ours), err
    assert "ranks [1]" in ours[0]
    assert not any((tmp_path / "runs").glob("*/metrics.jsonl"))  # no step was recorded
