"""A parameter gradient with a kept dimension (``g.sum(0, keepdim=True)`` for a bias), in a
``handgrad.nn.Module``: torch refuses it, and the layer's other gradients are still checked.

torch refuses a ``.grad`` of shape (1, D) on a parameter of shape (D,), assigned or added in
place, so the layer's backward raises before its other gradients are written. ``retry`` runs
the backward again with the parameter replaced, for that one call, by a stand-in of the kept
shape (the forward broadcasts it the same way: ``x @ W.T + b`` with b of shape (1, D)); the
other gradients then come out as the backward computes them, and the kept one is checked
by its values. ``mark`` turns that row into the diagnosis: the kept dimension, named as such.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from handgrad import nn
from handgrad.check.compare import ERROR, OK
from handgrad.check.diagnose import KEPT_DIM, Diagnosis, error_shapes
from handgrad.check.report import GradRow


def kept_only(got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """Whether ``got`` is ``want`` with extra dimensions of size 1 (and nothing else)."""
    return (
        len(got) > len(want)
        and math.prod(got) == math.prod(want)
        and tuple(s for s in got if s != 1) == tuple(s for s in want if s != 1)
    )


@dataclass(frozen=True)
class Retry:
    """The second run: the kept parameter's name and shape, every gradient, the input's."""

    local: str
    got: tuple[int, ...]
    grads: dict[str, Tensor | None]
    input_grad: Tensor | None
    error: BaseException


def retry(
    module: nn.Module,
    x: Tensor,
    upstream: Tensor,
    error: BaseException,
    seed: Callable[[], None],
) -> Retry | None:
    """Run the backward again with the refused parameter's stand-in of the kept shape; None
    when the error is not a kept dimension, the parameter is ambiguous, or it raises again."""
    shapes = error_shapes(error)
    if shapes is None or not kept_only(*shapes):
        return None
    got, want = shapes
    params = dict(module.named_parameters())
    matches = [n for n, p in params.items() if "." not in n and tuple(p.shape) == want]
    if len(matches) != 1:
        return None
    local = matches[0]
    real = params[local]
    standin = real.detach().clone().reshape(got)
    standin.grad = torch.zeros_like(standin)
    for p in params.values():
        p.grad = torch.zeros_like(p)
    saved = {n: b.detach().clone() for n, b in module.named_buffers()}
    setattr(module, local, standin)
    try:
        seed()
        module(x.clone())
        input_grad = module.backward(upstream.clone())
    except Exception:
        return None
    finally:
        setattr(module, local, real)
        for n, b in module.named_buffers():
            if n in saved and b.shape == saved[n].shape:
                b.copy_(saved[n])
    grads: dict[str, Tensor | None] = {
        n: (p.grad.detach().clone() if p.grad is not None else None) for n, p in params.items()
    }
    kept = standin.grad
    grads[local] = kept.detach().reshape(want).clone() if kept is not None else None
    return Retry(local, got, grads, input_grad, error)


def mark(rows: list[GradRow], name: str, found: Retry) -> None:
    """Give the kept parameter's row its diagnosis: the kept dimension, and its values."""
    for row in rows:
        if row.name != name:
            continue
        want = row.expected_shape
        row.shape = found.got
        refused = str(found.error).strip().splitlines()[0]
        head = (
            f"{name}: backward gave a gradient of shape {found.got} for a parameter of shape "
            f"{want}, which torch refuses (RuntimeError: {refused}): drop the kept dimension, "
            "e.g. g.sum(0) instead of g.sum(0, keepdim=True)"
        )
        if row.verdict == OK:
            row.verdict = ERROR
            row.diagnosis = Diagnosis(KEPT_DIM, f"{head}; its values are right once it is dropped")
        elif row.diagnosis is not None:
            row.diagnosis = Diagnosis(
                row.diagnosis.pattern,
                f"{head}; and its values are wrong too: {row.diagnosis.message}",
            )
        else:
            row.verdict = ERROR
            row.diagnosis = Diagnosis(KEPT_DIM, f"{head}; and its values are wrong too")
