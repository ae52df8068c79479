"""The Module API: names, state dicts both ways with torch.nn, modes, dtype/device, accumulation,
flat parameter buffers, repr, and clear errors for bad input."""

from __future__ import annotations

import pytest
import torch

from handgrad import nn
from handgrad.nn.flat import flat_view
from handgrad.reference import to_torch

ALL_LAYERS = {
    "Linear": lambda: nn.Linear(5, 3),
    "Linear(no bias)": lambda: nn.Linear(5, 3, bias=False),
    "ReLU": nn.ReLU,
    "LeakyReLU": lambda: nn.LeakyReLU(0.1),
    "Tanh": nn.Tanh,
    "Sigmoid": nn.Sigmoid,
    "GELU": nn.GELU,
    "Softmax": nn.Softmax,
    "LogSoftmax": nn.LogSoftmax,
    "Dropout": lambda: nn.Dropout(0.2),
    "BatchNorm1d": lambda: nn.BatchNorm1d(5),
    "BatchNorm1d(no affine)": lambda: nn.BatchNorm1d(5, affine=False),
    "LayerNorm": lambda: nn.LayerNorm(5),
    "LayerNorm(no bias)": lambda: nn.LayerNorm(5, bias=False),
    "Flatten": nn.Flatten,
    "mlp": lambda: nn.mlp("5-4-3", "relu", norm="batchnorm", dropout=0.1),
}


@pytest.mark.parametrize("name", list(ALL_LAYERS))
def test_state_dict_round_trips_with_torch(name: str) -> None:
    torch.manual_seed(0)
    model = ALL_LAYERS[name]()
    for t in model.state_dict().values():
        if t.is_floating_point():
            t.copy_(torch.randn(t.shape))
    twin = to_torch(model)
    # handgrad -> torch, strict
    fresh_twin = to_torch(ALL_LAYERS[name]())
    fresh_twin.load_state_dict(model.state_dict(), strict=True)
    for key, value in twin.state_dict().items():
        assert torch.equal(fresh_twin.state_dict()[key], value), key
    # torch -> handgrad, strict
    for t in twin.state_dict().values():
        if t.is_floating_point():
            t.copy_(torch.randn(t.shape))
    other = ALL_LAYERS[name]()
    other.load_state_dict(twin.state_dict())
    assert list(other.state_dict()) == list(twin.state_dict())
    for key, value in twin.state_dict().items():
        assert other.state_dict()[key].shape == value.shape
        assert torch.equal(other.state_dict()[key], value), key


def test_linear_default_init_equals_torch_from_the_same_seed() -> None:
    torch.manual_seed(3)
    ours = nn.Linear(20, 7)
    torch.manual_seed(3)
    theirs = torch.nn.Linear(20, 7)
    assert torch.equal(ours.weight, theirs.weight.detach())
    assert ours.bias is not None
    assert torch.equal(ours.bias, theirs.bias.detach())


def test_in_out_draw_order_reproduces_notebook_weights() -> None:
    torch.manual_seed(1337)
    w1 = torch.zeros(784, 50).normal_(0, 1e-3)
    torch.manual_seed(1337)
    layer = nn.Linear(784, 50, init="normal", std=1e-3, draw_order="in_out")
    assert torch.equal(layer.weight, w1.t())


@pytest.mark.parametrize("init", ["normal", "xavier_uniform", "xavier_normal", "kaiming_normal"])
def test_inits_have_their_documented_spread(init: str) -> None:
    torch.manual_seed(0)
    w = nn.Linear(400, 300, init=init, std=0.5).weight
    expected = {
        "normal": 0.5,
        "xavier_uniform": (6 / 700) ** 0.5 / 3**0.5,
        "xavier_normal": (2 / 700) ** 0.5,
        "kaiming_normal": (2 / 400) ** 0.5,
    }[init]
    assert w.std().item() == pytest.approx(expected, rel=0.02)


def test_names_follow_torch() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Sequential(nn.Linear(3, 2)))
    names = [n for n, _ in model.named_parameters()]
    twin_names = [n for n, _ in to_torch(model).named_parameters()]
    assert names == ["0.weight", "0.bias", "2.0.weight", "2.0.bias"] == twin_names
    assert len(model) == 3 and isinstance(model[1], nn.ReLU)
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Sequential"]


def test_parameters_never_require_grad_and_gradients_accumulate() -> None:
    layer = nn.Linear(3, 2).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    g = torch.randn(4, 2, dtype=torch.float64)
    assert all(not p.requires_grad for p in layer.parameters())
    layer(x)
    layer.backward(g)
    once = layer.weight.grad.clone()
    layer(x)
    layer.backward(g)
    assert torch.allclose(layer.weight.grad, 2 * once)
    layer.zero_grad(set_to_none=False)
    assert torch.count_nonzero(layer.weight.grad) == 0
    layer.zero_grad()  # torch 2.x's default: None, and the next backward writes a fresh one
    assert layer.weight.grad is None
    layer(x)
    layer.backward(g)
    assert torch.allclose(layer.weight.grad, once)


def test_train_eval_switches_every_module() -> None:
    model = nn.mlp("4-3-2", "relu", dropout=0.5, norm="batchnorm")
    assert model.eval() is model
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    x = torch.randn(8, 4)
    model.eval()
    assert torch.equal(model(x), model(x)), "eval mode must be deterministic"


def test_to_changes_dtype_and_keeps_grads_in_step() -> None:
    model = nn.mlp("4-3-2", "tanh", norm="batchnorm")
    assert model.to(dtype=torch.float64) is model
    for p in model.parameters():
        assert p.dtype == torch.float64 and p.grad is not None
        assert p.grad.dtype == torch.float64
    bn = model[1]
    assert isinstance(bn, nn.BatchNorm1d)
    assert bn.running_mean.dtype == torch.float64
    assert bn.num_batches_tracked.dtype == torch.long
    out = model(torch.randn(5, 4, dtype=torch.float64))
    assert out.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_to_cuda_runs_forward_and_backward() -> None:
    model = nn.mlp("4-3-2", "relu").to(device="cuda")
    out = model(torch.randn(5, 4, device="cuda"))
    grad = model.backward(torch.ones_like(out), input_grad=True)
    assert grad.device.type == "cuda"


def test_flatten_parameters_makes_one_buffer_and_keeps_values() -> None:
    torch.manual_seed(0)
    model = nn.mlp("6-5-4-3", "relu", norm="layernorm")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 6)
    with nn.no_saved_state():  # a forward that gets no backward
        out_before = model(x)
    model.flatten_parameters()
    params = list(model.parameters())
    flat = flat_view(params)
    grads = flat_view([p.grad for p in params])  # type: ignore[misc]
    assert flat is not None and grads is not None
    assert flat.numel() == model.num_parameters()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    out = model(x)
    assert torch.equal(out, out_before)
    model.backward(torch.ones_like(out))
    assert torch.count_nonzero(grads) > 0
    model.zero_grad(set_to_none=False)
    assert torch.count_nonzero(grads) == 0
    model.load_state_dict(before)
    assert flat_view(list(model.parameters())) is not None, "loading must keep the views"
    model.to(dtype=torch.float64)
    assert flat_view(list(model.parameters())) is not None, ".to() must keep one buffer"


def test_repr_is_informative() -> None:
    model = nn.mlp("784-50-10", "tanh", out_act="tanh")
    text = repr(model)
    assert "(0): Linear(in_features=784, out_features=50, bias=True)" in text
    assert "(3): Tanh()" in text
    assert repr(nn.CrossEntropyLoss(label_smoothing=0.1)) == (
        "CrossEntropyLoss(reduction='mean', label_smoothing=0.1)"
    )


# -- bad input ---------------------------------------------------------------------------------


def test_linear_names_expected_and_received_shape() -> None:
    layer = nn.Linear(784, 50)
    with pytest.raises(ValueError) as err:
        layer(torch.randn(32, 28, 28))
    msg = str(err.value)
    assert "Linear(in_features=784, out_features=50" in msg
    assert "expected input of shape (*, 784), got (32, 28, 28)" in msg


@pytest.mark.parametrize(
    ("module", "bad", "error", "match"),
    [
        (nn.Linear(3, 2), torch.randn(4, 3, dtype=torch.float64), TypeError, "float64"),
        (nn.Linear(3, 2), torch.ones(4, 3, dtype=torch.long), TypeError, "floating-point"),
        (nn.Linear(3, 2), [[1.0, 2.0, 3.0]], TypeError, "expected a tensor"),
        (nn.BatchNorm1d(3), torch.randn(4, 5), ValueError, r"\(N, 3\) or \(N, 3, L\)"),
        (nn.LayerNorm(3), torch.randn(4, 5), ValueError, r"\(\*, 3\)"),
        (nn.Tanh(), "x", TypeError, "expected a tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(
    module: nn.Module, bad: object, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        module(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(ALL_LAYERS))
def test_backward_before_forward_is_an_error(name: str) -> None:
    module = ALL_LAYERS[name]()
    with pytest.raises(ValueError, match="backward called before forward"):
        module.backward(torch.ones(2, 3))


def test_backward_with_wrong_gradient_shape() -> None:
    layer = nn.Linear(3, 2)
    layer(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"expected grad_output of shape \(4, 2\), got \(4, 3\)"):
        layer.backward(torch.ones(4, 3))


@pytest.mark.parametrize(
    ("loss", "x", "target", "error", "match"),
    [
        (
            nn.CrossEntropyLoss(),
            torch.randn(4, 3),
            torch.tensor([0, 1, 3, 0]),
            ValueError,
            r"in \[0, 2\]",
        ),
        (
            nn.CrossEntropyLoss(),
            torch.randn(4, 3),
            torch.tensor([0, 1]),
            ValueError,
            r"shape \(4,\)",
        ),
        (
            nn.CrossEntropyLoss(),
            torch.randn(4, 3),
            torch.randn(4, 3, dtype=torch.float64),
            TypeError,
            "float64",
        ),
        (nn.NLLLoss(), torch.randn(4, 3), torch.randn(4, 3), TypeError, "int64"),
        (nn.MSELoss(), torch.randn(4, 1), torch.randn(4), ValueError, "unsqueeze"),
        (
            nn.MSELoss(),
            torch.randn(4, 2),
            torch.ones(4, 2, dtype=torch.long),
            TypeError,
            "floating-point target",
        ),
    ],
)
def test_loss_targets_of_the_wrong_kind(
    loss: nn.Loss, x: torch.Tensor, target: torch.Tensor, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        loss(x, target)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="in_features must be a positive integer, got 0"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="did you mean xavier_normal"):
        nn.Linear(3, 3, init="xavier_norml")
    with pytest.raises(ValueError, match="did you mean mean"):
        nn.MSELoss(reduction="meen")
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="did you mean tanh"):
        nn.mlp("4-3-2", "tahn")
    with pytest.raises(ValueError, match="like 784-50-10"):
        nn.mlp("784x50", "relu")


def test_load_state_dict_names_missing_extra_and_misshaped_keys() -> None:
    model = nn.mlp("4-3-2", "relu")
    state = dict(model.state_dict())
    with pytest.raises(ValueError, match=r"missing keys \['2.bias'\]"):
        model.load_state_dict({k: v for k, v in state.items() if k != "2.bias"})
    with pytest.raises(ValueError, match=r"unexpected keys \['9.weight'\]"):
        model.load_state_dict({**state, "9.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"0.weight has shape \(4, 3\), expected \(3, 4\)"):
        model.load_state_dict({**state, "0.weight": torch.zeros(4, 3)})
    with pytest.raises(TypeError, match="not a tensor"):
        model.load_state_dict({**state, "0.bias": [0.0, 0.0, 0.0]})  # type: ignore[dict-item]
    assert torch.equal(model.state_dict()["0.weight"], state["0.weight"]), "nothing half-loaded"


def test_dropout_matches_torch_mask_and_is_identity_in_eval() -> None:
    x = torch.randn(50, 20)
    torch.manual_seed(5)
    ours = nn.Dropout(0.4)(x)
    torch.manual_seed(5)
    theirs = torch.nn.Dropout(0.4)(x)
    assert torch.equal(ours, theirs)
    d = nn.Dropout(0.4).eval()
    assert torch.equal(d(x), x)
    assert torch.equal(d.backward(x, input_grad=True), x)


def test_skipping_the_input_gradient_keeps_parameter_gradients() -> None:
    torch.manual_seed(0)
    model = nn.mlp("6-5-3", "relu").double()
    x = torch.randn(4, 6, dtype=torch.float64)
    g = torch.randn(4, 3, dtype=torch.float64)
    model(x)
    full = model.backward(g, input_grad=True)
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x)
    by_default = model.backward(g)  # x is data: dL/dx skipped, as torch does
    assert full is not None and full.shape == (4, 6) and by_default is None
    for p, expected in zip(model.parameters(), grads, strict=True):
        assert torch.equal(p.grad, expected)
    model.zero_grad()
    model.input_grad = False
    assert not model.input_grad
    model(x.requires_grad_(True))
    skipped = model.backward(g)  # off even though x requires grad
    assert skipped is None
    for p, expected in zip(model.parameters(), grads, strict=True):
        assert torch.equal(p.grad, expected)


@pytest.mark.parametrize("bias", [True, False])
def test_large_batches_in_row_blocks_give_the_same_bits(bias: bool) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(30, 7, bias=bias)
    x = torch.randn(5000, 30)  # above the row-block threshold, not a multiple of the block
    w_t = layer.weight.t()
    expected = torch.mm(x, w_t) if layer.bias is None else torch.addmm(layer.bias, x, w_t)
    assert torch.equal(layer(x), expected)
