"""``handgrad train``'s run, once its session is ready: each engine in turn, and what it prints.

Only the process that writes prints (a single process, or rank 0 of a data-parallel run); the
other ranks of a run under torchrun train in silence.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from handgrad.errors import HandgradError
from handgrad.train.recipes import DEFAULT_LOG, RECIPES, Recipe

EXIT_FAILED = 1


def run_command(args: argparse.Namespace, config_from_args: Callable[..., Any]) -> int:
    """``handgrad train``: join the process group under torchrun, run, leave."""
    from handgrad.distributed import DistributedError
    from handgrad.train import distributed_run as dr

    context = None
    if args.distributed or dr.under_torchrun():
        if args.dist_timeout <= 0:
            raise HandgradError(f"--dist-timeout: must be > 0, got {args.dist_timeout:g}")
        if args.find_lr:
            dr.check_options(engine="handgrad", threads=None, lr=None, find_lr=True)
        device = dr.run_device(  # it picks the backend: gloo, or NCCL for CUDA
            getattr(args, "device", None), args.resume, args.out, lambda: config_from_args(args)[0]
        )
        context = dr.join(device, args.dist_timeout)
    try:
        code = _run(args, context, config_from_args)
    except dr.PeerFailed:
        code = 2  # the rank that failed said why
    except DistributedError as exc:  # a rank died or hangs: one line, then leave at once
        print(f"handgrad: error: {exc}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_FAILED)  # gloo may abort in its destructors once a peer is gone
    except (HandgradError, ValueError, TypeError, OSError) as exc:
        if context is None:
            raise  # the command line's edge makes it one line
        print(f"handgrad: error: {exc}", file=sys.stderr, flush=True)  # the others stop too
        sys.stdout.flush()
        os._exit(2)
    dr.leave(context)
    return code


def _run(args: argparse.Namespace, context: Any, config_from_args: Callable[..., Any]) -> int:
    from handgrad.cli import options
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
        data_dir = getattr(args, "data_dir", None)
        session = ses.resume_session(
            args.resume, out=args.out, data_dir=data_dir, changes=changes, dist=context
        )
        recipe = RECIPES.get(session.config.recipe or "")
    else:
        config, recipe = config_from_args(args)
        recipe = recipe or RECIPES.get(config.recipe or "")  # a recipe run's own config.json
        engine = getattr(args, "engine", config.engine)
        session = ses.fresh_session(config, engine=engine, out=args.out, dist=context)
        if session.lr_finder is not None:
            print(lr_finder_summary(session.lr_finder) + "; training with it")
        if config.threads == "auto":
            print(f"threads: auto chose {session.config.threads} (recorded in config.json)")
    log_format = recipe.log_format if recipe else DEFAULT_LOG
    timing = bool(recipe and recipe.timing and session.resume_dir is None)
    with session:  # holds each run's lock until its plots are written
        return run_engines(args, session, recipe, log_format, timing)


def run_engines(
    args: argparse.Namespace, session: Any, recipe: Recipe | None, log_format: str, timing: bool
) -> int:
    """Train the session's engines in turn; the exit code of the worst run."""
    from handgrad.cli import train_output as out
    from handgrad.train import session as ses

    main = session.is_main
    quiet = args.quiet or not main
    measured: dict[str, tuple[list[dict[str, Any]], dict[str, float]]] = {}
    results = []
    for engine in session.engines:
        if len(session.engines) > 1 and not quiet:
            print(f"== engine {engine} ==")
        total = session.plan.total_steps
        reporter = out.Reporter(total, session.start_step, quiet, log_format, engine)
        run_dir = ses.run_dir_for(session, engine)
        try:
            result = ses.run_engine(
                session, engine, run_dir, on_step=reporter.step, on_eval=reporter.evaluation
            )
        except KeyboardInterrupt:
            reporter.close()
            if main:
                print(
                    f"handgrad: stopped at once; the last checkpoint in {run_dir} is intact; "
                    f"resume with: {ses.resume_command(session, run_dir)}",
                    file=sys.stderr,
                )
            raise SystemExit(ses.EXIT_INTERRUPTED) from None
        finally:
            reporter.close()
        results.append(result)
        if not main:
            continue
        plot_line = None if args.no_plots else out.plots(result)  # written before "completed"
        if result.status == "interrupted" and session.dist is not None:
            print(f"{result.message}; resume with: {ses.resume_command(session, result.run_dir)}")
        else:
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
        if result.status == "interrupted":
            break
    if recipe is not None and main:
        print(out.figures_table(recipe, measured, session.config))
    return max(ses.exit_code(r) for r in results)
