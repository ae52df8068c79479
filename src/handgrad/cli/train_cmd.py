"""``handgrad train``: run the default, a recipe, a config file, or resume a run.

Parses and prints only: the options come from ``TrainConfig``'s fields
(``handgrad.cli.options``), the run from ``handgrad.train.session``. Importing this module
does not import torch, so ``handgrad train --help`` answers at once.
"""

from __future__ import annotations

import argparse

from handgrad.cli import options
from handgrad.train.config import TrainConfig
from handgrad.train.recipes import RECIPES, Recipe, get_recipe

DESCRIPTION = """\
Train an MLP with hand-written backward passes and write a run directory
(<out>/<name>-<time>/: config.json, metrics.jsonl, checkpoint.safetensors,
model.safetensors, PNG plots).

With no options, the default run: 784-128-10 with ReLU, cross-entropy, Adam at lr 1e-3,
batches of 64, 20 epochs on the embedded 1,000/1,000 MNIST subset, 100 of the 1,000
training images held out for validation (a few seconds on a laptop).
"""

EPILOG = """\
examples:
  handgrad train                                  the default run
  handgrad train --recipe ninja-gd                a seed notebook (see 'handgrad recipes')
  handgrad train --recipe ninja-gd --steps 100    a recipe with an option changed
  handgrad train --recipe ninja-adamw --engine both   both engines, figures side by side
  handgrad train --config runs/x/config.json      repeat a run
  handgrad train --resume runs/x                  continue an interrupted run, bit for bit
  handgrad train --threads auto                   measure the fastest thread count first
  torchrun --nproc_per_node=2 -m handgrad train --distributed   data-parallel on 2 processes
"""

EXIT_INTERRUPTED = 130  # handgrad.train.session.EXIT_INTERRUPTED


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--recipe",
        metavar="NAME",
        choices=list(RECIPES),
        help="a seed recipe: " + ", ".join(RECIPES),
    )
    source.add_argument("--config", metavar="FILE", help="start from a config.json (a run's own)")
    source.add_argument(
        "--resume", metavar="RUN", help="continue the run in RUN from its checkpoint"
    )
    g = options.add_config_options(p)["run"]
    g.add_argument(
        "--engine",
        choices=("handgrad", "autograd", "both"),
        default=argparse.SUPPRESS,
        help="autograd: the torch.nn + torch.optim reference; both: run each and compare",
    )
    g.add_argument(
        "--out", default="runs", metavar="DIR", help="where run directories go (default runs)"
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar, no per-evaluation lines")
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    g.add_argument("--no-report", action="store_true", help="skip report.html")
    g.add_argument(
        "--find-lr",
        action="store_true",
        help="only the LR range test: lr_finder.json/.png and a suggested --lr, then stop",
    )
    g.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over torchrun's processes (implied under torchrun)",
    )
    g.add_argument(
        "--dist-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="a data-parallel run stops when another rank is silent for S seconds (default 60)",
    )
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, Recipe | None]:
    """The base config (recipe, file or default) with the command line's options applied."""
    recipe = get_recipe(args.recipe) if args.recipe else None
    if recipe is not None:
        config = recipe.config
    elif args.config:
        config = TrainConfig.load(args.config)
    else:
        config = TrainConfig()
    config = options.apply_options(config, args)
    # A table's validation split: a fraction of its rows unless --valid says otherwise (the
    # image presets' default of 100 records is no size for a table of any length).
    given = options.given_options(args)
    if config.data_file is not None and recipe is None and not args.config and "valid" not in given:
        config = config.replace(valid=TABLE_VALID)
    return config, recipe


TABLE_VALID = 0.2  # handgrad train --data-file: the default validation fraction


def run(args: argparse.Namespace) -> int:
    from handgrad.cli.train_run import run_command

    return run_command(args, config_from_args)
