"""Every handgrad optimizer, every option, against torch.optim: 100 float64 steps to 1e-12.

Three orders of a training step are driven: torch's usual one (optimizer built before any
gradient, ``zero_grad()`` with its default, a fresh ``.grad`` tensor each step), the one
handgrad's backward gives under ``set_to_none`` (each ``.grad`` re-attached as its slot of a
flat gradient buffer, so the flat path runs), and handgrad's in-place order (``.grad``
preallocated, zeroed in place, accumulated into).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import handgrad.optim as ho

SHAPES = [(5, 3), (3,), (4, 5), ()]

CASES: list[tuple[str, dict[str, Any]]] = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "maximize": True}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "maximize": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "maximize": True}),
    ("RMSprop", {"lr": 0.01, "centered": True}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1}),
    ("Adagrad", {"initial_accumulator_value": 0.1, "eps": 1e-6, "maximize": True}),
    ("Adamax", {}),
    ("Adamax", {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {}),
    ("NAdam", {"weight_decay": 0.1, "momentum_decay": 1e-2}),
    ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("RAdam", {}),
    ("RAdam", {"weight_decay": 0.1, "betas": (0.8, 0.99)}),
    ("RAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.1, "maximize": True}),
    ("Rprop", {}),
    ("Rprop", {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-4, 0.1), "maximize": True}),
    ("ASGD", {}),
    ("ASGD", {"lr": 0.05, "lambd": 1e-3, "alpha": 0.5, "t0": 10, "weight_decay": 0.1}),
    ("ASGD", {"t0": 0, "maximize": True}),
]
IDS = [f"{name}-{'-'.join(map(str, kw)) or 'defaults'}" for name, kw in CASES]
HAS_FUSED = {"SGD", "Adam", "AdamW", "RMSprop"}


def flat_params(init: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Parameters and grad slots as views of one flat buffer each (``flatten_parameters``)."""
    flat = torch.cat([t.reshape(-1) for t in init])
    flat_grad = torch.zeros_like(flat)
    params, slots, start = [], [], 0
    for t in init:
        n = t.numel()
        params.append(flat[start : start + n].view(t.shape))
        slots.append(flat_grad[start : start + n].view(t.shape))
        start += n
    return params, slots


def run(
    name: str, options: dict[str, Any], order: str, fused: bool | None, steps: int = 100
) -> float:
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, dtype=torch.float64, generator=gen) for s in SHAPES]
    mine, slots = flat_params(init)
    theirs = [t.clone().requires_grad_() for t in init]
    extra = {"fused": fused} if name in HAS_FUSED else {}
    if order == "inplace":
        for p, slot in zip(mine, slots, strict=True):
            p.grad = slot
    opt = getattr(ho, name)(mine, **options, **extra)
    ref = getattr(torch.optim, name)(theirs, **options, foreach=False)
    for _ in range(steps):
        grads = [torch.randn(s, dtype=torch.float64, generator=gen) for s in SHAPES]
        ref.zero_grad()
        for q, g in zip(theirs, grads, strict=True):
            q.grad = g.clone()
        if order == "inplace":
            opt.zero_grad(set_to_none=False)
            for slot, g in zip(slots, grads, strict=True):
                slot += g
        else:
            opt.zero_grad()
            assert all(p.grad is None for p in mine)
            for p, slot, g in zip(mine, slots, grads, strict=True):
                if order == "torch":
                    p.grad = g.clone()
                else:  # what handgrad's backward does when it finds .grad None
                    p.grad = slot
                    slot.copy_(g)
        opt.step()
        ref.step()
    return max((p - q).abs().max().item() for p, q in zip(mine, theirs, strict=True))


# Optimizers with a compiled loop run both engines; the others have the torch operations only.
ENGINES = [
    pytest.param(
        name, options, fused, id=f"{case_id}-{'torch-ops' if fused is False else 'default'}"
    )
    for (name, options), case_id in zip(CASES, IDS, strict=True)
    for fused in ([None, False] if name in HAS_FUSED else [None])
]


@pytest.mark.parametrize("order", ["torch", "reattach", "inplace"])
@pytest.mark.parametrize(("name", "options", "fused"), ENGINES)
def test_100_float64_steps_match_torch(
    name: str, options: dict[str, Any], order: str, fused: bool | None
) -> None:
    assert run(name, options, order, fused) <= 1e-12


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_param_groups_match_torch_and_keep_torch_keys(name: str, options: dict[str, Any]) -> None:
    gen = torch.Generator().manual_seed(1)
    init = [torch.randn(s, dtype=torch.float64, generator=gen) for s in SHAPES]
    mine = [t.clone() for t in init]
    theirs = [t.clone().requires_grad_() for t in init]
    lr = options.get("lr", getattr(torch.optim, name)([theirs[0]]).defaults["lr"])

    def groups(ps: list[torch.Tensor]) -> list[dict[str, Any]]:
        return [{"params": ps[:2]}, {"params": ps[2:], "lr": lr / 2}]

    opt = getattr(ho, name)(groups(mine), **options)
    ref = getattr(torch.optim, name)(groups(theirs), **options, foreach=False)
    for a, b in zip(opt.param_groups, ref.param_groups, strict=True):
        assert set(a) == set(b)
        assert {k: v for k, v in a.items() if k not in ("params", "foreach")} == {
            k: v for k, v in b.items() if k not in ("params", "foreach")
        }
    for step in range(30):
        for p, q in zip(mine, theirs, strict=True):
            g = torch.randn(p.shape, dtype=torch.float64, generator=gen)
            skip = step % 3 == 0 and p.dim() == 1  # no gradient this step: skipped
            p.grad = None if skip else g.clone()
            q.grad = None if skip else g.clone()
        opt.step()
        ref.step()
    for p, q in zip(mine, theirs, strict=True):
        assert (p - q).abs().max().item() <= 1e-12


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_state_dicts_move_between_handgrad_and_torch_both_ways(
    name: str, options: dict[str, Any]
) -> None:
    """Train 20 steps in one, load its state into the other kind, continue both 20 steps."""
    gen = torch.Generator().manual_seed(2)
    init = [torch.randn(s, dtype=torch.float64, generator=gen) for s in SHAPES]
    grads = [
        [torch.randn(s, dtype=torch.float64, generator=gen) for s in SHAPES] for _ in range(40)
    ]

    def train(opt: Any, params: list[torch.Tensor], steps: range) -> None:
        for k in steps:
            opt.zero_grad()
            for p, g in zip(params, grads[k], strict=True):
                p.grad = g.clone()
            opt.step()

    for first_mine in (True, False):
        a_params = [t.clone() for t in init]
        b_params = [t.clone() for t in init]
        mine_cls, torch_cls = getattr(ho, name), getattr(torch.optim, name)
        a = (mine_cls if first_mine else torch_cls)(a_params, **options)
        train(a, a_params, range(20))
        for src, dst in zip(a_params, b_params, strict=True):
            dst.copy_(src)
        b = (torch_cls if first_mine else mine_cls)(b_params, **options)
        b.load_state_dict(a.state_dict())
        train(a, a_params, range(20, 40))
        train(b, b_params, range(20, 40))
        for p, q in zip(a_params, b_params, strict=True):
            assert (p - q).abs().max().item() <= 1e-12, first_mine
