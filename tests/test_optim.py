"""handgrad.optim against torch.optim: every optimizer and option, flat and per parameter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from handgrad.nn.flat import flatten_into_buffer
from handgrad.optim import (
    OPTIMIZERS,
    SGD,
    Adam,
    AdamW,
    Optimizer,
    RMSprop,
    make_optimizer,
)

SHAPES = [(7, 5), (7,), (3, 7), (3,)]  # a small MLP: weight, bias, weight, bias
STEPS = 100

# (handgrad class, torch class, options): every option and the combinations that interact.
CASES: list[tuple[type[Optimizer], type[torch.optim.Optimizer], dict[str, Any]]] = [
    (SGD, torch.optim.SGD, {"lr": 0.05}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "weight_decay": 0.1}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "dampening": 0.2, "weight_decay": 0.1}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    (Adam, torch.optim.Adam, {"lr": 0.01}),
    (Adam, torch.optim.Adam, {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-3}),
    (Adam, torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.1}),
    (Adam, torch.optim.Adam, {"lr": 0.01, "amsgrad": True}),
    (Adam, torch.optim.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    (AdamW, torch.optim.AdamW, {"lr": 0.01}),
    (AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.0}),
    (AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.3, "betas": (0.8, 0.99)}),
    (AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    (RMSprop, torch.optim.RMSprop, {"lr": 0.01}),
    (RMSprop, torch.optim.RMSprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-4}),
    (RMSprop, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.9}),
    (RMSprop, torch.optim.RMSprop, {"lr": 0.01, "centered": True}),
    (RMSprop, torch.optim.RMSprop, {"lr": 0.01, "weight_decay": 0.1}),
    (RMSprop, torch.optim.RMSprop, {"lr": 0.01, "centered": True, "momentum": 0.9}),
    (
        RMSprop,
        torch.optim.RMSprop,
        {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1, "alpha": 0.95},
    ),
]
CASE_IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for cls, _, kw in CASES]


def make_params(flat: bool, seed: int = 0, dtype: torch.dtype = torch.float64) -> list[Tensor]:
    """Parameters with zeroed ``.grad``s; laid end to end in one storage if ``flat``."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(shape, generator=gen, dtype=dtype) for shape in SHAPES]
    grads = [torch.zeros_like(p) for p in params]
    if flat:
        _, params = flatten_into_buffer(params)
        _, grads = flatten_into_buffer(grads)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    return params


def gradient_stream(seed: int, dtype: torch.dtype = torch.float64) -> list[list[Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES] for _ in range(STEPS)]


def set_grads(params: list[Tensor], grads: list[Tensor]) -> None:
    for p, g in zip(params, grads, strict=True):
        assert p.grad is not None
        p.grad.copy_(g)


def run(opt: Optimizer, grads: list[list[Tensor]]) -> None:
    for step_grads in grads:
        set_grads(opt.params, step_grads)
        opt.step()


# Each case on each engine it has: the compiled one-pass loop (fused) and torch operations.
ENGINE_CASES = [
    pytest.param(cls, torch_cls, options, fused, id=f"{case_id}-{'fused' if fused else 'ops'}")
    for (cls, torch_cls, options), case_id in zip(CASES, CASE_IDS, strict=True)
    for fused in (True, False)
    if cls.has_fused_loop or not fused
]


def make_optimizer_for(
    cls: type[Optimizer], params: list[Tensor], fused: bool, **options: Any
) -> Optimizer:
    """``cls(params, **options)`` on the asked engine."""
    opt = cls(params, **options, fused=fused)  # type: ignore[call-arg]
    assert opt.fused == fused
    return opt


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "per-param"])
@pytest.mark.parametrize("foreach", [False, True], ids=["torch-for-loop", "torch-foreach"])
@pytest.mark.parametrize(("cls", "torch_cls", "options", "fused"), ENGINE_CASES)
def test_matches_torch_for_100_steps(
    cls: type[Optimizer],
    torch_cls: type[torch.optim.Optimizer],
    options: dict[str, Any],
    foreach: bool,
    flat: bool,
    fused: bool,
) -> None:
    params = make_params(flat)
    opt = make_optimizer_for(cls, params, fused, **options)
    assert opt.is_flat == flat
    reference = [p.clone() for p in params]
    for p in reference:
        p.grad = torch.zeros_like(p)
    torch_opt = torch_cls(reference, foreach=foreach, **options)  # type: ignore[call-arg]

    worst = 0.0
    for step_grads in gradient_stream(seed=1):
        set_grads(params, step_grads)
        set_grads(reference, step_grads)
        opt.step()
        torch_opt.step()
        for p, g in zip(params, step_grads, strict=True):
            assert p.grad is not None and torch.equal(p.grad, g), ".grad was modified by step()"
        worst = max(
            worst, *((p - r).abs().max().item() for p, r in zip(params, reference, strict=True))
        )
    assert worst <= 1e-12
    assert opt.step_count == STEPS
    moved = max(
        (p - q).abs().max().item() for p, q in zip(params, make_params(flat=False), strict=True)
    )
    assert moved > 1e-3, "the parameters should have moved"


@pytest.mark.parametrize(("cls", "torch_cls", "options", "fused"), ENGINE_CASES)
def test_flat_and_per_parameter_paths_are_bit_identical(
    cls: type[Optimizer],
    torch_cls: type[torch.optim.Optimizer],
    options: dict[str, Any],
    fused: bool,
) -> None:
    flat = make_optimizer_for(cls, make_params(flat=True), fused, **options)
    loose = make_optimizer_for(cls, make_params(flat=False), fused, **options)
    assert flat.is_flat and not loose.is_flat
    grads = gradient_stream(seed=2)
    run(flat, grads)
    run(loose, grads)
    for p, q in zip(flat.params, loose.params, strict=True):
        assert torch.equal(p, q)
    flat_buffers, loose_buffers = flat.state_dict()["buffers"], loose.state_dict()["buffers"]
    assert flat_buffers.keys() == loose_buffers.keys()
    for key, value in flat_buffers.items():
        assert torch.equal(value, loose_buffers[key]), key


@pytest.mark.parametrize(("cls", "torch_cls", "options", "fused"), ENGINE_CASES)
def test_float32_matches_torch_to_rounding(
    cls: type[Optimizer],
    torch_cls: type[torch.optim.Optimizer],
    options: dict[str, Any],
    fused: bool,
) -> None:
    """With torch operations, bit for bit except where a square root is taken: handgrad's is
    the correctly rounded one (numpy's), torch's CPU kernel is off by one ulp on some elements
    (see ``sqrt_into``). The compiled loop rounds in its own order (and torch's vectorised
    ``add`` with ``alpha`` uses fused multiply-adds), so it agrees to rounding."""
    params = make_params(flat=True, dtype=torch.float32)
    reference = [p.clone() for p in params]
    for p in reference:
        p.grad = torch.zeros_like(p)
    opt = make_optimizer_for(cls, params, fused, **options)
    torch_opt = torch_cls(reference, foreach=False, **options)  # type: ignore[call-arg]
    for step_grads in gradient_stream(seed=3, dtype=torch.float32)[:20]:
        set_grads(params, step_grads)
        set_grads(reference, step_grads)
        opt.step()
        torch_opt.step()
    uses_sqrt = cls.__name__ in ("Adam", "AdamW", "RMSprop")
    for p, r in zip(params, reference, strict=True):
        if fused:  # a few float32 roundings (ulp 1.2e-7 near 1) over 20 steps
            assert torch.allclose(p, r, rtol=1e-6, atol=1e-6), (p - r).abs().max()
        elif uses_sqrt:
            assert torch.allclose(p, r, rtol=1e-6, atol=1e-7), (p - r).abs().max()
        else:
            assert torch.equal(p, r)


@pytest.mark.parametrize("resume_flat", [True, False], ids=["into-flat", "into-per-param"])
@pytest.mark.parametrize(("cls", "options"), [(c, o) for c, _, o in CASES], ids=CASE_IDS)
def test_state_dict_round_trip_through_files_continues_bit_identically(
    cls: type[Optimizer], options: dict[str, Any], resume_flat: bool, tmp_path: Path
) -> None:
    grads = gradient_stream(seed=4)
    uninterrupted = cls(make_params(flat=True), **options)
    run(uninterrupted, grads)

    first = cls(make_params(flat=True), **options)
    run(first, grads[:37])
    state = first.state_dict()
    save_file(state["buffers"], tmp_path / "optim.safetensors")
    meta = json.dumps({k: v for k, v in state.items() if k != "buffers"})

    params = make_params(flat=resume_flat)
    for p, q in zip(params, first.params, strict=True):
        p.copy_(q)  # the model's own checkpoint
    second = cls(params, **options)
    second.load_state_dict(
        {**json.loads(meta), "buffers": load_file(tmp_path / "optim.safetensors")}
    )
    assert second.step_count == 37
    run(second, grads[37:])

    for p, q in zip(uninterrupted.params, second.params, strict=True):
        assert torch.equal(p, q)


def test_state_dict_layout() -> None:
    opt = Adam(make_params(flat=True), lr=0.01, amsgrad=True)
    run(opt, gradient_stream(seed=5)[:3])
    state = opt.state_dict()
    assert state["type"] == "Adam"
    assert state["step"] == 3
    assert state["hyper"] == {
        "lr": 0.01,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "weight_decay": 0.0,
        "amsgrad": True,
    }
    json.dumps(state["hyper"])
    expected = {f"{n}.{i}" for n in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") for i in range(4)}
    assert set(state["buffers"]) == expected
    for i, shape in enumerate(SHAPES):
        assert state["buffers"][f"exp_avg.{i}"].shape == shape
    # A snapshot: later steps do not change it.
    before = state["buffers"]["exp_avg.0"].clone()
    run(opt, gradient_stream(seed=6)[:1])
    assert torch.equal(state["buffers"]["exp_avg.0"], before)
    assert SGD(make_params(flat=True), lr=0.1).state_dict()["buffers"] == {}


def test_load_state_dict_restores_hyper_parameters_and_layout() -> None:
    grads = gradient_stream(seed=7)
    source = Adam(make_params(flat=True), lr=0.02, amsgrad=True, weight_decay=0.1)
    run(source, grads[:10])
    target = Adam(make_params(flat=True), lr=0.5)
    target.load_state_dict(source.state_dict())
    assert (target.lr, target.amsgrad, target.weight_decay) == (0.02, True, 0.1)
    for p, q in zip(target.params, source.params, strict=True):
        p.copy_(q)
    run(source, grads[10:])
    run(target, grads[10:])
    for p, q in zip(target.params, source.params, strict=True):
        assert torch.equal(p, q)


def _adam_state() -> dict[str, Any]:
    opt = Adam(make_params(flat=True), lr=0.01)
    run(opt, gradient_stream(seed=8)[:2])
    return opt.state_dict()


def _drop_buffer(s: dict[str, Any]) -> None:
    del s["buffers"]["exp_avg.1"]


def _extra_buffer(s: dict[str, Any]) -> None:
    s["buffers"]["momentum_buffer.0"] = torch.zeros(7, 5, dtype=torch.float64)


def _misshape_buffer(s: dict[str, Any]) -> None:
    s["buffers"]["exp_avg_sq.2"] = torch.zeros(7, 3, dtype=torch.float64)


def _wrong_dtype(s: dict[str, Any]) -> None:
    s["buffers"]["exp_avg.3"] = s["buffers"]["exp_avg.3"].float()


def _drop_hyper(s: dict[str, Any]) -> None:
    del s["hyper"]["eps"]


def _bad_hyper(s: dict[str, Any]) -> None:
    s["hyper"]["lr"] = -1.0


def _bad_step(s: dict[str, Any]) -> None:
    s["step"] = -3


def _drop_step(s: dict[str, Any]) -> None:
    del s["step"]


def _wrong_type(s: dict[str, Any]) -> None:
    s["type"] = "AdamW"


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_drop_buffer, "missing buffer 'exp_avg.1'"),
        (_extra_buffer, "unexpected buffer 'momentum_buffer.0'"),
        (_misshape_buffer, "buffer 'exp_avg_sq.2' should have shape (3, 7), got (7, 3)"),
        (_wrong_dtype, "buffer 'exp_avg.3' should have dtype torch.float64, got torch.float32"),
        (_drop_hyper, "missing hyper-parameter 'eps'"),
        (_bad_hyper, "lr must be > 0, got -1.0"),
        (_bad_step, "step must be an int >= 0, got -3"),
        (_drop_step, "missing state dict 'step'"),
        (_wrong_type, "expected a state dict of type 'Adam', got 'AdamW'"),
    ],
)
def test_load_state_dict_rejects_bad_state_without_changing_anything(
    corrupt: Any, message: str
) -> None:
    state = _adam_state()
    corrupt(state)
    opt = Adam(make_params(flat=True), lr=0.01)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=r"Adam\.load_state_dict: ") as info:
        opt.load_state_dict(state)
    assert message in str(info.value)
    after = opt.state_dict()
    assert after["hyper"] == before["hyper"] and after["step"] == before["step"] == 0
    assert all(torch.equal(after["buffers"][k], v) for k, v in before["buffers"].items())


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (SGD, {"lr": 0.0}, "SGD: lr must be > 0, got 0.0"),
        (SGD, {"lr": -0.1}, "SGD: lr must be > 0, got -0.1"),
        (SGD, {"lr": float("nan")}, "SGD: lr must be finite, got nan"),
        (SGD, {"lr": 0.1, "momentum": -0.5}, "SGD: momentum must be >= 0, got -0.5"),
        (SGD, {"lr": 0.1, "dampening": 1.5}, "SGD: dampening must be >= 0 and <= 1, got 1.5"),
        (SGD, {"lr": 0.1, "weight_decay": -1e-4}, "SGD: weight_decay must be >= 0, got -0.0001"),
        (SGD, {"lr": 0.1, "nesterov": True}, "SGD: nesterov needs momentum > 0, got 0.0"),
        (
            SGD,
            {"lr": 0.1, "nesterov": True, "momentum": 0.9, "dampening": 0.1},
            "SGD: nesterov needs dampening = 0, got 0.1",
        ),
        (Adam, {"lr": -1e-3}, "Adam: lr must be > 0, got -0.001"),
        (Adam, {"betas": (1.0, 0.999)}, "Adam: betas[0] must be >= 0 and < 1, got 1.0"),
        (Adam, {"betas": (0.9, -0.1)}, "Adam: betas[1] must be >= 0 and < 1, got -0.1"),
        (Adam, {"betas": (0.9,)}, "Adam: betas must be a pair (β1, β2), got (0.9,)"),
        (Adam, {"eps": -1e-8}, "Adam: eps must be >= 0, got -1e-08"),
        (Adam, {"weight_decay": -0.1}, "Adam: weight_decay must be >= 0, got -0.1"),
        (AdamW, {"weight_decay": float("inf")}, "AdamW: weight_decay must be finite, got inf"),
        (AdamW, {"betas": (0.9, 1.5)}, "AdamW: betas[1] must be >= 0 and < 1, got 1.5"),
        (RMSprop, {"lr": 0.0}, "RMSprop: lr must be > 0, got 0.0"),
        (RMSprop, {"alpha": 1.0}, "RMSprop: alpha must be >= 0 and < 1, got 1.0"),
        (RMSprop, {"eps": -1.0}, "RMSprop: eps must be >= 0, got -1.0"),
        (RMSprop, {"momentum": -0.9}, "RMSprop: momentum must be >= 0, got -0.9"),
        (RMSprop, {"weight_decay": -2.0}, "RMSprop: weight_decay must be >= 0, got -2.0"),
    ],
)
def test_invalid_hyper_parameters_raise_with_the_value(
    cls: type[Optimizer], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        cls(make_params(flat=True), **options)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": "0.1"}, "SGD: lr must be a number, got '0.1'"),
        ({"lr": 0.1, "momentum": True}, "SGD: momentum must be a number, got True"),
        ({"lr": 0.1, "momentum": 0.9, "nesterov": 1}, "SGD: nesterov must be a bool, got 1"),
    ],
)
def test_wrongly_typed_hyper_parameters_raise_type_error(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError) as info:
        SGD(make_params(flat=True), **options)
    assert str(info.value) == message


def _with_grad(t: Tensor, grad: Tensor | None) -> Tensor:
    t.grad = grad
    return t


def _zero_grad(t: Tensor) -> Tensor:
    """``t`` with a zeroed ``.grad`` of its own layout (``zeros_like`` keeps the strides)."""
    t.grad = torch.zeros_like(t)
    return t


def _resized_grad(t: Tensor, size: int) -> Tensor:
    """A parameter whose .grad was resized in place (torch refuses to assign a wrong shape)."""
    t.grad = torch.zeros_like(t)
    t.grad.resize_(size)
    return t


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([], "Adam: got an empty parameter list"),
        ([torch.zeros(3)], "Adam: parameter 0 (shape (3,)) has no .grad tensor"),
        (
            [_with_grad(torch.zeros(3), torch.zeros(3)), _resized_grad(torch.zeros(2), 3)],
            "Adam: parameter 1's .grad should match it: expected (2,) torch.float32 on cpu, "
            "got (3,) torch.float32 on cpu",
        ),
        (
            [_with_grad(torch.zeros(2, requires_grad=True), torch.zeros(2))],
            "Adam: parameter 0 requires grad",
        ),
        (
            [
                _with_grad(torch.zeros(2), torch.zeros(2)),
                _with_grad(
                    torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
                ),
            ],
            "Adam: all parameters should share one dtype and device",
        ),
        (
            [_with_grad(torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))],
            "Adam: parameter 0 should be floating point, got torch.int64",
        ),
    ],
    ids=["empty", "no-grad", "grad-shape", "requires-grad", "mixed-dtype", "integer"],
)
def test_invalid_parameters_raise(params: list[Tensor], message: str) -> None:
    with pytest.raises(ValueError) as info:
        Adam(params)
    assert str(info.value).startswith(message)


def test_repeated_parameter_and_single_tensor_are_rejected() -> None:
    p = _with_grad(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="parameter 1 appears more than once"):
        SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match="got a single Tensor"):
        SGD(p, lr=0.1)


def test_step_refuses_a_grad_that_was_replaced() -> None:
    params = make_params(flat=True)
    opt = SGD(params, lr=0.1)
    params[2].grad = torch.ones(SHAPES[2], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"SGD\.step: parameter 2 has a new \.grad tensor"):
        opt.step()


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "per-param"])
def test_zero_grad_zeroes_every_grad_in_place(flat: bool) -> None:
    params = make_params(flat)
    set_grads(params, gradient_stream(seed=9)[0])
    opt = Adam(params)
    grads = opt.grads
    assert all(g.abs().sum() > 0 for g in grads)
    opt.zero_grad()
    for p, g in zip(params, grads, strict=True):
        assert p.grad is g
        assert torch.equal(g, torch.zeros_like(g))


def test_lr_is_a_plain_attribute_used_by_the_next_step() -> None:
    params = make_params(flat=True)
    before = [p.clone() for p in params]
    opt = SGD(params, lr=0.1)
    set_grads(params, [torch.ones(s, dtype=torch.float64) for s in SHAPES])
    opt.lr = 0.25
    opt.step()
    for p, q in zip(params, before, strict=True):
        assert torch.allclose(p, q - 0.25)


def test_flat_step_allocates_no_tensor_memory() -> None:
    profiler = torch.profiler
    for opt in [
        Adam(make_params(True), weight_decay=0.1, amsgrad=True),
        AdamW(make_params(True)),
        SGD(make_params(True), lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
        RMSprop(make_params(True), momentum=0.9, centered=True, weight_decay=0.1),
    ]:
        opt.step()
        opt.step()
        with profiler.profile(activities=[profiler.ProfilerActivity.CPU], profile_memory=True) as p:
            opt.step()
        allocations = [e.name for e in p.events() if e.cpu_memory_usage > 0]
        assert allocations == [], f"{type(opt).__name__} allocated in step: {allocations}"


def test_make_optimizer_registry() -> None:
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", "rmsprop"}
    opt = make_optimizer("adamw", make_params(flat=True), lr=0.01, weight_decay=0.2)
    assert isinstance(opt, AdamW) and opt.weight_decay == 0.2
    with pytest.raises(ValueError, match="unknown optimizer 'adma'; did you mean 'adam'"):
        make_optimizer("adma", make_params(flat=True))
    with pytest.raises(ValueError, match="optimizer 'adam': unknown option 'momentum'"):
        make_optimizer("adam", make_params(flat=True), momentum=0.9)


def test_repr_names_hyper_parameters_and_path() -> None:
    text = repr(SGD(make_params(flat=True), lr=0.1, momentum=0.9))
    assert text.startswith("SGD(lr=0.1, momentum=0.9, dampening=0.0")
    assert text.endswith("4 tensors, 66 values, flat, fused)")
    assert repr(SGD(make_params(flat=False), fused=False)).endswith("66 values, per-parameter)")


def test_fused_is_the_default_where_a_compiled_loop_can_run() -> None:
    assert Adam(make_params(True)).fused and AdamW(make_params(False)).fused
    assert SGD(make_params(True, dtype=torch.float32)).fused
    assert not RMSprop(make_params(True)).fused  # it has no compiled loop
    assert not Adam([_zero_grad(torch.zeros(3, dtype=torch.float16))]).fused
    assert not SGD([_zero_grad(torch.zeros(4, 3).t())]).fused


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RMSprop(make_params(True), fused=True), "RMSprop has no compiled loop"),
        (
            lambda: Adam([_zero_grad(torch.zeros(3, dtype=torch.float16))], fused=True),
            "the parameters are torch.float16, not float32 or float64",
        ),
        (
            lambda: SGD([_zero_grad(torch.zeros(4, 3).t())], fused=True),
            "parameter 0 or its .grad is not contiguous",
        ),
    ],
    ids=["no-loop", "float16", "strided"],
)
def test_fused_true_where_impossible_says_why(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"fused=True is not possible: {message}"):
        make()


def test_fused_must_be_a_bool_or_none() -> None:
    with pytest.raises(TypeError, match="fused must be True, False or None, got 'yes'"):
        Adam(make_params(True), fused="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (Adam, {"lr": 1e-3}),
        (AdamW, {"lr": 1e-3, "amsgrad": True}),
        (SGD, {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}),
    ],
    ids=["adam", "adamw-amsgrad", "sgd-nesterov"],
)
def test_fused_loop_and_torch_ops_agree_on_a_model_sized_buffer(
    cls: type[Optimizer], options: dict[str, Any], dtype: torch.dtype
) -> None:
    """79,510 values (784-100-10), 50 steps of MNIST-like sparse gradients: the compiled loop's
    vectorised body and its remainder both run, and zeros in v (never-lit pixels) too."""
    gen = torch.Generator().manual_seed(4)
    start = torch.randn(79_510, generator=gen, dtype=dtype) * 0.05
    runs = {}
    for fused in (True, False):
        param = _zero_grad(start.clone())
        opt = cls([param], **options, fused=fused)  # type: ignore[call-arg]
        stream = torch.Generator().manual_seed(5)
        for _ in range(50):
            grad = torch.randn(79_510, generator=stream, dtype=dtype) * 1e-3
            grad[:20_000] = 0  # pixels that are never lit
            assert param.grad is not None
            param.grad.copy_(grad)
            opt.step()
        runs[fused] = param
    moved = (runs[True] - start).abs().max().item()
    assert moved > 1e-3
    difference = (runs[True] - runs[False]).abs().max().item()
    assert difference <= (1e-6 if dtype == torch.float32 else 1e-14) * max(moved, 1.0)


def test_a_flattened_handgrad_model_takes_the_flat_path() -> None:
    from handgrad import nn

    model = nn.mlp("6-5-3", "relu").double().flatten_parameters()
    opt = Adam(model.parameters(), lr=0.1)
    assert opt.is_flat
    before = [p.clone() for p in model.parameters()]
    model(torch.randn(4, 6, dtype=torch.float64))
    model.backward(torch.randn(4, 3, dtype=torch.float64))
    opt.step()
    for p, q in zip(model.parameters(), before, strict=True):
        assert not torch.equal(p, q)  # every tensor of the model was updated through the views
    opt.zero_grad()
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


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
        param = _zero_grad(torch.ones(1000))
        opt = cls([param], **options, fused=fused)  # type: ignore[call-arg]
        assert param.grad is not None
        param.grad.fill_(1e-3)
        opt.step()
        param.grad.zero_()
        for _ in range(900):
            opt.step()
        runs[fused] = (param, opt.state_dict()["buffers"][f"{average}.0"])
    fused_average, ops_average = runs[True][1], runs[False][1]
    assert ((ops_average != 0) & (ops_average.abs() < tiny)).all()  # torch: subnormal
    assert (fused_average == 0).all()
    assert torch.allclose(runs[True][0], runs[False][0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls", [Adam, AdamW, SGD])
def test_fused_loop_lets_nan_through(cls: type[Optimizer]) -> None:
    """A NaN gradient must show in the weights (and the averages), not be flushed to 0."""
    param = _zero_grad(torch.ones(64))
    opt = cls([param], lr=0.1, fused=True)  # type: ignore[call-arg]
    assert param.grad is not None
    param.grad[3] = float("nan")
    opt.step()
    assert torch.isnan(param[3]) and torch.isfinite(param[:3]).all()


def test_without_numba_the_default_is_torch_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    from handgrad.optim import kernels

    monkeypatch.setattr(kernels, "available", lambda: False)
    opt = Adam(make_params(True))
    assert not opt.fused
    opt.step()  # the torch-operation path runs
    with pytest.raises(ValueError, match="fused=True is not possible: numba cannot be imported"):
        Adam(make_params(True), fused=True)


def test_fused_is_read_only() -> None:
    opt = Adam(make_params(True))
    with pytest.raises(AttributeError):
        opt.fused = False  # type: ignore[misc]


def test_compiled_loops_work_where_no_cache_folder_is_writable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """numba refuses cache=True when neither the package folder nor the user's cache folder is
    writable (a read-only install); the loop is then compiled in each process instead."""
    import numba
    import numpy as np

    from handgrad.optim import kernels

    real_njit = numba.njit

    def njit(*args: Any, cache: bool = False, **kwargs: Any) -> Any:
        if cache:
            raise RuntimeError("cannot cache function: no locator available")
        return real_njit(*args, cache=cache, **kwargs)

    monkeypatch.setattr(numba, "njit", njit)
    sgd = kernels._compile(kernels._sgd)
    param, grad = np.ones(5, np.float32), np.full(5, 2.0, np.float32)
    sgd(param, grad, np.float32(0.0), np.float32(-0.5))
    assert (param == 0).all()
