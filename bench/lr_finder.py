"""The LR finder on a run's parts: ``handgrad.train.lr_finder.find_lr`` over the model,
loss, optimizer and batches that ``handgrad train`` builds from the same options.

Until ``--find-lr`` is wired into ``handgrad train``, this shows the suggestion for a config.

Usage:
    .venv/bin/python bench/lr_finder.py                              # the default run (Adam)
    .venv/bin/python bench/lr_finder.py --optimizer sgd --png /tmp/lr.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from handgrad.train import build
from handgrad.train.config import TrainConfig
from handgrad.train.lr_finder import find_lr, plot_lr_finder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="784-128-10")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = TrainConfig(model=args.model, optimizer=args.optimizer)
    data = build.load_data(config)
    model, loss, opt = build.build_training_parts(config, data.n_train)
    batches = list(build.build_batches(config, data).epoch(0))
    result = find_lr(model, loss, opt, batches, steps=args.steps)
    print(
        f"{args.model} {args.optimizer}: {len(result.lrs)} steps ({result.stopped}), "
        f"suggestion {result.suggestion:.3g} ({result.rule}); min/10 {result.min_over_10:.3g}"
    )
    if args.png is not None:
        plot_lr_finder(result, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
