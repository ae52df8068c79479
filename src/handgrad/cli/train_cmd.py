"""``handgrad train``: run the default, a recipe, a config file, or resume a run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from handgrad.errors import HandgradError
from handgrad.train import records as rec
from handgrad.train.build import build_loss, build_optimizer, load_data, make_plan, preflight
from handgrad.train.config import (
    ACTIVATIONS,
    AUGMENTS,
    DATA_PRESETS,
    DTYPES,
    EVAL_TEST,
    INITS,
    LOSSES,
    MONITORS,
    NORMS,
    OPTIMIZERS,
    SCHEDULES,
    TARGETS,
    TrainConfig,
)
from handgrad.train.loop import RunResult, make_engine, time_forward_backward, train
from handgrad.train.recipes import (
    DEFAULT_LOG,
    RECIPES,
    Recipe,
    figure_text,
    format_record,
    get_recipe,
    measure,
)

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
"""

# Exit codes: 0 done (also early stop), 1 diverged, 2 bad input, 130 interrupted.
EXIT_DIVERGED = 1
EXIT_INTERRUPTED = 130

# Options that may accompany --resume (they do not change what the run computes).
RESUME_OPTIONS = {"quiet", "no_plots", "out", "data_dir"}


def _int_or_none(word: str, none_word: str) -> int | None:
    if word == none_word:
        return None
    try:
        return int(word)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or '{none_word}', got {word!r}"
        ) from None


def _batch_size(word: str) -> int | None:
    return _int_or_none(word, "full")


def _accumulate(word: str) -> int | None:
    return _int_or_none(word, "pass")


def _count_or_fraction(word: str) -> int | float:
    try:
        return int(word)
    except ValueError:
        pass
    try:
        return float(word)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a fraction, got {word!r}") from None


def _key_value(word: str) -> tuple[str, Any]:
    key, sep, value = word.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {word!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def reject_unknown_here(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` itself report options it does not know, so that the closest of *its*
    options is suggested (argparse otherwise hands them to the top-level parser)."""
    parse_known = parser.parse_known_args

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        known, extras = parse_known(args, namespace)
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return known, extras

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (the default run, a recipe, a config file) or resume a run",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    S = argparse.SUPPRESS
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--recipe",
        metavar="NAME",
        choices=list(RECIPES),
        help="run a seed recipe: " + ", ".join(RECIPES),
    )
    source.add_argument(
        "--config", metavar="FILE", help="start from a config.json (e.g. a run's own)"
    )
    source.add_argument(
        "--resume", metavar="RUN", help="continue the run in directory RUN from its checkpoint"
    )

    g = p.add_argument_group("data")
    g.add_argument(
        "--preset", choices=DATA_PRESETS, default=S, help="data preset (default fleuret)"
    )
    g.add_argument(
        "--full",
        dest="full",
        action="store_true",
        default=S,
        help="fleuret: all 60,000/10,000 records",
    )
    g.add_argument(
        "--data",
        dest="data_dir",
        metavar="DIR",
        default=S,
        help="folder with the MNIST files (else $HANDGRAD_DATA)",
    )
    g.add_argument(
        "--no-download",
        dest="download",
        action="store_false",
        default=S,
        help="never download MNIST",
    )
    g.add_argument(
        "--valid",
        type=_count_or_fraction,
        metavar="N",
        default=S,
        help="validation records from train (count or fraction; 0 none; default 100)",
    )
    g.add_argument("--targets", choices=TARGETS, default=S, help="loss targets (default auto)")
    g.add_argument(
        "--target-scale",
        type=float,
        metavar="S",
        default=S,
        help="value at the label of one-hot targets",
    )

    g = p.add_argument_group("model")
    g.add_argument(
        "--model", metavar="SPEC", default=S, help="layer widths, e.g. 784-128-10 (default)"
    )
    g.add_argument("--act", choices=ACTIVATIONS, default=S, help="hidden activation (default relu)")
    g.add_argument(
        "--out-act", choices=ACTIVATIONS, default=S, help="after the last layer (default none)"
    )
    g.add_argument("--norm", choices=NORMS, default=S, help="normalization after hidden layers")
    g.add_argument(
        "--dropout", type=float, metavar="P", default=S, help="dropout after hidden activations"
    )
    g.add_argument(
        "--input-dropout", type=float, metavar="P", default=S, help="dropout on the input"
    )
    g.add_argument("--init", choices=INITS, default=S, help="weight init (default torch)")
    g.add_argument("--init-std", type=float, metavar="STD", default=S, help="std for --init normal")
    g.add_argument(
        "--bias-std", type=float, metavar="STD", default=S, help="draw biases from N(0, STD^2)"
    )
    g.add_argument(
        "--draw-order",
        choices=("out_in", "in_out"),
        default=S,
        help="in_out: draw W as (D_in, D_out) like x @ w notebooks",
    )

    g = p.add_argument_group("loss and optimizer")
    g.add_argument("--loss", choices=LOSSES, default=S, help="default cross_entropy")
    g.add_argument("--label-smoothing", type=float, metavar="E", default=S)
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=S, help="default adam")
    g.add_argument("--lr", type=float, default=S, help="learning rate (default 1e-3)")
    g.add_argument(
        "--lr-per-sample",
        action="store_true",
        default=S,
        help="use lr / N_train (the seeds' eta = 0.1 / N)",
    )
    g.add_argument("--momentum", type=float, default=S)
    g.add_argument("--weight-decay", type=float, default=S)
    g.add_argument("--betas", type=float, nargs=2, metavar=("B1", "B2"), default=S)
    g.add_argument("--eps", type=float, default=S)
    g.add_argument("--nesterov", action="store_true", default=S)
    g.add_argument(
        "--optimizer-option",
        type=_key_value,
        action="append",
        metavar="KEY=VALUE",
        default=S,
        help="another optimizer argument (repeatable)",
    )
    g.add_argument(
        "--schedule", choices=SCHEDULES, default=S, help="learning-rate schedule (default constant)"
    )
    g.add_argument(
        "--schedule-option",
        type=_key_value,
        action="append",
        metavar="KEY=VALUE",
        default=S,
        help="a schedule argument, e.g. warmup_steps=100 (repeatable)",
    )

    g = p.add_argument_group("length and batches")
    g.add_argument(
        "--batch-size",
        type=_batch_size,
        metavar="N|full",
        default=S,
        help="records per batch (default 64)",
    )
    g.add_argument("--no-shuffle", dest="shuffle", action="store_false", default=S)
    g.add_argument(
        "--accumulate",
        type=_accumulate,
        metavar="N|pass",
        default=S,
        help="micro-batches per optimizer step",
    )
    g.add_argument(
        "--epochs", type=int, default=S, help="passes over the training set (default 20)"
    )
    g.add_argument("--steps", type=int, default=S, help="optimizer steps (overrides --epochs)")
    g.add_argument(
        "--eval-every", type=int, metavar="STEPS", default=S, help="default once per epoch"
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="STEPS",
        default=S,
        help="default at each evaluation",
    )
    g.add_argument(
        "--patience",
        type=int,
        metavar="EVALS",
        default=S,
        help="early stopping on the validation metric",
    )
    g.add_argument("--monitor", choices=MONITORS, default=S)
    g.add_argument(
        "--drop-last",
        dest="drop_last",
        action="store_true",
        default=S,
        help="skip the last, smaller batch of each epoch",
    )
    g.add_argument(
        "--eval-test",
        choices=EVAL_TEST,
        default=S,
        help="evaluate the test set at every evaluation (default) or once, at the end",
    )
    g.add_argument(
        "--augment", choices=AUGMENTS, default=S, help="augment each training batch (default none)"
    )
    g.add_argument(
        "--augment-option",
        type=_key_value,
        action="append",
        metavar="KEY=VALUE",
        default=S,
        help="an augmentation magnitude, e.g. shift=1.5 rotate=8 (repeatable)",
    )

    g = p.add_argument_group("run")
    g.add_argument("--name", default=S, help="run name (default: the recipe's, or 'run')")
    g.add_argument("--seed", type=int, default=S)
    g.add_argument("--dtype", choices=DTYPES, default=S)
    g.add_argument("--device", default=S)
    g.add_argument(
        "--threads", type=int, default=S, help="torch threads (default 1; 0 for torch's default)"
    )
    g.add_argument(
        "--engine",
        choices=("handgrad", "autograd", "both"),
        default=S,
        help="autograd: the torch.nn + torch.optim reference; both: run each and compare",
    )
    g.add_argument(
        "--out", default="runs", metavar="DIR", help="where run directories go (default ./runs)"
    )
    g.add_argument(
        "--quiet", action="store_true", help="no progress bar and no per-evaluation lines"
    )
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run)
    reject_unknown_here(p)


FIELD_FLAGS = {
    "preset", "full", "data_dir", "download", "valid", "targets", "target_scale", "model", "act",
    "out_act", "norm", "dropout", "input_dropout", "init", "init_std", "bias_std", "draw_order",
    "loss", "label_smoothing", "optimizer", "lr", "lr_per_sample", "momentum", "weight_decay",
    "betas", "eps", "nesterov", "schedule", "batch_size", "shuffle", "accumulate", "epochs",
    "steps", "eval_every", "checkpoint_every", "patience", "monitor", "name", "seed", "dtype",
    "device", "threads", "drop_last", "eval_test", "augment",
}  # fmt: skip


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, Recipe | None]:
    """The base config (recipe, file or default) with the command line's options applied."""
    recipe = get_recipe(args.recipe) if args.recipe else None
    if recipe is not None:
        config = recipe.config
    elif args.config:
        config = TrainConfig.load(args.config)
    else:
        config = TrainConfig()
    given = vars(args)
    changes: dict[str, Any] = {k: given[k] for k in FIELD_FLAGS if k in given}
    if changes.get("threads") == 0:
        changes["threads"] = None  # torch's default
    if "betas" in changes:
        changes["betas"] = tuple(changes["betas"])
    if "optimizer_option" in given:
        changes["optimizer_options"] = {
            **config.optimizer_options,
            **dict(given["optimizer_option"]),
        }
    if "schedule_option" in given:
        changes["schedule_options"] = {**config.schedule_options, **dict(given["schedule_option"])}
    if changes.get("augment", config.augment) != config.augment or "augment_option" in given:
        # The recipe's magnitudes belong to its own augmentation, not to another one.
        same = changes.get("augment", config.augment) == config.augment
        changes["augment_options"] = {
            **(config.augment_options if same else {}),
            **dict(given.get("augment_option", [])),
        }
    if "steps" in changes and "epochs" not in changes:
        changes["epochs"] = None
    if "epochs" in changes and "steps" not in changes:
        changes["steps"] = None
    engine = given.get("engine")
    if engine in ("handgrad", "autograd"):
        changes["engine"] = engine
    config = config.replace(**changes)
    return config.validate(), recipe


class Reporter:
    """The progress bar and per-evaluation lines of one run (nothing with --quiet)."""

    def __init__(self, total: int, start: int, quiet: bool, log_format: str, label: str) -> None:
        from tqdm import tqdm

        self.quiet = quiet
        self.log_format = log_format
        self.bar = tqdm(
            total=total,
            initial=start,
            desc=label,
            unit="step",
            disable=quiet or not sys.stderr.isatty(),
            dynamic_ncols=True,
            leave=False,
        )

    def step(self, steps_done: int) -> None:
        self.bar.update(1)

    def evaluation(self, record: dict[str, Any]) -> None:
        postfix = {"loss": f"{record['train_loss']:.4g}", "acc": f"{1 - record['train_error']:.1%}"}
        if record.get("valid_error") is not None:
            postfix["val"] = f"{1 - record['valid_error']:.1%}"
        self.bar.set_postfix(postfix, refresh=False)
        if not self.quiet:
            self.bar.write(format_record(self.log_format, record), file=sys.stdout)

    def close(self) -> None:
        self.bar.close()


def summary(result: RunResult) -> str:
    final = result.final
    parts = [f"train loss {final.get('train_loss', float('nan')):.6g}"]
    for split in ("train", "valid", "test"):
        error = final.get(f"{split}_error")
        if error is not None:
            parts.append(f"{split} error {error:.2%}")
    if final.get("test_error") is not None:
        parts.append(f"(test accuracy {1 - final['test_error']:.2%})")
    if final.get("test_evaluated"):
        parts.append(f"[test set evaluated {final['test_evaluated']}]")
    where = f" -> {result.run_dir}" if result.run_dir else ""
    head = (
        f"{result.config.engine}: {result.status}, {result.steps} of {result.plan.total_steps} "
        f"steps in {result.seconds:.1f} s{where}"
    )
    return head + "\n  " + "  ".join(parts)


def _run_one(
    config: TrainConfig,
    args: argparse.Namespace,
    log_format: str,
    *,
    run_dir: Path,
    resume: bool,
    data: Any,
) -> RunResult:
    start = 0
    if resume:
        start = rec.load_checkpoint(run_dir / rec.CHECKPOINT).step  # fails early, naming the file
    plan = make_plan(config, data.n_train)
    reporter = Reporter(plan.total_steps, start, args.quiet, log_format, config.engine)
    try:
        return train(
            config,
            run_dir=run_dir,
            resume=resume,
            data=data,
            on_step=reporter.step,
            on_eval=reporter.evaluation,
        )
    except KeyboardInterrupt:
        reporter.close()
        print(
            f"handgrad: stopped at once; the last checkpoint in {run_dir} is intact; "
            f"resume with: handgrad train --resume {run_dir}",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        reporter.close()


def _after(result: RunResult, args: argparse.Namespace, timing: bool) -> dict[str, float]:
    """Plots, timing and the summary of one finished run; returns measured extras."""
    extra: dict[str, float] = {}
    print(summary(result))
    if result.run_dir is not None and result.status != "diverged" and not args.no_plots:
        from handgrad.train.plots import write_plots

        paths = write_plots(result.run_dir, result.records, result.model, result.data)
        print("  plots: " + ", ".join(p.name for p in paths))
    if timing:
        config, data = result.config, result.data
        engine = make_engine(
            config,
            result.model,
            build_loss(config),
            build_optimizer(config, result.model, data.n_train),
        )
        forward, backward = time_forward_backward(engine, data.x_train, data.y_train)
        extra = {"forward_ms": 1000 * forward, "backward_ms": 1000 * backward}
        print(
            f"  forward + loss on {len(data.x_train):,} images: {extra['forward_ms']:.1f} ms "
            f"(notebook 124 ms); backward: {extra['backward_ms']:.1f} ms (notebook 279 ms); "
            "median of 5"
        )
    return extra


def _print_message(result: RunResult) -> None:
    if result.status == "interrupted":
        print(f"{result.message}; resume with: handgrad train --resume {result.run_dir}")
    elif result.status == "diverged":
        print(f"handgrad: {result.message}", file=sys.stderr)
    elif result.status == "early_stopped":
        print(f"  {result.message}")


def _figures_table(
    recipe: Recipe, measured: dict[str, tuple[list[dict[str, Any]], dict[str, float]]]
) -> str:
    engines = list(measured)
    lines = [f"{recipe.name}: expected vs measured"]
    header = (
        f"  {'figure':34s} {'expected':>12s} " + " ".join(f"{e:>12s}" for e in engines) + "  source"
    )
    lines.append(header)
    for fig in recipe.figures:
        values = [measure(fig.key, records, extra) for records, extra in measured.values()]
        row = f"  {fig.label:34s} {figure_text(fig.expected, fig.fmt):>12s} "
        row += " ".join(f"{figure_text(v, fig.fmt):>12s}" for v in values)
        lines.append(row + f"  {fig.source}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    given = vars(args)
    if args.resume:
        extra_options = sorted(
            k
            for k in FIELD_FLAGS
            | {"engine", "optimizer_option", "schedule_option", "augment_option"}
            if k in given and k not in RESUME_OPTIONS
        )
        if extra_options:
            flag = "--" + extra_options[0].replace("_", "-")
            raise HandgradError(
                f"{flag}: --resume continues a run exactly as configured; to change it, start a "
                f"new run with --config {args.resume}/config.json {flag} ..."
            )
        run_dir = rec.find_run(args.resume, args.out)
        config = TrainConfig.load(run_dir / rec.CONFIG).validate()
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        if "data_dir" in given:
            config = config.replace(data_dir=given["data_dir"])
        rec.load_checkpoint(run_dir / rec.CHECKPOINT)  # a damaged checkpoint fails here
        recipe = RECIPES.get(config.recipe or "")
        data = load_data(config)
        log_format = recipe.log_format if recipe else DEFAULT_LOG
        result = _run_one(config, args, log_format, run_dir=run_dir, resume=True, data=data)
        _print_message(result)
        _after(result, args, timing=False)
        if recipe is not None:
            print(_figures_table(recipe, {config.engine: (result.records, {})}))
        return _exit_code(result)

    config, recipe = config_from_args(args)
    recipe = recipe or RECIPES.get(config.recipe or "")  # a recipe run's own config.json
    if config.threads is not None:
        torch.set_num_threads(config.threads)  # also for loading, plots and timings
    engines = ["handgrad", "autograd"] if given.get("engine") == "both" else [config.engine]
    rec.check_writable(args.out)
    data = load_data(config)
    preflight(config, data)
    log_format = recipe.log_format if recipe else DEFAULT_LOG
    measured: dict[str, tuple[list[dict[str, Any]], dict[str, float]]] = {}
    results = []
    for engine in engines:
        run_config = config.replace(engine=engine)
        name = run_config.name if len(engines) == 1 else f"{run_config.name}-{engine}"
        run_dir = rec.new_run_dir(args.out, name)
        if len(engines) > 1 and not args.quiet:
            print(f"== engine {engine} ==")
        result = _run_one(run_config, args, log_format, run_dir=run_dir, resume=False, data=data)
        _print_message(result)
        extra = _after(result, args, timing=bool(recipe and recipe.timing))
        measured[engine] = (result.records, extra)
        results.append(result)
        if result.status == "interrupted":
            break
    if recipe is not None:
        print(_figures_table(recipe, measured))
    return max(_exit_code(r) for r in results)


def _exit_code(result: RunResult) -> int:
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    if result.status == "diverged":
        return EXIT_DIVERGED
    return 0
