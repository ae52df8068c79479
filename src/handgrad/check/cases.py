"""What ``handgrad check`` checks, built from plain arguments: an MLP from its spec, or a user's
``handgrad.nn.Module`` subclass from a file, with its random input, loss and target.

``check_mlp("784-50-10", act="tanh", loss="mse")`` and ``check_module("my_layer.py:MyLinear",
input_shape="7,5")`` return the ``GradReport`` of ``gradcheck``; ``check_options`` refuses
meaningless options first, and ``exit_code`` turns a report into the command's exit status.
Everything random is drawn from ``seed`` (the model's init from torch's default generator,
forked so the caller's stream is untouched; the input, the targets and the sampling from a
generator of their own), so the same arguments give the same report.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from handgrad import nn
from handgrad.check.gradcheck import gradcheck
from handgrad.check.report import GradReport
from handgrad.check.user_file import import_file, one_line
from handgrad.errors import HandgradError, did_you_mean
from handgrad.limits import check_memory, mlp_memory

DTYPES = {"float64": torch.float64, "float32": torch.float32}
LOSSES = ("mse", "sse", "cross_entropy", "nll", "none")
# A check holds the input in float64 several times over (the model's, the twin's, finite
# differences' perturbed copies, the gradients): 8 copies bounds it from above.
COPIES = 8


def check_options(
    *,
    batch: int,
    fd_samples: int,
    dropout: float,
    seed: int,
    model: str | None = None,
    module_args: str | None = None,
    input_shape: str | None = None,
) -> None:
    """Refuse out-of-range or meaningless options (one line each), and an MLP that cannot be
    allocated, before anything is built.

    Raises:
        HandgradError: naming the option.
    """
    if batch < 1:
        raise HandgradError(f"--batch must be at least 1, got {batch}")
    if fd_samples < 1:
        raise HandgradError(f"--fd-samples must be at least 1, got {fd_samples}")
    if not 0.0 <= dropout < 1.0:
        raise HandgradError(f"--dropout: expected a probability in [0, 1), got {dropout}")
    if seed < 0:
        raise HandgradError(f"--seed: expected an integer >= 0, got {seed}")
    if model is None:
        return
    for flag, value in (("--args", module_args), ("--input-shape", input_shape)):
        if value is not None:
            raise HandgradError(
                f"{flag}: applies to --module only; --model {model} builds its MLP from "
                "the spec (its input is --batch rows)"
            )
    check_memory(
        f"--model {model} --batch {batch}",
        mlp_memory(nn.parse_sizes(model), batch, 8, copies=COPIES),
        "use a smaller model or --batch",
    )


def exit_code(report: Any) -> int:
    """The exit status of a check: 0 every gradient is right, 1 one is wrong (or nothing could
    be proven)."""
    return 0 if report.ok else 1


def check_mlp(
    spec: str,
    *,
    act: str = "relu",
    out_act: str = "none",
    norm: str = "none",
    dropout: float = 0.0,
    batch: int = 4,
    loss: str | None = None,
    dtype: str = "float64",
    reference: str = "both",
    fd_samples: int = 24,
    seed: int = 0,
    eval_mode: bool = False,
) -> GradReport:
    """The gradient report of the MLP ``spec`` (``"784-50-10"``) on ``batch`` random rows, with
    the loss ``loss`` (default ``"mse"``; ``"none"``: a random upstream gradient)."""

    def build(gen: torch.Generator) -> tuple[nn.Module, torch.Tensor]:
        sizes = nn.parse_sizes(spec)
        model = nn.mlp(sizes, act, out_act=out_act, norm=norm, dropout=dropout)
        return model, torch.randn(batch, sizes[0], generator=gen, dtype=torch.float64)

    return _check(build, spec, None, loss or "mse", dtype, reference, fd_samples, seed, eval_mode)


def check_module(
    spec: str,
    *,
    module_args: str | None = None,
    input_shape: str | None = None,
    loss: str | None = None,
    dtype: str = "float64",
    reference: str = "both",
    fd_samples: int = 24,
    seed: int = 0,
    eval_mode: bool = False,
) -> GradReport:
    """The gradient report of the class ``spec`` (``"my_layer.py:MyLinear"``), constructed with
    ``module_args`` (a JSON list or object; none by default), on a random input of
    ``input_shape`` (``"7,5"``; default 4 rows of its ``in_features``). The file is imported in
    this process (its top-level code runs); ``check.isolated`` runs this in a child.
    ``loss`` defaults to ``"none"``: a random upstream gradient."""

    def build(gen: torch.Generator) -> tuple[nn.Module, torch.Tensor]:
        module = construct(load_class(spec), spec, module_args)
        shape = parse_input_shape(input_shape, module, spec)
        return module, torch.randn(shape, generator=gen, dtype=torch.float64)

    return _check(build, spec, spec, loss or "none", dtype, reference, fd_samples, seed, eval_mode)


def _check(
    build: Callable[[torch.Generator], tuple[nn.Module, torch.Tensor]],
    what: str,
    module_spec: str | None,
    loss_name: str,
    dtype_name: str,
    reference: str,
    fd_samples: int,
    seed: int,
    eval_mode: bool,
) -> GradReport:
    """``gradcheck`` of what ``build(gen)`` makes, seeded; an error of the user's code (not
    one of handgrad's own) becomes one line headed by ``what``."""
    for kind, name, names in (("loss", loss_name, LOSSES), ("dtype", dtype_name, DTYPES)):
        if name not in names:
            raise ValueError(
                f"unknown {kind} {name!r}{did_you_mean(name, tuple(names))}; "
                f"choose from {', '.join(names)}"
            )
    dtype = DTYPES[dtype_name]
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model, x = build(gen)
        if eval_mode:
            model.eval()
        loss, target = loss_and_target(loss_name, model, x, dtype, gen, module_spec)
        try:
            return gradcheck(
                model,
                loss,
                x,
                target,
                reference=reference,
                dtype=dtype,
                fd_samples=fd_samples,
                seed=seed,
            )
        except (ValueError, TypeError, HandgradError):
            raise
        except Exception as exc:  # the user's forward failed: one line, no traceback
            raise HandgradError(f"{what}: {one_line(exc)}") from None


def module_file(spec: str) -> tuple[Path, str]:
    """``"FILE.py:CLASS"`` -> ``(Path("FILE.py"), "CLASS")``, the file checked to exist.

    Raises:
        HandgradError: not of that form, or no such file.
    """
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise HandgradError(
            f"--module: expected FILE.py:CLASS, e.g. my_layer.py:MyLinear, got {spec!r}"
        )
    path = Path(path_text)
    if not path.is_file():
        raise HandgradError(f"--module: no such file: {path}")
    return path, name


def load_class(spec: str) -> type[nn.Module]:
    """Import ``FILE.py`` (its top-level code runs) and return its ``CLASS``, a
    ``handgrad.nn.Module`` subclass that is not a loss.

    Raises:
        HandgradError: the spec, the file, the import or the class is not usable.
    """
    path, name = module_file(spec)
    user = import_file(path, "--module", "_handgrad_user_")
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


def construct(cls: type[nn.Module], spec: str, args_json: str | None) -> nn.Module:
    """``cls(*args)`` or ``cls(**kwargs)`` from ``args_json`` (a JSON list or object), or
    ``cls()`` without it.

    Raises:
        HandgradError: not JSON, neither a list nor an object, or the constructor raised.
    """
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
            f"with --args '[5, 3]'); constructing it raised {one_line(exc)}"
        ) from None


def parse_input_shape(text: str | None, module: nn.Module, spec: str) -> tuple[int, ...]:
    """``"7,5"`` (or ``"7x5"``) -> ``(7, 5)``; without text, ``(4, module.in_features)``.

    Raises:
        HandgradError: not positive sizes, no ``in_features`` to default to, or an input too
            large for the memory available.
    """
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
    check_memory(
        "--input-shape " + ",".join(map(str, shape)),
        COPIES * 8 * math.prod(shape),
        "use a smaller input",
    )
    return shape


def loss_and_target(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    dtype: torch.dtype,
    gen: torch.Generator,
    spec: str | None,
) -> tuple[nn.Loss | None, torch.Tensor | None]:
    """The loss ``name`` and a random target for ``model``'s output on ``x``: normal values
    of the output's shape for ``mse``/``sse``, class indices ``(N,)`` for an ``(N, C)`` output
    for ``cross_entropy``/``nll``; ``(None, None)`` for ``none``.

    Raises:
        HandgradError: the probe forward failed, or a class loss on an output not ``(N, C)``.
    """
    if name == "none":
        return None, None
    probe = copy.deepcopy(model).to(dtype=dtype)
    try:
        out = probe(x.to(dtype))
    except (ValueError, TypeError, HandgradError):
        raise
    except Exception as exc:
        raise HandgradError(f"{spec}: forward failed: {one_line(exc)}") from None
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
