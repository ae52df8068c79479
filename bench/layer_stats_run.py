"""The default run end to end with per-layer statistics on and off, interleaved, medians.

What ``--no-layer-stats`` saves on ``handgrad train``'s default run (784-128-10, 300 steps,
30 of them measured), everything included: the steps, the evaluations and the records.

Usage:
    .venv/bin/python bench/layer_stats_run.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from handgrad.train.build import load_data
from handgrad.train.config import TrainConfig
from handgrad.train.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = TrainConfig()
    data = load_data(config)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        for on in (True, False):
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                train(config.replace(layer_stats=on), run_dir=Path(d), data=data)
                times[on].append(time.perf_counter() - t)
    for on in (True, False):
        runs = ", ".join(f"{x:.2f}" for x in times[on])
        median = statistics.median(times[on])
        print(f"statistics {'on ' if on else 'off'}: {runs} s; median {median:.2f} s")
    ratio = statistics.median(times[True]) / statistics.median(times[False])
    print(f"on / off (medians): {ratio:.3f}")


if __name__ == "__main__":
    main()
