"""``handgrad train``: run the default, a recipe, a config file, or resume a run.

Parses and prints only: the options come from ``TrainConfig``'s fields
(``handgrad.cli.options``), the run from ``handgrad.train.session``. Importing this module
does not import torch, so ``handgrad train --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from handgrad.cli import options
from handgrad.errors import HandgradError
from handgrad.train.config import TrainConfig
from handgrad.train.recipes import DEFAULT_LOG, RECIPES, Recipe, get_recipe

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
    from handgrad.train import session as ses
    from handgrad.train.lr_finder import summary as lr_finder_summary

    if args.find_lr:
        if args.resume is not None:  # --resume "" is refused by find_run, never a fresh run
            raise HandgradError(
                "--find-lr: tests the learning rate of a new run; not with --resume"
            )
        config, _ = config_from_args(args)
        run_dir, found = ses.find_lr_run(config, out=args.out)
        print(lr_finder_summary(found))
        print(
            f"  wrote {run_dir}/lr_finder.json, lr_finder.png; "
            f"train with --lr {found.suggestion:.3g} or --lr auto"
        )
        return 0
    if args.resume is not None:  # --resume "" is refused by find_run, never a fresh run
        changes = options.resume_conflicts(args) + (["--engine"] if "engine" in vars(args) else [])
        session = ses.resume_session(
            args.resume, out=args.out, data_dir=getattr(args, "data_dir", None), changes=changes
        )
        recipe = RECIPES.get(session.config.recipe or "")
    else:
        config, recipe = config_from_args(args)
        recipe = recipe or RECIPES.get(config.recipe or "")  # a recipe run's own config.json
        session = ses.fresh_session(
            config, engine=getattr(args, "engine", config.engine), out=args.out
        )
        if session.lr_finder is not None:
            print(lr_finder_summary(session.lr_finder) + "; training with it")
        if config.threads == "auto":
            print(f"threads: auto chose {session.config.threads} (recorded in config.json)")
    log_format = recipe.log_format if recipe else DEFAULT_LOG
    timing = bool(recipe and recipe.timing and session.resume_dir is None)
    with session:  # holds each run's lock until its plots are written
        return _run_engines(args, session, recipe, log_format, timing)


def _run_engines(
    args: argparse.Namespace, session: Any, recipe: Recipe | None, log_format: str, timing: bool
) -> int:
    from handgrad.cli import train_output as out
    from handgrad.train import session as ses

    measured: dict[str, tuple[list[dict[str, Any]], dict[str, float]]] = {}
    results = []
    for engine in session.engines:
        if len(session.engines) > 1 and not args.quiet:
            print(f"== engine {engine} ==")
        total = session.plan.total_steps
        reporter = out.Reporter(total, session.start_step, args.quiet, log_format, engine)
        run_dir = ses.run_dir_for(session, engine)
        try:
            result = ses.run_engine(
                session, engine, run_dir, on_step=reporter.step, on_eval=reporter.evaluation
            )
        except KeyboardInterrupt:
            reporter.close()
            print(
                f"handgrad: stopped at once; the last checkpoint in {run_dir} is intact; "
                f"resume with: handgrad train --resume {run_dir}",
                file=sys.stderr,
            )
            raise SystemExit(ses.EXIT_INTERRUPTED) from None
        finally:
            reporter.close()
        plot_line = None if args.no_plots else out.plots(result)  # written before "completed"
        out.print_message(result)
        print(out.summary(result))
        if plot_line:
            print(plot_line)
        out.doctor_findings(result)
        if not args.no_report:
            out.report(result)
        extra = ses.closing_timings(result) if timing else {}
        if extra:
            print(out.timing_line(len(result.data.x_train), extra))
        measured[engine] = (result.records, extra)
        results.append(result)
        if result.status == "interrupted":
            break
    if recipe is not None:
        print(out.figures_table(recipe, measured, session.config))
    return max(ses.exit_code(r) for r in results)
