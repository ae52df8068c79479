"""Every layer and loss against torch.autograd on its torch.nn twin: forward, input gradient and
every parameter gradient, alone and in random stacks, float64 (1e-10) and float32 (1e-5)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch

from handgrad import nn
from handgrad.reference import autograd_gradients, loss_to_torch, to_torch
from tests.helpers import RTOL, assert_rel_close, rel_err

DTYPES = [torch.float64, torch.float32]
BATCHES = [1, 2, 7, 33]

# name -> (factory(width), needs batch > 1 in training)
LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "Linear": lambda d: nn.Linear(d, d + 3),
    "Linear(no bias)": lambda d: nn.Linear(d, 4, bias=False),
    "Linear(normal)": lambda d: nn.Linear(d, 5, init="normal", std=0.5, bias_std=0.1),
    "Linear(xavier)": lambda d: nn.Linear(d, 6, init="xavier_normal"),
    "Linear(kaiming)": lambda d: nn.Linear(d, 6, init="kaiming_uniform"),
    "ReLU": lambda d: nn.ReLU(),
    "LeakyReLU": lambda d: nn.LeakyReLU(0.2),
    "Tanh": lambda d: nn.Tanh(),
    "Sigmoid": lambda d: nn.Sigmoid(),
    "GELU": lambda d: nn.GELU(),
    "GELU(tanh)": lambda d: nn.GELU("tanh"),
    "Softmax": lambda d: nn.Softmax(dim=-1),
    "LogSoftmax": lambda d: nn.LogSoftmax(dim=-1),
    "Dropout": lambda d: nn.Dropout(0.3),
    "BatchNorm1d": lambda d: nn.BatchNorm1d(d),
    "BatchNorm1d(no affine)": lambda d: nn.BatchNorm1d(d, affine=False, momentum=None),
    "LayerNorm": lambda d: nn.LayerNorm(d),
    "LayerNorm(no affine)": lambda d: nn.LayerNorm(d, elementwise_affine=False),
    "Flatten": lambda d: nn.Flatten(),
}


def _randomize(model: nn.Module, gen: torch.Generator) -> None:
    """Move affine normalization parameters away from 1 and 0 so their gradients matter."""
    for _, p in model.named_parameters():
        p.copy_(p + 0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _check(model: nn.Module, x: torch.Tensor, dtype: torch.dtype, seed: int = 0) -> None:
    """Forward and backward of ``model`` on ``x`` against autograd on the twin, with a random
    upstream gradient (loss = Σ out · R)."""
    tol = RTOL[dtype]
    ref_model = to_torch(model)
    torch.manual_seed(seed)
    out = model(x)
    r = torch.randn(out.shape, dtype=dtype, generator=torch.Generator().manual_seed(seed + 1))
    model.zero_grad()
    grad_x = model.backward(r, input_grad=True)

    x_t = x.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    with torch.enable_grad():
        out_t = ref_model(x_t)
        (out_t * r).sum().backward()
    assert_rel_close(out, out_t.detach(), tol, "forward")
    assert x_t.grad is not None
    assert_rel_close(grad_x, x_t.grad, tol, "input gradient")
    ref_params = dict(ref_model.named_parameters())
    names = [n for n, _ in model.named_parameters()]
    assert names == list(ref_params), "parameter names differ from torch.nn's"
    grad_scale = max(
        [x_t.grad.abs().max().item()]
        + [p.grad.abs().max().item() for p in ref_params.values() if p.grad is not None]
    )
    truth: dict[str, torch.Tensor] | None = None
    for name, p in model.named_parameters():
        ref_grad = ref_params[name].grad
        assert ref_grad is not None
        assert p.grad is not None
        if dtype == torch.float32 and rel_err(p.grad, ref_grad, grad_scale) > tol:
            # A gradient that is zero in exact arithmetic (a bias in front of a normalization)
            # is float32 rounding noise in torch as well: then require handgrad to be as close
            # to the float64 truth as torch's own float32 result is.
            truth = truth or _float64_param_grads(ref_model, x, r, seed)
            ours = rel_err(p.grad, truth[name], grad_scale)
            theirs = rel_err(ref_grad, truth[name], grad_scale)
            assert ours <= 2 * theirs + tol, f"{name}: {ours:.2e} vs torch's {theirs:.2e}"
            continue
        assert_rel_close(p.grad, ref_grad, tol, f"{name} gradient", floor=grad_scale)
    for (name, b), (ref_name, ref_b) in zip(
        model.named_buffers(), ref_model.named_buffers(), strict=True
    ):
        assert name == ref_name
        assert_rel_close(b.to(ref_b.dtype), ref_b, tol, f"buffer {name}")


def _float64_param_grads(
    ref_model: torch.nn.Module, x: torch.Tensor, r: torch.Tensor, seed: int
) -> dict[str, torch.Tensor]:
    """Parameter gradients of the twin recomputed in float64 (the exact-arithmetic stand-in)."""
    import copy

    twin64 = copy.deepcopy(ref_model).double()
    twin64.zero_grad()
    torch.manual_seed(seed)
    with torch.enable_grad():
        (twin64(x.double()) * r.double()).sum().backward()
    return {n: p.grad.float() for n, p in twin64.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_against_autograd(name: str, mode: str, batch: int, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(hash((name, batch)) % 2**31)
    width = 3 + batch % 5
    layer = LAYERS[name](width).to(dtype=dtype)
    _randomize(layer, gen)
    if mode == "eval":
        layer.eval()
        if isinstance(layer, nn.BatchNorm1d):
            layer.running_mean.copy_(torch.randn(width, generator=gen, dtype=dtype))
            layer.running_var.copy_(torch.rand(width, generator=gen, dtype=dtype) + 0.5)
    elif isinstance(layer, nn.BatchNorm1d) and batch == 1:
        with pytest.raises(ValueError, match="more than 1 sample"):
            layer(torch.randn(1, width, dtype=dtype))
        return
    if (
        isinstance(layer, nn.BatchNorm1d)
        and mode == "train"
        and batch == 2
        and dtype == torch.float32
    ):
        # With two samples x̂ = ±1 whatever x is, so dL/dx is pure float32 rounding noise
        # (relative error ~1e-3 in torch too); float64 checks this case to 1e-10.
        return
    shape = (batch, 2, width) if name == "Flatten" else (batch, width)
    x = torch.randn(shape, generator=gen, dtype=dtype) * 2
    _check(layer, x, dtype, seed=batch)


def _random_stack(rng: random.Random, d_in: int, batch: int, dtype: torch.dtype) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = d_in
    for _ in range(rng.randint(2, 5)):
        new = rng.randint(1, 12)
        layers.append(nn.Linear(width, new, bias=rng.random() < 0.8))
        width = new
        extra = rng.choice(
            [
                "ReLU",
                "LeakyReLU",
                "Tanh",
                "Sigmoid",
                "GELU",
                "GELU(tanh)",
                "LayerNorm",
                "Dropout",
                "BatchNorm1d",
                "Softmax",
                "LogSoftmax",
            ]
        )
        if extra == "BatchNorm1d" and (batch == 1 or (batch == 2 and dtype == torch.float32)):
            extra = "Tanh"  # N=1 cannot train; N=2 in float32 is rounding noise (see above)
        layers.append(LAYERS[extra](width))
    return nn.Sequential(*layers).to(dtype=dtype)  # type: ignore[return-value]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("seed", range(6))
def test_random_stack_against_autograd(seed: int, batch: int, dtype: torch.dtype) -> None:
    rng = random.Random(seed * 100 + batch)
    d_in = rng.randint(1, 10)
    model = _random_stack(rng, d_in, batch, dtype)
    gen = torch.Generator().manual_seed(seed)
    _randomize(model, gen)
    if seed % 3 == 2:
        model.eval()
    x = torch.randn(batch, d_in, generator=gen, dtype=dtype)
    _check(model, x, dtype, seed=seed)


def _loss_cases(n: int, c: int, dtype: torch.dtype, gen: torch.Generator) -> list:
    x = torch.randn(n, c, generator=gen, dtype=dtype) * 3
    t_idx = torch.randint(0, c, (n,), generator=gen)
    t_prob = torch.softmax(torch.randn(n, c, generator=gen, dtype=dtype), 1)
    t_real = torch.randn(n, c, generator=gen, dtype=dtype)
    cases = []
    for red in ("mean", "sum", "none"):
        cases += [
            (nn.MSELoss(red), x, t_real),
            (nn.CrossEntropyLoss(red), x, t_idx),
            (nn.CrossEntropyLoss(red, label_smoothing=0.1), x, t_idx),
            (nn.CrossEntropyLoss(red), x, t_prob),
            (nn.CrossEntropyLoss(red, label_smoothing=0.2), x, t_prob),
            (nn.NLLLoss(red), torch.log_softmax(x, 1), t_idx),
        ]
    cases.append((nn.SumSquaredLoss(), x, t_real))
    return cases


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch", BATCHES)
def test_losses_against_autograd(batch: int, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(batch)
    tol = RTOL[dtype]
    for loss, x, target in _loss_cases(batch, 5, dtype, gen):
        value = loss(x, target)
        upstream = None
        if loss.reduction == "none":
            upstream = torch.randn(value.shape, generator=gen, dtype=dtype)
        grad = loss.backward(upstream)
        x_t = x.clone().requires_grad_(True)
        with torch.enable_grad():
            ref = loss_to_torch(loss)(x_t, target)
            ref.backward(upstream)
        assert x_t.grad is not None
        assert_rel_close(value, ref.detach(), tol, f"{loss!r} value")
        assert_rel_close(grad, x_t.grad, tol, f"{loss!r} gradient")


def test_loss_backward_scales_by_grad_output() -> None:
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0, 2, 1, 1])
    loss = nn.CrossEntropyLoss()
    loss(x, t)
    g1 = loss.backward()
    loss(x, t)  # one backward per forward
    g3 = loss.backward(torch.tensor(3.0, dtype=torch.float64))
    assert torch.allclose(g3, 3 * g1)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cross_entropy_is_exact_at_extreme_logits(dtype: torch.dtype) -> None:
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [5.0, 5.0, -1e4]], dtype=dtype)
    t = torch.tensor([1, 2, 0])
    loss = nn.CrossEntropyLoss(reduction="sum")
    value = loss(x, t)
    grad = loss.backward()
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    x_t = x.clone().requires_grad_(True)
    with torch.enable_grad():
        ref = torch.nn.functional.cross_entropy(x_t, t, reduction="sum")
        ref.backward()
    assert value.item() == pytest.approx(2e4 + 0 + float(torch.log(torch.tensor(2.0))), rel=1e-6)
    assert_rel_close(value, ref.detach(), RTOL[dtype], "value")
    assert x_t.grad is not None
    assert_rel_close(grad, x_t.grad, RTOL[dtype], "gradient")


def test_log_softmax_is_stable_where_the_naive_form_overflows() -> None:
    x = torch.tensor([[100.0, 0.0, -100.0]])
    naive = torch.log(torch.exp(x) / torch.exp(x).sum(1, keepdim=True))
    stable = nn.LogSoftmax()(x)
    assert not torch.isfinite(naive).all()
    assert torch.isfinite(stable).all()
    assert torch.allclose(stable, torch.log_softmax(x, 1))


def test_autograd_gradients_reports_every_module() -> None:
    torch.manual_seed(0)
    model = nn.mlp("6-5-3", "tanh").double()
    x = torch.randn(4, 6, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 1])
    loss = nn.CrossEntropyLoss()
    res = autograd_gradients(model, loss, x, t)
    out = model(x)
    loss(out, t)
    model.zero_grad()
    grad_x = model.backward(loss.backward(), input_grad=True)
    assert set(res.module_grads) == {"0", "1", "2"}
    assert_rel_close(grad_x, res.input_grad, 1e-12, "input")
    assert_rel_close(model[0].weight.grad, res.param_grads["0.weight"], 1e-12, "0.weight")


@pytest.mark.parametrize("batch", [31, 32, 1000])
def test_cross_entropy_gradient_is_row_major_on_both_sides_of_the_switch(batch: int) -> None:
    """From 32 rows the log-softmax is computed down the columns of xᵀ (column-major inside);
    the values equal autograd's, and the gradient handed back is an ordinary row-major tensor."""
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 10, generator=gen) * 4
    t = torch.randint(0, 10, (batch,), generator=gen)
    for loss in (nn.CrossEntropyLoss(), nn.CrossEntropyLoss("none", label_smoothing=0.1)):
        value = loss(x, t)
        upstream = torch.rand(batch, generator=gen) if loss.reduction == "none" else None
        grad = loss.backward(upstream)
        assert grad.is_contiguous() and grad.shape == (batch, 10)
        x_t = x.clone().requires_grad_(True)
        with torch.enable_grad():
            ref = loss_to_torch(loss)(x_t, t)
            ref.backward(upstream)
        assert x_t.grad is not None
        assert_rel_close(value, ref.detach(), RTOL[torch.float32], f"{loss!r} value")
        assert_rel_close(grad, x_t.grad, RTOL[torch.float32], f"{loss!r} gradient")
