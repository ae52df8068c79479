"""``handgrad check``: check every hand-written gradient of an MLP or of your own module.

Prints the gradient table and one verdict line (or, with ``--json``, one JSON object).
Exit status: 0 every gradient is right, 1 a gradient is wrong (or nothing could be proven),
2 bad usage or a file that cannot be loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import torch

from handgrad import nn
from handgrad.check import gradcheck
from handgrad.check.gradcheck import REFERENCES
from handgrad.cli import check_function, check_guard
from handgrad.errors import HandgradError
from handgrad.nn.mlp import ACTIVATIONS, NORMS

LOSSES = ("mse", "sse", "cross_entropy", "nll", "none")
DTYPES = {"float64": torch.float64, "float32": torch.float32}

_DESCRIPTION = """\
Check every hand-written gradient against autograd (the torch.nn twin) and kink-aware float64
finite differences. Each layer is checked in isolation, fed the reference's upstream gradient,
so the first faulty layer is named and its bug diagnosed (a factor 2 or 1/N, a sign, a
transpose, a bias not summed over the batch, a gradient not accumulated, ...).

Either build an MLP from a spec (--model 784-50-10), or check your own handgrad.nn.Module
subclass from your own file (--module my_layer.py:MyLinear --input-shape 7,5). A module that
defines its own forward has no torch.nn twin and is checked by finite differences alone.

Or check your own backward pass written as plain functions or notebook code (fastai's .g,
Fleuret's accumulated dl_d*, backprop ninja's dlogits...) from a file: --function FILE (below).

Exit status: 0 all gradients right, 1 a gradient is wrong, 2 bad usage or unloadable file."""

_EPILOG = (
    """\
examples:
  handgrad check --model 784-50-10 --act tanh --loss mse
  handgrad check --model 20-16-16-5 --norm batchnorm --loss cross_entropy --dtype float32
  handgrad check --module my_layer.py:MyLinear --input-shape 7,5 --json
  handgrad check --function examples/ninja_style.py

"""
    + check_function.CONTRACT
)


def register(subparsers: Any) -> None:
    """Add the ``check`` sub-command."""
    p = subparsers.add_parser(
        "check",
        help="check hand-written gradients and name the faulty layer",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--model", metavar="SPEC", help="an MLP from its layer widths, e.g. 784-50-10"
    )
    what.add_argument(
        "--module",
        metavar="FILE:CLASS",
        help="your handgrad.nn.Module subclass CLASS from the Python file FILE. The file is "
        "imported (its top-level code runs: importing your code is the point, so check only "
        "files you trust); CLASS is constructed with no arguments, or with --args",
    )
    what.add_argument("--function", metavar="FILE", help=check_function.HELP)
    p.add_argument(
        "--act",
        default="relu",
        choices=[a for a in ACTIVATIONS if a != "none"],
        help="hidden activation of --model (default relu)",
    )
    p.add_argument(
        "--out-act",
        default="none",
        choices=ACTIVATIONS,
        help="activation after the last layer of --model (default none)",
    )
    p.add_argument(
        "--norm",
        default="none",
        choices=NORMS,
        help="normalization after each hidden Linear of --model (default none)",
    )
    p.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="dropout after each hidden activation of --model (default 0)",
    )
    p.add_argument(
        "--loss",
        choices=LOSSES,
        default=None,
        help="loss on the output: mse (default for --model), sse, cross_entropy, "
        "nll, or none: a random upstream gradient (default for --module)",
    )
    p.add_argument(
        "--input-shape",
        metavar="N,D,...",
        help="shape of the random input for --module, e.g. 7,5 (default: 4 rows of "
        "the module's in_features, if it has them)",
    )
    p.add_argument(
        "--args",
        metavar="JSON",
        help="constructor arguments for --module: a JSON list (positional) or "
        "object (keywords), e.g. '[5, 3]'",
    )
    p.add_argument(
        "--batch", type=int, default=4, help="rows in the random input batch of --model (default 4)"
    )
    p.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default="float64",
        help="dtype to check in; tolerances follow it (default float64)",
    )
    p.add_argument(
        "--reference",
        choices=REFERENCES,
        default="both",
        help="autograd, fd (finite differences) or both (default)",
    )
    p.add_argument(
        "--fd-samples",
        type=int,
        default=24,
        help="coordinates per gradient checked by finite differences (default 24)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the model, the input, the targets and the sampling (default 0)",
    )
    p.add_argument(
        "--eval",
        action="store_true",
        help="check in eval mode (Dropout off, BatchNorm on running statistics)",
    )
    p.add_argument(
        "--json", action="store_true", help="print exactly one JSON object instead of the table"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build what to check, check it, print the report; 0 if every gradient is right, else 1."""
    if getattr(args, "function", None) is not None:
        return check_function.run(args)
    check_guard.check_args(args)
    if args.module is not None:
        return check_guard.run_module_in_child(args)
    report = make_report(args)
    print(report.to_json() if args.json else report)
    return 0 if report.ok else 1


def make_report(args: argparse.Namespace) -> Any:
    """The gradient report of ``--model`` or ``--module`` (in the process that calls it)."""
    dtype = DTYPES[args.dtype]
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(args.seed)
        gen = torch.Generator().manual_seed(args.seed)
        if args.model is not None:
            model, x = _mlp(args, gen)
            loss_name = args.loss or "mse"
        else:
            model, x = _user_module(args, gen)
            loss_name = args.loss or "none"
        if args.eval:
            model.eval()
        loss, target = _loss_and_target(loss_name, model, x, dtype, gen, args.module)
        try:
            report = gradcheck(
                model,
                loss,
                x,
                target,
                reference=args.reference,
                dtype=dtype,
                fd_samples=args.fd_samples,
                seed=args.seed,
            )
        except (ValueError, TypeError, HandgradError):
            raise
        except Exception as exc:  # the user's forward failed: one line, no traceback
            raise HandgradError(f"{args.module or args.model}: {_one_line(exc)}") from None
    return report


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _mlp(args: argparse.Namespace, gen: torch.Generator) -> tuple[nn.Module, torch.Tensor]:
    sizes = nn.parse_sizes(args.model)
    model = nn.mlp(sizes, args.act, out_act=args.out_act, norm=args.norm, dropout=args.dropout)
    x = torch.randn(args.batch, sizes[0], generator=gen, dtype=torch.float64)
    return model, x


def _user_module(args: argparse.Namespace, gen: torch.Generator) -> tuple[nn.Module, torch.Tensor]:
    cls = load_class(args.module)
    module = _construct(cls, args.module, args.args)
    shape = _input_shape(args.input_shape, module, args.module)
    return module, torch.randn(shape, generator=gen, dtype=torch.float64)


def load_class(spec: str) -> type[nn.Module]:
    """Import ``FILE.py`` and return its ``CLASS``, a handgrad.nn.Module subclass.

    Raises:
        HandgradError: the spec, the file, the import or the class is not usable.
    """
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise HandgradError(
            f"--module: expected FILE.py:CLASS, e.g. my_layer.py:MyLinear, got {spec!r}"
        )
    path = Path(path_text)
    if not path.is_file():
        raise HandgradError(f"--module: no such file: {path}")
    module_name = f"_handgrad_user_{abs(hash(str(path.resolve())))}"
    spec_obj = importlib.util.spec_from_file_location(module_name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise HandgradError(f"--module: {path} is not a Python file that can be imported")
    user = importlib.util.module_from_spec(spec_obj)
    sys.modules[module_name] = user
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec_obj.loader.exec_module(user)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(module_name, None)
        raise HandgradError(f"--module: cannot import {path}: {_one_line(exc)}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(path.resolve().parent))
    cls = getattr(user, name, None)
    if cls is None:
        found = sorted(
            k for k, v in vars(user).items() if isinstance(v, type) and issubclass(v, nn.Module)
        )
        hint = f"; it defines {', '.join(found)}" if found else ""
        raise HandgradError(f"--module: {path} has no class {name}{hint}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise HandgradError(f"--module: {name} in {path} is not a handgrad.nn.Module subclass")
    if issubclass(cls, nn.Loss):
        raise HandgradError(
            f"--module: {name} is a loss; check it on a model with "
            "handgrad.check.gradcheck(model, {name}(), x, target) instead"
        )
    return cls


def _construct(cls: type[nn.Module], spec: str, args_json: str | None) -> nn.Module:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if args_json is not None:
        try:
            parsed = json.loads(args_json)
        except json.JSONDecodeError as exc:
            raise HandgradError(f"--args: not valid JSON ({exc.msg}): {args_json!r}") from None
        if isinstance(parsed, list):
            args = parsed
        elif isinstance(parsed, dict):
            kwargs = parsed
        else:
            raise HandgradError(f"--args: expected a JSON list or object, got {args_json!r}")
    try:
        return cls(*args, **kwargs)
    except Exception as exc:
        how = "with --args " + args_json if args_json else "without arguments"
        raise HandgradError(
            f"--module {spec}: the class must be constructible {how} (or give its arguments "
            f"with --args '[5, 3]'); constructing it raised {_one_line(exc)}"
        ) from None


def _input_shape(text: str | None, module: nn.Module, spec: str) -> tuple[int, ...]:
    if text is None:
        features = getattr(module, "in_features", None)
        if isinstance(features, int):
            return (4, features)
        raise HandgradError(
            f"--module {spec}: give the input's shape with --input-shape, e.g. --input-shape 7,5"
        )
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        raise HandgradError(
            f"--input-shape: expected sizes joined by commas, like 7,5, got {text!r}"
        ) from None
    if not shape or any(s <= 0 for s in shape):
        raise HandgradError(f"--input-shape: sizes must be positive, got {text!r}")
    check_guard.check_input_memory(shape)
    return shape


def _loss_and_target(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    dtype: torch.dtype,
    gen: torch.Generator,
    spec: str | None,
) -> tuple[nn.Loss | None, torch.Tensor | None]:
    if name == "none":
        return None, None
    probe = copy.deepcopy(model).to(dtype=dtype)
    try:
        out = probe(x.to(dtype))
    except (ValueError, TypeError, HandgradError):
        raise
    except Exception as exc:
        raise HandgradError(f"{spec}: forward failed: {_one_line(exc)}") from None
    if name in ("mse", "sse"):
        loss: nn.Loss = nn.MSELoss() if name == "mse" else nn.SumSquaredLoss()
        return loss, torch.randn(out.shape, generator=gen, dtype=torch.float64)
    if out.dim() != 2:
        raise HandgradError(
            f"--loss {name}: needs a model output of shape (N, C), got {tuple(out.shape)}"
        )
    n, c = out.shape
    target = torch.randint(0, c, (n,), generator=gen)
    return (nn.CrossEntropyLoss() if name == "cross_entropy" else nn.NLLLoss()), target
