"""handgrad.optim's torch.optim interface, its flat path, and the compiled loops.

Every option against torch.optim over 100 steps is in ``test_optim_torch.py``; here: the
interface (schedulers, groups, tensor lr, half precision, state dicts and checkpoints, errors),
which path a step takes, re-binding after parameters move, and fused == plain.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

import handgrad.optim as ho
from handgrad.optim import OPTIMIZERS, SGD, Adam, AdamW, Cosine, Optimizer, RMSprop, make_optimizer
from tests.test_optim_torch import CASES, IDS, SHAPES, flat_params


def fresh(seed: int = 0, dtype: torch.dtype = torch.float64) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, dtype=torch.float64, generator=gen).to(dtype) for s in SHAPES]


def grads_for(params: list[Tensor], gen: torch.Generator) -> list[Tensor]:
    return [torch.randn(p.shape, dtype=torch.float64, generator=gen).to(p.dtype) for p in params]


def paired_steps(opt: Any, ref: Any, mine: list[Tensor], theirs: list[Tensor], steps: int) -> None:
    gen = torch.Generator().manual_seed(5)
    for _ in range(steps):
        opt.zero_grad()
        ref.zero_grad()
        for p, q, g in zip(mine, theirs, grads_for(mine, gen), strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()


def max_diff(a: list[Tensor], b: list[Tensor]) -> float:
    return max((p.double() - q.double()).abs().max().item() for p, q in zip(a, b, strict=True))


# -- torch's machinery drives handgrad's optimizers ---------------------------------------------
@pytest.mark.parametrize(
    "make_scheduler",
    [
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=40),
    ],
    ids=["StepLR", "CosineAnnealingLR", "OneCycleLR"],
)
def test_torch_lr_scheduler_drives_a_handgrad_optimizer(make_scheduler: Any) -> None:
    mine, theirs = fresh(), [t.clone().requires_grad_() for t in fresh()]
    opt, ref = Adam(mine, lr=0.01), torch.optim.Adam(theirs, lr=0.01, foreach=False)
    sched, ref_sched = make_scheduler(opt), make_scheduler(ref)
    gen = torch.Generator().manual_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        for _ in range(30):
            for p, q, g in zip(mine, theirs, grads_for(mine, gen), strict=True):
                p.grad, q.grad = g.clone(), g.clone()
            opt.step()
            ref.step()
            sched.step()
            ref_sched.step()
            assert opt.param_groups[0]["lr"] == ref.param_groups[0]["lr"]
    assert max_diff(mine, theirs) <= 1e-12


def test_handgrad_schedules_drive_every_group_keeping_their_ratio() -> None:
    params = fresh()
    opt = SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.05}], lr=0.1)
    schedule = Cosine(lr=0.1, total_steps=10)
    for step in range(10):
        lr = schedule.apply(opt, step)
        assert opt.param_groups[0]["lr"] == lr == schedule.lr_at(step)
        assert opt.param_groups[1]["lr"] == pytest.approx(lr / 2, rel=1e-15)
    assert opt.lr == opt.param_groups[0]["lr"]


def test_a_schedule_fills_a_tensor_lr_in_place() -> None:
    lr = torch.tensor(0.1)
    opt = SGD(fresh(), lr=lr)
    Cosine(lr=0.1, total_steps=10).apply(opt, 5)
    assert opt.param_groups[0]["lr"] is lr
    assert lr.item() == pytest.approx(Cosine(lr=0.1, total_steps=10).lr_at(5), rel=1e-7)


def test_step_hooks_run_as_in_torch() -> None:
    calls: list[str] = []
    opt = Adam(fresh(), lr=0.01)
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    opt.step()
    assert calls == ["pre", "post"]


def test_closure_is_called_and_its_loss_returned() -> None:
    params = fresh()
    opt = SGD(params, lr=0.1)

    def closure() -> Tensor:
        for p in params:
            p.grad = torch.ones_like(p)
        return torch.tensor(3.0)

    assert opt.step(closure).item() == 3.0
    assert torch.allclose(params[0], fresh()[0] - 0.1)


# -- groups, maximize, tensor lr, dtypes, skipped and reassigned grads --------------------------
def test_bias_group_without_weight_decay_matches_torch() -> None:
    def groups(ps: list[Tensor]) -> list[dict[str, Any]]:
        weights = [p for p in ps if p.dim() == 2]
        return [
            {"params": weights},
            {"params": [p for p in ps if p.dim() < 2], "weight_decay": 0.0},
        ]

    mine, theirs = fresh(), [t.clone().requires_grad_() for t in fresh()]
    opt = AdamW(groups(mine), lr=0.01, weight_decay=0.5)
    ref = torch.optim.AdamW(groups(theirs), lr=0.01, weight_decay=0.5, foreach=False)
    assert opt.param_groups[1]["weight_decay"] == 0.0
    paired_steps(opt, ref, mine, theirs, 50)
    assert max_diff(mine, theirs) <= 1e-12


def test_add_param_group_takes_the_defaults_and_its_own_options() -> None:
    params = fresh()
    opt = Adam(params[:2], lr=0.01, betas=(0.8, 0.9))
    opt.add_param_group({"params": params[2:], "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["betas"] == (0.8, 0.9)
    with pytest.raises(ValueError, match="Adam: eps must be >= 0, got -1"):
        opt.add_param_group({"params": [torch.zeros(2)], "eps": -1.0})
    assert len(opt.param_groups) == 2
    with pytest.raises(ValueError, match="some parameters appear in more than one"):
        opt.add_param_group({"params": params[:1]})


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_tensor_lr_matches_torch(name: str, options: dict[str, Any]) -> None:
    options = dict(options)
    lr = torch.tensor(
        options.pop("lr", getattr(torch.optim, name)([torch.zeros(1)]).defaults["lr"])
    )
    mine, slots = flat_params(fresh())
    theirs = [t.clone().requires_grad_() for t in fresh()]
    opt = getattr(ho, name)(mine, lr=lr.clone(), **options)
    ref = getattr(torch.optim, name)(theirs, lr=lr.clone(), **options, foreach=False)
    gen = torch.Generator().manual_seed(4)
    for _ in range(40):
        opt.zero_grad()
        ref.zero_grad()
        for p, slot, q, g in zip(mine, slots, theirs, grads_for(mine, gen), strict=True):
            p.grad = slot
            slot.copy_(g)
            q.grad = g.clone()
        opt.step()
        ref.step()
    opt.param_groups[0]["lr"].fill_(0.001)  # a tensor lr changed in place is used
    ref.param_groups[0]["lr"].fill_(0.001)
    paired_steps(opt, ref, mine, theirs, 5)
    assert max_diff(mine, theirs) <= 1e-12


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_half_precision_steps_like_torch(
    name: str, options: dict[str, Any], dtype: torch.dtype
) -> None:
    mine, theirs = fresh(dtype=dtype), [t.requires_grad_() for t in fresh(dtype=dtype)]
    try:
        ref = getattr(torch.optim, name)(theirs, **options, foreach=False)
        paired_steps(ref, ref, theirs, theirs, 1)
    except RuntimeError as err:  # torch does not support this kind in this dtype
        pytest.skip(f"torch.optim.{name} in {dtype}: {err}")
    mine, theirs = fresh(dtype=dtype), [t.requires_grad_() for t in fresh(dtype=dtype)]
    opt = getattr(ho, name)(mine, **options)
    ref = getattr(torch.optim, name)(theirs, **options, foreach=False)
    paired_steps(opt, ref, mine, theirs, 20)
    for p, q in zip(mine, theirs, strict=True):
        assert p.dtype == dtype
        assert torch.equal(p, q.detach())


def test_params_without_grad_are_skipped_and_get_no_state() -> None:
    mine, theirs = fresh(), [t.clone().requires_grad_() for t in fresh()]
    opt, ref = Adam(mine, lr=0.01), torch.optim.Adam(theirs, lr=0.01, foreach=False)
    for step in range(10):
        for i, (p, q) in enumerate(zip(mine, theirs, strict=True)):
            given = i != 1 and (i != 2 or step % 2 == 0)  # param 1 never, param 2 every other
            p.grad = torch.full_like(p, 0.5) if given else None
            q.grad = torch.full_like(q, 0.5) if given else None
        opt.step()
        ref.step()
    assert mine[1] not in opt.state and torch.equal(mine[1], fresh()[1])
    assert opt.state[mine[2]]["step"].item() == 5 == ref.state[theirs[2]]["step"].item()
    assert sorted(opt.state_dict()["state"]) == sorted(ref.state_dict()["state"]) == [0, 2, 3]
    assert max_diff(mine, theirs) <= 1e-12


def test_a_grad_assigned_anew_is_the_one_step_uses() -> None:
    mine, slots = flat_params(fresh())
    for p, slot in zip(mine, slots, strict=True):
        p.grad = slot
        slot.fill_(1.0)
    opt = SGD(mine, lr=0.1)
    opt.step()
    opt.step()  # the flat path now
    assert opt._arenas[0] is not None and opt._arenas[0].uniform
    before = mine[0].clone()
    mine[0].grad = torch.full_like(mine[0], 10.0)  # not the flat slot any more
    opt.step()
    assert torch.allclose(mine[0], before - 1.0)
    assert torch.allclose(mine[1], fresh()[1] - 0.3)


def test_zero_grad_sets_none_by_default_or_zeroes_in_place() -> None:
    mine, slots = flat_params(fresh())
    for p, slot in zip(mine, slots, strict=True):
        p.grad = slot
        slot.fill_(2.0)
    opt = Adam(mine)
    opt.step()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is slot and not slot.any() for p, slot in zip(mine, slots, strict=True))
    opt.zero_grad()
    assert all(p.grad is None for p in mine)


# -- which path a step takes, and parameters that move ------------------------------------------
def test_flat_parameters_with_flat_grads_take_the_flat_path_every_step() -> None:
    mine, slots = flat_params(fresh())
    opt = Adam(mine, lr=0.01)
    calls: list[int] = []
    real = opt._step_each
    opt._step_each = lambda arena, group: (calls.append(1), real(arena, group))  # type: ignore[method-assign]
    for _ in range(5):
        opt.zero_grad()
        for p, slot in zip(mine, slots, strict=True):
            p.grad = slot  # as handgrad's backward re-attaches a None .grad
            slot.fill_(1.0)
        opt.step()
    assert len(calls) == 1  # the first step creates the state per parameter; then flat
    assert all(opt.state[p]["step"].item() == 5 for p in mine)


def test_a_flattened_handgrad_model_takes_the_flat_path() -> None:
    from handgrad import nn

    model = nn.mlp("6-5-3", "relu").double().flatten_parameters()
    opt = Adam(model.parameters(), lr=0.1)
    before = [p.clone() for p in model.parameters()]
    for _ in range(2):
        model(torch.randn(4, 6, dtype=torch.float64))
        model.backward(torch.randn(4, 3, dtype=torch.float64))
        opt.step()
        opt.zero_grad(set_to_none=False)
    arena = opt._arenas[0]
    assert arena is not None and arena.uniform and arena.find_flat_grad()
    for p, q in zip(model.parameters(), before, strict=True):
        assert not torch.equal(p, q)


def _reflatten(params: list[Tensor], dtype: torch.dtype) -> list[Tensor]:
    """Move each parameter, keeping the tensor object, into a new flat buffer of ``dtype``."""
    new, slots = flat_params([p.detach().to(dtype) for p in params])
    for p, view in zip(params, new, strict=True):
        p.grad = None
        p.data = view
    return slots


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["reflattened", "moved"])
def test_params_moved_in_place_keep_the_optimizer_bound_to_the_live_tensors(
    dtype: torch.dtype,
) -> None:
    mine, slots = flat_params(fresh())
    ref_params, ref_slots = flat_params(fresh())
    opt, ref = Adam(mine, lr=0.01), Adam(ref_params, lr=0.01)
    for k in range(6):
        if k == 3:
            slots = _reflatten(mine, dtype)
        for ps, ss, o in ((mine, slots, opt), (ref_params, ref_slots, ref)):
            o.zero_grad()
            for p, slot in zip(ps, ss, strict=True):
                p.grad = slot
                slot.fill_(0.1 * (k + 1))
            o.step()
    arena = opt._arenas[0]
    assert arena is not None and arena.flat_param is not None
    assert arena.flat_param.data_ptr() == mine[0].data_ptr() and arena.dtype == dtype
    assert opt.state[mine[0]]["exp_avg"].dtype == dtype
    tolerance = 1e-15 if dtype == torch.float64 else 1e-6
    assert max_diff(mine, ref_params) <= tolerance


def test_a_param_whose_shape_changed_is_a_clear_error() -> None:
    params = fresh()
    opt = Adam(params)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    params[0].data = torch.zeros(2, 2, dtype=torch.float64)
    params[0].grad = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"state 'exp_avg' of a parameter of shape \(2, 2\)"):
        opt.step()


# -- state dicts and checkpoints ----------------------------------------------------------------
@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_checkpoint_state_resumes_bit_identically(name: str, options: dict[str, Any]) -> None:
    runs = []
    for resume in (False, True):
        params, slots = flat_params(fresh())
        opt = getattr(ho, name)(params, **options)
        gen = torch.Generator().manual_seed(9)
        for k in range(20):
            if resume and k == 10:
                ckpt = opt.checkpoint_state()
                saved = [p.clone() for p in params]
                params, slots = flat_params(saved)
                opt = getattr(ho, name)(params, **options)
                opt.load_state_dict(ckpt)
            opt.zero_grad()
            for p, slot, g in zip(params, slots, grads_for(params, gen), strict=True):
                p.grad = slot
                slot.copy_(g)
            opt.step()
        runs.append(params)
    for p, q in zip(*runs, strict=True):
        assert torch.equal(p, q)


def test_state_dict_is_torch_format_and_a_snapshot() -> None:
    params = fresh()
    opt = Adam(params, lr=0.01, amsgrad=True)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sd["param_groups"][0]["params"] == [0, 1, 2, 3]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][0]["step"].dtype == torch.float32 and sd["state"][0]["step"].item() == 1
    opt.step()
    assert sd["state"][0]["step"].item() == 1  # a copy, not the live state


def test_load_state_dict_rejects_a_bad_state_with_one_line() -> None:
    opt = Adam(fresh())
    with pytest.raises(
        ValueError, match=r"Adam.load_state_dict: expected keys 'state' and 'param_groups'"
    ):
        opt.load_state_dict({"state": {}})
    good = Adam(fresh()).state_dict()
    good["param_groups"][0]["eps"] = -1.0
    with pytest.raises(ValueError, match="eps must be >= 0"):
        opt.load_state_dict(good)
    other = Adam(fresh()[:2]).state_dict()
    with pytest.raises(ValueError, match="doesn't match the size"):
        opt.load_state_dict(other)
    with pytest.raises(ValueError, match="expected a state of type 'Adam', got 'SGD'"):
        opt.load_state_dict({"type": "SGD", "hyper": {}, "step": 0, "buffers": {}})


def test_checkpoint_state_needs_one_group_and_one_step() -> None:
    params = fresh()
    opt = Adam([{"params": params[:2]}, {"params": params[2:]}])
    with pytest.raises(ValueError, match="needs one parameter group; use state_dict"):
        opt.checkpoint_state()
    opt = Adam(params)
    params[0].grad = torch.ones_like(params[0])
    opt.step()
    with pytest.raises(ValueError, match="different steps; use state_dict"):
        opt.checkpoint_state()


# -- options and errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda p: Adam(p, lr=-1.0), ValueError, "Adam: lr must be > 0, got -1.0"),
        (lambda p: Adam(p, betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be >= 0 and < 1"),
        (lambda p: SGD(p, lr=0.1, nesterov=True), ValueError, "nesterov needs momentum > 0"),
        (lambda p: RMSprop(p, centered=1), TypeError, "centered must be a bool"),
        (lambda p: ho.Rprop(p, etas=(1.5, 1.2)), ValueError, "etas must satisfy"),
        (lambda p: ho.Adadelta(p, rho=1.5), ValueError, "rho must be >= 0 and <= 1"),
        (lambda p: Adam(p, lr=torch.ones(2)), ValueError, "a tensor lr must be one"),
        (lambda p: Adam(p, maximize=1), TypeError, "maximize must be a bool"),
        (lambda p: Adam(p[0]), TypeError, "params should be an iterable of tensors"),
        (lambda p: Adam([]), ValueError, "empty parameter list"),
        (
            lambda p: SGD([torch.zeros(2, dtype=torch.int64)]),
            ValueError,
            "should be floating point",
        ),
        (lambda p: ho.Adagrad(p, lr_decay=-1), ValueError, "lr_decay must be >= 0"),
    ],
)
def test_bad_options_raise_one_line(make: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        make(fresh())
    assert "\n" not in str(info.value)


def test_make_optimizer_registry() -> None:
    assert set(OPTIMIZERS) == {
        "sgd", "adam", "adamw", "rmsprop", "adagrad", "adamax", "nadam", "radam", "adadelta",
        "rprop", "asgd",
    }  # fmt: skip
    opt = make_optimizer("sgd", fresh(), lr=0.1, momentum=0.9)
    assert isinstance(opt, SGD) and isinstance(opt, torch.optim.Optimizer)
    assert opt.hyper()["momentum"] == 0.9
    with pytest.raises(ValueError, match="unknown optimizer 'adan'; did you mean 'adam'"):
        make_optimizer("adan", fresh())


def test_repr_names_groups_and_engine() -> None:
    text = repr(Adam(fresh(), lr=0.01))
    assert text.startswith("Adam(group 0 (4 tensors): lr=0.01, betas=(0.9, 0.999)")
    assert text.endswith("fused)")


# -- the compiled loops -------------------------------------------------------------------------
FUSED_CASES = [
    (SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    (SGD, {"lr": 0.05, "maximize": True}),
    (Adam, {"lr": 1e-3, "weight_decay": 0.1}),
    (Adam, {"lr": 1e-3, "amsgrad": True, "maximize": True}),
    (AdamW, {"lr": 1e-3}),
    (RMSprop, {"lr": 1e-3}),
    (RMSprop, {"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.1}),
    (RMSprop, {"lr": 1e-3, "centered": True}),
    (RMSprop, {"lr": 1e-3, "centered": True, "momentum": 0.5, "maximize": True}),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("cls", "options"), FUSED_CASES, ids=lambda x: str(x))
def test_fused_loop_equals_the_plain_update(
    cls: type[Optimizer], options: dict[str, Any], dtype: torch.dtype
) -> None:
    runs = {}
    for fused in (True, False):
        gen = torch.Generator().manual_seed(7)
        init = [torch.randn(n, generator=gen, dtype=torch.float64).to(dtype) for n in (20000, 300)]
        params, slots = flat_params(init)
        opt = cls(params, **options, fused=fused)  # type: ignore[call-arg]
        for _ in range(20):
            opt.zero_grad()
            for p, slot in zip(params, slots, strict=True):
                p.grad = slot
                slot.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype))
            opt.step()
        assert opt._arenas[0] is not None and opt._arenas[0].uniform
        runs[fused] = torch.cat(params)
    moved = (runs[False] - torch.cat(init)).abs().max().item()
    difference = (runs[True] - runs[False]).abs().max().item()
    assert difference <= (1e-5 if dtype == torch.float32 else 1e-13) * max(moved, 1.0)


@pytest.mark.parametrize(
    ("cls", "options", "average"),
    [
        (Adam, {"lr": 1e-3}, "exp_avg"),
        (SGD, {"lr": 0.1, "momentum": 0.9}, "momentum_buffer"),
    ],
    ids=["adam", "sgd-momentum"],
)
def test_fused_loop_stores_subnormal_averages_as_zero(
    cls: type[Optimizer], options: dict[str, Any], average: str
) -> None:
    """One gradient, then zeros: β·m decays into the subnormal range after ~800 steps. The
    compiled loop stores 0 there (torch keeps the subnormals, which are ~100x slower to compute
    with); the weights agree with the torch-operation path to far below float32 rounding."""
    tiny = torch.finfo(torch.float32).tiny
    runs = {}
    for fused in (True, False):
        param = torch.ones(1000)
        param.grad = torch.full_like(param, 1e-3)
        opt = cls([param], **options, fused=fused)  # type: ignore[call-arg]
        opt.step()
        param.grad.zero_()
        for _ in range(900):
            opt.step()
        runs[fused] = (param, opt.state[param][average])
    fused_average, ops_average = runs[True][1], runs[False][1]
    assert ((ops_average != 0) & (ops_average.abs() < tiny)).all()  # torch: subnormal
    assert (fused_average == 0).all()
    assert torch.allclose(runs[True][0], runs[False][0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls", [Adam, AdamW, SGD, RMSprop])
def test_fused_loop_lets_nan_through(cls: type[Optimizer]) -> None:
    """A NaN gradient must show in the weights, not be flushed to 0."""
    param = torch.ones(64)
    param.grad = torch.zeros(64)
    opt = cls([param], lr=0.1, fused=True)  # type: ignore[call-arg]
    opt.step()  # the state is created per parameter; the next steps run the compiled loop
    param.grad[3] = float("nan")
    opt.step()
    assert torch.isnan(param[3]) and torch.isfinite(param[:3]).all()


def test_without_numba_the_default_is_torch_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    from handgrad.optim import kernels

    monkeypatch.setattr(kernels, "available", lambda: False)
    assert not Adam(fresh()).fused
    with pytest.raises(ValueError, match="fused=True is not possible: no numba"):
        Adam(fresh(), fused=True)


def test_fused_is_read_only_and_a_bool() -> None:
    opt = Adam(fresh())
    with pytest.raises(AttributeError):
        opt.fused = False  # type: ignore[misc]
    with pytest.raises(TypeError, match="fused must be True, False or None"):
        Adam(fresh(), fused=1)  # type: ignore[arg-type]


def test_compiled_loops_work_where_no_cache_folder_is_writable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """numba refuses cache=True when neither the package folder nor the user's cache folder is
    writable (a read-only install); the loop is then compiled in each process instead."""
    import numba

    from handgrad.optim import kernels

    real_njit = numba.njit

    def njit(*args: Any, cache: bool = False, **kwargs: Any) -> Any:
        if cache:
            raise RuntimeError("cannot cache function: no locator available")
        return real_njit(*args, cache=cache, **kwargs)

    monkeypatch.setattr(numba, "njit", njit)
    sgd = kernels._compile(kernels._sgd)
    param, grad = np.ones(5, np.float32), np.full(5, 2.0, np.float32)
    sgd(param, grad, np.float32(0.0), np.float32(-0.5), np.float32(1.0))
    assert (param == 0).all()


def _mlp_run(moves: dict[int, str], steps: int = 6) -> list[Tensor]:
    """Adam on a handgrad MLP for ``steps`` plain steps; ``moves[k]`` ("double", "flatten")
    is applied to the model just before step ``k``, after the optimizer was built."""
    from handgrad import nn

    torch.manual_seed(3)
    model = nn.mlp("6-5-3", "tanh").double()
    opt = Adam(model.parameters(), lr=0.05)
    loss = nn.MSELoss()
    gen = torch.Generator().manual_seed(4)
    for k in range(steps):
        if moves.get(k) == "flatten":
            model.flatten_parameters()
        elif moves.get(k) == "float":
            model.float()
        dtype = next(model.parameters()).dtype
        x = torch.randn(8, 6, generator=gen, dtype=torch.float64).to(dtype)
        y = torch.randn(8, 3, generator=gen, dtype=torch.float64).to(dtype)
        opt.zero_grad()
        loss(model(x), y)
        model.backward(loss.backward())
        opt.step()
    return [p.detach().clone().double() for p in model.parameters()]


@pytest.mark.parametrize("move", ["flatten", "float"])
@pytest.mark.parametrize("when", [0, 3], ids=["before-any-step", "mid-run"])
def test_a_model_moved_after_the_optimizer_was_built_keeps_training(move: str, when: int) -> None:
    # Module.to() and flatten_parameters() put new tensors in the model; the optimizer follows
    # them (state moved along) instead of stepping tensors the model no longer uses.
    moved = _mlp_run({when: move})
    still = _mlp_run({})
    start = _mlp_run({}, steps=0)
    assert max_diff(moved, start) > 1e-3  # it trained
    if move == "flatten":
        assert max_diff(moved, still) == 0.0  # the same arithmetic, flat or not
    else:  # float32 from step `when`: close to the float64 run, not equal
        assert 0.0 < max_diff(moved, still) < 1e-4


def test_a_moved_parameter_s_state_follows_it() -> None:
    from handgrad import nn

    model = nn.mlp("4-3", "relu").double()
    opt = Adam(model.parameters(), lr=0.1)
    model(torch.randn(5, 4, dtype=torch.float64))
    model.backward(torch.ones(5, 3, dtype=torch.float64))
    opt.step()
    old = opt.state[next(model.parameters())]["exp_avg"].clone()
    model.float()
    opt.zero_grad()  # on the live tensors: the float32 ones
    live = list(model.parameters())
    assert all(p.grad is None for p in live)
    model(torch.randn(5, 4))
    model.backward(torch.ones(5, 3))
    opt.step()
    state = opt.state[live[0]]
    assert state["exp_avg"].dtype == torch.float32 and state["step"].item() == 2
    assert torch.allclose(state["exp_avg"].double(), 0.9 * old + 0.1 * live[0].grad.double())
    held = [p for g in opt.param_groups for p in g["params"]]
    assert len(held) == len(live) and all(a is b for a, b in zip(held, live, strict=True))


def _plain_and_flat_runs(steps: int, assign_at: int | None = None) -> tuple[Any, ...]:
    """Adam over an unflattened and a flattened copy of one MLP, the plain step each time."""
    from handgrad import nn

    runs = []
    for flatten in (False, True):
        torch.manual_seed(5)
        model = nn.mlp("6-5-3", "relu").double()
        if flatten:
            model.flatten_parameters()
        opt = Adam(model.parameters(), lr=0.05)
        calls: list[int] = []
        real = opt._step_each
        opt._step_each = lambda arena, group, calls=calls, real=real: (  # type: ignore[method-assign]
            calls.append(1),
            real(arena, group),
        )
        gen = torch.Generator().manual_seed(6)
        for k in range(steps):
            opt.zero_grad()
            model(torch.randn(4, 6, generator=gen, dtype=torch.float64))
            model.backward(torch.randn(4, 3, generator=gen, dtype=torch.float64))
            if k == assign_at:
                first = next(model.parameters())
                first.grad = first.grad.clone() * 2.0  # type: ignore[union-attr]
            opt.step()
        runs.append(([p.detach().clone() for p in model.parameters()], len(calls), opt))
    return tuple(runs)


def test_an_unflattened_model_takes_the_per_parameter_compiled_path() -> None:
    (plain, plain_calls, opt), (flat, _, _) = _plain_and_flat_runs(6)
    assert max_diff(plain, flat) == 0.0  # the same loop, per parameter or over one vector
    if opt.fused:
        assert plain_calls == 1  # the first step makes the state; then the compiled plan
        assert opt._arenas[0].each_arrays is not None


def test_a_grad_assigned_anew_on_an_unflattened_model_is_used() -> None:
    (plain, _, _), (flat, _, _) = _plain_and_flat_runs(6, assign_at=3)
    assert max_diff(plain, flat) == 0.0
    (unassigned, _, _), _ = _plain_and_flat_runs(6)
    assert max_diff(plain, unassigned) > 1e-6


def test_a_flattened_model_keeps_the_one_pass_loop_under_the_plain_step() -> None:
    (_, _, _), (_, flat_calls, opt) = _plain_and_flat_runs(6)
    assert flat_calls == 1
    arena = opt._arenas[0]
    if opt.fused:  # one compiled pass over the flat buffer, not one per parameter
        assert arena.fused_arrays is not None and arena.each_arrays is None


@pytest.mark.parametrize("name", ["Adam", "NAdam", "RAdam", "Adamax", "Adagrad", "RMSprop", "SGD"])
def test_a_shared_option_is_checked_once_and_named_once(name: str) -> None:
    # eps, weight_decay and betas have one rule in the base class, for every kind that has them
    with pytest.raises(ValueError) as err:
        getattr(ho, name)(fresh(), weight_decay=-1.0)
    assert str(err.value) == f"{name}: weight_decay must be >= 0, got -1.0"
