"""Every module of handgrad.nn, through every constructor option and input shape torch.nn
documents for it, in train and eval mode, against the torch.nn module with the same state:
forward, input gradient, parameter gradients and running statistics, float64, within 1e-10."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from handgrad import nn

TOL = 1e-10
D = torch.float64


def _close(a: Tensor | None, b: Tensor | None, what: str) -> None:
    assert a is not None and b is not None, what
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs torch {tuple(b.shape)}"
    if a.is_floating_point():
        err = (a - b).abs().max().item() if a.numel() else 0.0
        scale = max(b.abs().max().item() if b.numel() else 0.0, 1.0)
        assert err <= TOL * scale, f"{what}: max difference {err:.3e}"
    else:
        assert torch.equal(a, b), what


def _randomize(module: nn.Module, gen: torch.Generator) -> None:
    for _, p in module.named_parameters():
        p.copy_(torch.randn(p.shape, generator=gen, dtype=D))


def _against_torch(
    ours: nn.Module, theirs: torch.nn.Module, x: Tensor, train: bool, steps: int = 1
) -> None:
    """``steps`` forward/backward rounds of both modules from the same state, compared."""
    gen = torch.Generator().manual_seed(7)
    ours.to(dtype=D)
    _randomize(ours, gen)
    for _name, b in ours.named_buffers():
        if b.is_floating_point():
            b.copy_(torch.rand(b.shape, generator=gen, dtype=D) + 0.5)
    theirs = theirs.to(D)
    theirs.load_state_dict({k: v.clone() for k, v in ours.state_dict().items()})
    ours.train(train)
    theirs.train(train)
    for step in range(steps):
        seed = 100 + step
        torch.manual_seed(seed)
        out = ours(x)
        x_t = x.detach().clone().requires_grad_(True)
        torch.manual_seed(seed)
        out_t = theirs(x_t)
        _close(out, out_t.detach(), "forward")
        r = torch.randn(out.shape, generator=gen, dtype=D)
        ours.zero_grad()
        theirs.zero_grad()
        grad_x = ours.backward(r, input_grad=True)
        (out_t * r).sum().backward()
        _close(grad_x, x_t.grad, "input gradient")
        mine = dict(ours.named_parameters())
        for name, p in theirs.named_parameters():
            _close(mine[name].grad, p.grad, f"{name} gradient")
        ours_buffers = dict(ours.named_buffers())
        theirs_buffers = dict(theirs.named_buffers())
        assert set(ours_buffers) == set(theirs_buffers)
        for name, b in theirs_buffers.items():
            _close(ours_buffers[name], b, name)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def _x(*shape: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape) + 1), dtype=D)


Case = tuple[str, Callable[[], nn.Module], Callable[[], torch.nn.Module], tuple[int, ...]]
CASES: list[Case] = []

for bias, shape in itertools.product([True, False], [(4,), (3, 4), (1, 4), (2, 3, 4), (0, 4)]):
    CASES.append(
        (
            f"Linear(bias={bias}){shape}",
            lambda b=bias: nn.Linear(4, 5, bias=b),
            lambda b=bias: torch.nn.Linear(4, 5, bias=b),
            shape,
        )
    )

ACTIVATIONS: list[tuple[str, Callable[[], nn.Module], Callable[[], torch.nn.Module]]] = [
    ("ReLU", nn.ReLU, torch.nn.ReLU),
    ("LeakyReLU(0.2)", lambda: nn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2)),
    ("Tanh", nn.Tanh, torch.nn.Tanh),
    ("Sigmoid", nn.Sigmoid, torch.nn.Sigmoid),
    ("GELU", nn.GELU, torch.nn.GELU),
    ("GELU(tanh)", lambda: nn.GELU("tanh"), lambda: torch.nn.GELU(approximate="tanh")),
    ("Dropout(0.3)", lambda: nn.Dropout(0.3), lambda: torch.nn.Dropout(0.3)),
]
for (name, ours, theirs), shape in itertools.product(ACTIVATIONS, [(), (5,), (2, 3), (2, 3, 4)]):
    CASES.append((f"{name}{shape}", ours, theirs, shape))

for kind, shape in itertools.product(["Softmax", "LogSoftmax"], [(), (5,), (2, 3), (2, 3, 4)]):
    for dim in sorted({0, -1, *range(len(shape))}):
        CASES.append(
            (
                f"{kind}(dim={dim}){shape}",
                lambda k=kind, d=dim: getattr(nn, k)(dim=d),
                lambda k=kind, d=dim: getattr(torch.nn, k)(dim=d),
                shape,
            )
        )

for (start, end), shape in itertools.product([(1, -1), (0, 1), (0, -1), (1, 2)], [(2, 3, 4)]):
    CASES.append(
        (
            f"Flatten({start}, {end}){shape}",
            lambda s=start, e=end: nn.Flatten(s, e),
            lambda s=start, e=end: torch.nn.Flatten(s, e),
            shape,
        )
    )

for affine, bias, track, momentum, shape in itertools.product(
    [True, False], [True, False], [True, False], [0.1, None], [(6, 3), (4, 3, 5)]
):
    if bias and not affine:
        continue
    kw = {"affine": affine, "track_running_stats": track, "momentum": momentum}
    CASES.append(
        (
            f"BatchNorm1d({kw}, bias={bias}){shape}",
            lambda kw=kw, b=bias: nn.BatchNorm1d(3, **kw, bias=b),  # type: ignore[arg-type]
            lambda kw=kw, b=bias: torch.nn.BatchNorm1d(3, **kw, bias=b),  # type: ignore[arg-type]
            shape,
        )
    )

for norm_shape, shapes in [((4,), [(4,), (3, 4), (2, 5, 4)]), ((3, 4), [(3, 4), (2, 3, 4)])]:
    for affine, bias, shape in itertools.product([True, False], [True, False], shapes):
        CASES.append(
            (
                f"LayerNorm({norm_shape}, elementwise_affine={affine}, bias={bias}){shape}",
                lambda n=norm_shape, a=affine, b=bias: nn.LayerNorm(
                    n, elementwise_affine=a, bias=b
                ),
                lambda n=norm_shape, a=affine, b=bias: torch.nn.LayerNorm(
                    n, elementwise_affine=a, bias=b
                ),
                shape,
            )
        )


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_module_equals_torch(case: Case, train: bool) -> None:
    _, ours, theirs, shape = case
    steps = 3 if "BatchNorm1d" in case[0] else 1  # momentum=None averages over the steps
    _against_torch(ours(), theirs(), _x(*shape), train, steps)


def _class_target(shape: tuple[int, ...], probabilities: bool, ignore: int) -> Tensor:
    gen = torch.Generator().manual_seed(3)
    c = shape[1] if len(shape) > 1 else shape[0]
    if probabilities:
        t = torch.rand(shape, generator=gen, dtype=D)
        return t / t.sum(1 if len(shape) > 1 else 0, keepdim=True)
    batch = (shape[0], *shape[2:]) if len(shape) > 1 else ()
    t = torch.randint(0, c, batch, generator=gen)
    if t.dim():
        t.view(-1)[0] = ignore  # one position ignored (or, for ignore_index=1, class 1)
    return t


LOSS_CASES = [
    (kind, shape, prob, weighted, ignore, eps, reduction)
    for kind, shape, prob, weighted, ignore, eps, reduction in itertools.product(
        ["CrossEntropyLoss", "NLLLoss"],
        [(5, 4), (3, 4, 2, 3), (2, 4, 3), (4,)],
        [False, True],
        [False, True],
        [-100, 1],
        [0.0, 0.2],
        ["mean", "sum", "none"],
    )
    if not (prob and ignore == 1) and not (kind == "NLLLoss" and (prob or eps))
]


@pytest.mark.parametrize("case", LOSS_CASES, ids=[str(c) for c in LOSS_CASES])
def test_class_loss_equals_torch(case: tuple) -> None:  # type: ignore[type-arg]
    kind, shape, prob, weighted, ignore, eps, reduction = case
    c = shape[1] if len(shape) > 1 else shape[0]
    x = _x(*shape)
    target = _class_target(shape, prob, ignore)
    weight = torch.rand(c, generator=torch.Generator().manual_seed(5), dtype=D) + 0.1
    kw: dict[str, object] = {"ignore_index": ignore, "reduction": reduction}
    if weighted:
        kw["weight"] = weight
    if kind == "CrossEntropyLoss":
        kw["label_smoothing"] = eps
    ours = getattr(nn, kind)(**kw)
    theirs = getattr(torch.nn, kind)(**kw)
    x_t = x.clone().requires_grad_(True)
    value_t = theirs(x_t, target)
    value = ours(x, target)
    _close(value, value_t.detach(), "loss")
    upstream = torch.randn(value_t.shape, generator=torch.Generator().manual_seed(9), dtype=D)
    value_t.backward(upstream)
    grad = ours.backward(upstream if reduction == "none" else upstream.item())
    _close(grad, x_t.grad, "input gradient")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(), (3,), (2, 3)], ids=str)
def test_mse_equals_torch(shape: tuple[int, ...], reduction: str) -> None:
    x, target = _x(*shape) if shape else torch.tensor(0.7, dtype=D), torch.zeros(shape, dtype=D)
    x_t = x.clone().requires_grad_(True)
    value_t = torch.nn.MSELoss(reduction=reduction)(x_t, target)
    ours = nn.MSELoss(reduction=reduction)
    _close(ours(x, target), value_t.detach(), "loss")
    upstream = torch.randn(value_t.shape, dtype=D)
    value_t.backward(upstream)
    grad = ours.backward(upstream if reduction == "none" else upstream.item())
    _close(grad, x_t.grad, "input gradient")
