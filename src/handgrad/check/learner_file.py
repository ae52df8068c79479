"""A learner's backprop file, checked: the small contract behind ``handgrad check --function``.

The file (a plain Python file) defines three functions::

    def make_inputs() -> dict[str, Tensor]:
        # everything the loss depends on: parameters and data, integer targets included
    def forward(**inputs) -> loss | (loss, intermediates):
        # the forward pass in plain torch operations; intermediates: dict name -> tensor
    def backward(**inputs_and_intermediates) -> dict[str, Tensor]:
        # your backward pass: name -> dL/d(name), for any inputs and intermediates

``check_file`` seeds torch (``torch.manual_seed(seed)``), imports the file (its top-level code
runs; a ``if __name__ == "__main__":`` block does not), calls ``make_inputs()``, runs
``forward`` on copies of the inputs, calls ``backward`` with the inputs and the intermediates
as keyword arguments, and checks the gradients it returns with ``check_gradients``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from handgrad.check.learner import LearnerReport, check_gradients, split_output
from handgrad.check.user_file import import_file, one_line
from handgrad.errors import HandgradError

CONTRACT = ("make_inputs", "forward", "backward")


def load(path: Path) -> ModuleType:
    """Import the learner's file (its top-level code runs) and check it defines the contract.

    Raises:
        HandgradError: no such file, an import that fails, or a missing function.
    """
    module = import_file(path, "--function", "_handgrad_learner_")
    missing = [f for f in CONTRACT if not callable(getattr(module, f, None))]
    if missing:
        raise HandgradError(
            f"--function: {path} must define {', '.join(f'{m}()' for m in missing)} "
            "(see 'handgrad check --help' for the contract)"
        )
    return module


def _call(what: str, path: Path, fn: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except HandgradError:
        raise
    except TypeError as exc:
        params = inspect.signature(fn).parameters
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        hint = "" if takes_all else " (it is called with keyword arguments; add **rest to take any)"
        raise HandgradError(f"--function {path}: {what} raised {one_line(exc)}{hint}") from None
    except Exception as exc:
        raise HandgradError(f"--function {path}: {what} raised {one_line(exc)}") from None


def check_file(
    path: Path, *, seed: int = 0, fd: bool | None = None, fd_samples: int = 12
) -> LearnerReport:
    """Import ``path``, run its backward and check it (see the module docstring).

    Raises:
        HandgradError: the file cannot be loaded or breaks the contract; ValueError from
            ``check_gradients`` (nothing compared, an unknown name) is turned into one too.
    """
    torch.manual_seed(seed)
    module = load(path)
    inputs = _call("make_inputs()", path, module.make_inputs)
    if not isinstance(inputs, Mapping) or not inputs:
        raise HandgradError(
            f"--function {path}: make_inputs() must return a non-empty dict name -> tensor, "
            f"got {type(inputs).__name__}"
        )
    copies = {
        k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()
    }
    with torch.no_grad():
        out = _call("forward(**inputs)", path, module.forward, **copies)
    try:
        _, intermediates = split_output(out)
    except ValueError as exc:
        raise HandgradError(f"--function {path}: {exc}") from None
    clash = sorted(set(intermediates) & set(copies))
    if clash:
        raise HandgradError(
            f"--function {path}: {', '.join(clash)} is both an input and an intermediate"
        )
    with torch.no_grad():
        grads = _call(
            "backward(**inputs, **intermediates)",
            path,
            module.backward,
            **copies,
            **intermediates,
        )
    if not isinstance(grads, Mapping):
        raise HandgradError(
            f"--function {path}: backward must return a dict name -> gradient, got "
            f"{type(grads).__name__}"
        )
    try:
        return check_gradients(
            module.forward, inputs, grads, fd=fd, fd_samples=fd_samples, seed=seed
        )
    except ValueError as exc:
        raise HandgradError(f"--function {path}: {exc}") from None
