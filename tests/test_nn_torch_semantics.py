"""Each PyTorch habit that used to give a silently wrong result (issue 14): now correct as
torch computes it, or a one-line error that says what happened and what to do."""

from __future__ import annotations

import io

import pytest
import torch
from torch import Tensor

from handgrad import nn
from handgrad.nn import flat
from handgrad.reference import to_torch

D = torch.float64


def _data(n: int = 8, d: int = 5, c: int = 3) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=gen, dtype=D), torch.randint(0, c, (n,), generator=gen)


def _model(flatten: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.mlp("5-4-3", "tanh").double()
    return model.flatten_parameters() if flatten else model


def _torch_grads(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    twin = to_torch(model)
    torch.nn.CrossEntropyLoss()(twin(x), y).backward()
    return {k: p.grad for k, p in twin.named_parameters() if p.grad is not None}


def _step(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    loss = nn.CrossEntropyLoss()
    value = loss(model(x), y)
    model.backward(loss.backward())
    return value


@pytest.mark.parametrize("flatten", [False, True], ids=["plain", "flat"])
def test_grad_set_to_none_gets_a_fresh_gradient(flatten: bool) -> None:
    model = _model(flatten)
    x, y = _data()
    expected = _torch_grads(model, x, y)
    for p in model.parameters():
        p.grad = None  # what torch's zero_grad() does by default
    _step(model, x, y)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.allclose(p.grad, expected[name], atol=1e-12), name
    if flatten:  # the grads are back in their slots of the one flat buffer
        grads = flat.flat_view([p.grad for p in model.parameters()])  # type: ignore[misc]
        assert grads is not None and grads.data_ptr() == model._flat_grads.data_ptr()
    _step(model, x, y)  # an existing .grad is added into, as autograd does
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, 2 * expected[name], atol=1e-12), name  # type: ignore[arg-type]


def test_torch_optim_sgd_trains_a_handgrad_model() -> None:
    model = _model()
    x, y = _data(32)
    opt = torch.optim.SGD(list(model.parameters()), lr=0.5)  # its zero_grad() sets None
    losses = []
    for _ in range(20):
        opt.zero_grad()
        losses.append(float(_step(model, x, y)))
        opt.step()
    assert losses[-1] < 0.8 * losses[0]


def test_a_saved_and_loaded_model_still_trains() -> None:
    model = _model(flatten=True)
    x, y = _data()
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for p in loaded.parameters():
        p.grad = None
    _step(loaded, x, y)
    expected = _torch_grads(model, x, y)
    for name, p in loaded.named_parameters():
        assert p.grad is not None and torch.allclose(p.grad, expected[name], atol=1e-12), name


def test_a_module_used_twice_backpropagates_each_use_with_its_own_input() -> None:
    torch.manual_seed(0)
    act = nn.Tanh()
    square = nn.Linear(4, 4).double()
    model = nn.Sequential(nn.Linear(5, 4).double(), act, square, act, square, nn.Linear(4, 3))
    model.double()
    x, y = _data()
    twin_first, twin_square, twin_last = (to_torch(model[i]) for i in (0, 2, 5))
    tanh = torch.nn.Tanh()
    twin = torch.nn.Sequential(twin_first, tanh, twin_square, tanh, twin_square, twin_last)
    torch.nn.CrossEntropyLoss()(twin(x), y).backward()
    model.zero_grad()
    _step(model, x, y)
    expected = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.allclose(p.grad, expected[name].grad, atol=1e-12)


def test_a_backward_after_two_forwards_raises_rather_than_guessing() -> None:
    layer = nn.Linear(5, 3).double()
    x1, _ = _data()
    x2 = x1 + 1
    o1 = layer(x1)
    layer(x2)
    with pytest.raises(RuntimeError, match=r"Linear\(.*two forward calls.*no_saved_state"):
        layer.backward(torch.ones_like(o1))
    # the forward that needs no backward, run without saved state: the backward is o1's
    layer.zero_grad()
    o1 = layer(x1)
    with nn.no_saved_state():
        layer(x2)
    layer.backward(torch.ones_like(o1))
    assert layer.weight.grad is not None
    assert torch.allclose(layer.weight.grad, torch.ones(8, 3, dtype=D).t() @ x1)


def test_a_second_backward_of_one_forward_raises_naming_the_module() -> None:
    model = _model()
    x, y = _data()
    out = model(x)
    model.backward(torch.ones_like(out))
    with pytest.raises(RuntimeError, match=r"Sequential\(\): trying to backward .* second time"):
        model.backward(torch.ones_like(out))
    loss = nn.CrossEntropyLoss()
    loss(out, y)
    loss.backward()
    with pytest.raises(RuntimeError, match=r"CrossEntropyLoss.*second time"):
        loss.backward()
    with pytest.raises(ValueError, match="backward called before forward"):
        nn.ReLU().backward(torch.ones(2))


def test_evaluation_in_eval_mode_then_training_is_the_usual_loop() -> None:
    model = _model()
    x, y = _data()
    model.eval()
    model(x)  # an evaluation, never backpropagated
    model.train()
    _step(model, x, y)  # fine: that evaluation is dropped
    out = model(x)
    model.eval()
    model(x)  # an evaluation between a training forward and its backward
    model.train()
    with pytest.raises(RuntimeError, match="two forward calls"):
        model.backward(torch.ones_like(out))
    _step(model, x, y)  # after the error, the next step starts clean


def test_a_forward_that_raised_leaves_nothing_behind() -> None:
    model = _model()
    x, y = _data()
    with pytest.raises(ValueError):
        model(torch.randn(3, 7, dtype=D))
    _step(model, x, y)


@pytest.mark.parametrize("flatten", [False, True], ids=["plain", "flat"])
@pytest.mark.parametrize("how", ["to", "flatten"])
def test_replaced_parameters_are_detectable(flatten: bool, how: str) -> None:
    model = _model(flatten)
    old = list(model.parameters())
    count = flat.move_count()
    if how == "to":
        model.to(torch.float32)
    else:
        model.flatten_parameters()
    new = list(model.parameters())
    assert flat.move_count() > count
    for o, n in zip(old, new, strict=True):
        assert flat.replacement(o) is n
        assert flat.replacement(n) is None


def test_the_input_gradient_is_computed_when_torch_computes_it() -> None:
    model = _model()
    x, _ = _data()
    g = torch.ones(8, 3, dtype=D)
    model(x)
    assert model.backward(g) is None  # data: nothing needs dL/dx
    model(x.clone().requires_grad_(True))
    assert model.backward(g).shape == x.shape  # type: ignore[union-attr]
    model(x)
    assert model.backward(g, input_grad=True).shape == x.shape  # type: ignore[union-attr]
    first, second = nn.Linear(5, 4).double(), nn.Linear(4, 3).double()
    second(first(x))  # the output of a handgrad module with parameters requires grad
    assert second.backward(g).shape == (8, 4)  # type: ignore[union-attr]
    assert first.backward(torch.ones(8, 4, dtype=D)) is None
    # a parameter-free first layer on data: nothing below the Linear needs a gradient
    images = nn.Sequential(nn.Flatten(), nn.Linear(6, 3).double())
    for _ in range(2):  # the Flatten's saved forward is freed with the step
        images(torch.randn(4, 2, 3, dtype=D))
        assert images.backward(torch.ones(4, 3, dtype=D)) is None
    images(torch.randn(4, 2, 3, dtype=D))
    grad = images.backward(torch.ones(4, 3, dtype=D), input_grad=True)
    assert grad is not None and grad.shape == (4, 2, 3)


class _Scale(nn.Module):
    """A user's module written the torch 2.x way: accumulate_grad, since .grad may be None."""

    def __init__(self) -> None:
        super().__init__()
        self.register_parameter("s", torch.full((1,), 2.0, dtype=D))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        self._x = x
        return x * self.s

    def backward(self, grad_output: Tensor) -> Tensor:  # type: ignore[override]
        nn.accumulate_grad(self.s, (grad_output * self._x).sum().reshape(1))  # dL/ds = Σ g·x
        return grad_output * self.s


def test_a_users_module_reused_with_accumulate_grad() -> None:
    scale = _Scale()
    model = nn.Sequential(scale, nn.Tanh(), scale)
    x = torch.randn(4, 3, dtype=D)
    scale.zero_grad()
    assert scale.s.grad is None
    out = model(x)
    grad_x = model.backward(torch.ones_like(out), input_grad=True)
    s = torch.full((1,), 2.0, dtype=D, requires_grad=True)
    x_t = x.clone().requires_grad_(True)
    (torch.tanh(x_t * s) * s).sum().backward()
    assert torch.allclose(scale.s.grad, s.grad, atol=1e-12)  # type: ignore[arg-type]
    assert torch.allclose(grad_x, x_t.grad, atol=1e-12)  # type: ignore[arg-type]


def test_keyword_input() -> None:
    model = _model()
    x, y = _data()
    loss = nn.CrossEntropyLoss()
    value = loss(input=model(input=x), target=y)
    assert torch.allclose(value, torch.nn.CrossEntropyLoss()(to_torch(model)(x), y))
    with pytest.raises(TypeError, match="Sequential"):
        model(inputs=x)


def test_the_checker_follows_the_new_options() -> None:
    from handgrad.check import gradcheck

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 5),
        nn.BatchNorm1d(5, track_running_stats=False, bias=False),
        nn.Tanh(),
        nn.Linear(5, 3),
    ).double()
    x = torch.randn(8, 6, dtype=D)
    y = torch.tensor([0, 1, 2, -100, 1, 0, 2, 1])
    weight = torch.tensor([0.5, 2.0, 1.0], dtype=D)
    report = gradcheck(model, nn.CrossEntropyLoss(weight, label_smoothing=0.1), x, y)
    assert report.ok, str(report)
    images = nn.Sequential(
        nn.LayerNorm((2, 3)), nn.Flatten(), nn.Linear(6, 4), nn.LogSoftmax(dim=1)
    ).double()
    nll = nn.NLLLoss(weight=torch.rand(4, dtype=D), ignore_index=2)
    x = torch.randn(5, 2, 3, dtype=D)
    report = gradcheck(images, nll, x, torch.tensor([0, 2, 3, 1, 0]))
    assert report.ok, str(report)
    assert report.row("0 (LayerNorm) input").verdict == "ok"


def test_a_plain_model_writes_its_own_gradient_tensors_again() -> None:
    model = _model()
    x, y = _data()
    expected = _torch_grads(model, x, y)
    _step(model, x, y)
    first = [p.grad for p in model.parameters()]
    addresses = [g.data_ptr() for g in first]  # type: ignore[union-attr]
    del first  # nothing but the parameters' own boxes holds the tensors now
    for p in model.parameters():
        p.grad = None
    _step(model, x, y)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, expected[name], atol=1e-12), name  # type: ignore[arg-type]
    assert [p.grad.data_ptr() for p in model.parameters()] == addresses  # type: ignore[union-attr]


def test_a_gradient_kept_from_the_last_step_keeps_its_values() -> None:
    # torch: zero_grad(set_to_none=True) then backward gives new tensors; a .grad the user kept
    # (to log or compare) is not written into.
    model = _model()
    x, y = _data()
    _step(model, x, y)
    kept = [p.grad for p in model.parameters()]
    copies = [g.clone() for g in kept]  # type: ignore[union-attr]
    for p in model.parameters():
        p.grad = None
    _step(model, x * 3.0, y)
    for p, old, copy in zip(model.parameters(), kept, copies, strict=True):
        assert p.grad is not old and torch.equal(old, copy)  # type: ignore[arg-type]
        assert not torch.equal(p.grad, copy)  # type: ignore[arg-type]


def test_saved_and_copied_models_carry_no_gradient_memory() -> None:
    import copy

    model = nn.mlp("50-40-3", "relu").double()
    x = torch.randn(4, 50, dtype=D)
    size_before = _saved_size(model)
    model(x)
    model.backward(torch.ones(4, 3, dtype=D))
    for p in model.parameters():
        p.grad = None  # the parameters still hold their gradient tensors for the next backward
    grad_bytes = 8 * sum(p.numel() for p in model.parameters())
    assert _saved_size(model) - size_before < grad_bytes / 2  # (the saved inputs are small)
    twin = copy.deepcopy(model)
    twin(x)
    twin.backward(torch.ones(4, 3, dtype=D))  # its own gradients, not the original's memory
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert p.grad is None and q.grad is not None


def _saved_size(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    return buffer.tell()


def _pending_forward_then(overwrite: str) -> tuple[nn.Module, Tensor, Tensor]:
    """A Linear's forward on x1 waits for its backward while ``overwrite`` runs the layer on
    x2 in a way that goes around ``__call__``'s record; returns (layer, x1, g)."""
    torch.manual_seed(0)
    layer: nn.Module = nn.Linear(5, 3).double()
    x1, _ = _data()
    x2 = x1 * 3 + 1
    out = layer(x1)
    if overwrite == "direct forward":
        layer.forward(x2)
    elif overwrite == "no_saved_state":
        with nn.no_saved_state():
            layer(x2)
    elif overwrite == "deepcopy":
        import copy

        layer = copy.deepcopy(layer)
        layer.forward(x2)
    elif overwrite == "pickle":
        buffer = io.BytesIO()
        torch.save(layer, buffer)
        buffer.seek(0)
        layer = torch.load(buffer, weights_only=False)
        layer.forward(x2)
    return layer, x1, torch.ones_like(out)


@pytest.mark.parametrize(
    "overwrite",
    ["direct forward", "no_saved_state", "deepcopy", "pickle"],
)
def test_a_waiting_forward_keeps_its_input_whatever_runs_the_layer_meanwhile(
    overwrite: str,
) -> None:
    # A forward's record points at the module's attributes until something overwrites them;
    # each way of overwriting them copies them first, so the backward is x1's.
    layer, x1, g = _pending_forward_then(overwrite)
    layer.zero_grad()
    layer.backward(g)
    assert layer.weight.grad is not None
    assert torch.allclose(layer.weight.grad, g.t() @ x1, atol=1e-12)


def test_a_forward_replaced_on_the_class_is_the_one_that_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = nn.Tanh()
    x, _ = _data()
    calls: list[int] = []
    original = nn.Tanh.forward

    def counted(self: nn.Tanh, x: Tensor) -> Tensor:
        calls.append(1)
        return original(self, x)

    monkeypatch.setattr(nn.Tanh, "forward", counted)
    out = layer(x)
    layer.forward(x * 2)  # a direct call of the new forward, between forward and backward
    grad = layer.backward(torch.ones_like(out), input_grad=True)
    assert len(calls) == 2
    assert torch.allclose(grad, 1 - torch.tanh(x) ** 2, atol=1e-12)


def test_a_forward_set_on_the_instance_keeps_each_use_apart() -> None:
    # An instance's own forward (here the unwrapped one, which copies nothing), set while an
    # earlier use waits: __call__'s general path keeps that use's attributes first.
    torch.manual_seed(0)
    square = nn.Linear(4, 4).double()
    raw = type(square).forward._hg_raw  # type: ignore[attr-defined]

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.square = square

        def forward(self, x: Tensor) -> Tensor:
            self._h = torch.tanh(self.square(x))
            square.forward = lambda x: raw(square, x)  # type: ignore[method-assign]
            return self.square(self._h)

        def backward(self, g: Tensor) -> None:
            g_h = self.square.backward(g, input_grad=True)
            self.square.backward(g_h * (1 - self._h**2))

    x, g = torch.randn(8, 4, dtype=D), torch.randn(8, 4, dtype=D)
    twin = to_torch(square)
    twin(torch.tanh(twin(x))).backward(g)
    model = Twice()
    model.zero_grad()
    model(x)
    model.backward(g)
    assert square.weight.grad is not None and twin.weight.grad is not None
    assert torch.allclose(square.weight.grad, twin.weight.grad, atol=1e-12)


@pytest.mark.parametrize("kind", ["Adam", "RMSprop", "SGD"])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_and_optimizer_go_on_as_the_original(kind: str, how: str) -> None:
    # torch's optimizers copy and pickle with their model; the copy continues step for step.
    import copy
    import pickle

    from handgrad import optim

    model = _model()
    opt = getattr(optim, kind)(
        model.parameters(), lr=0.05, **({"momentum": 0.9} if kind != "Adam" else {})
    )
    x, y = _data()
    for _ in range(3):
        opt.zero_grad()
        _step(model, x, y)
        opt.step()
    twin_model, twin_opt = (
        copy.deepcopy((model, opt))
        if how == "deepcopy"
        else pickle.loads(pickle.dumps((model, opt)))
    )
    for m, o in ((model, opt), (twin_model, twin_opt)):
        for _ in range(3):
            o.zero_grad()
            _step(m, x, y)
            o.step()
    for a, b in zip(model.parameters(), twin_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert twin_opt.steps_taken == opt.steps_taken == 6


@pytest.mark.parametrize("norm", [None, "layernorm", "batchnorm"])
@pytest.mark.parametrize("zero", ["set_to_none", "zeros"])
def test_an_input_that_requires_grad_leaves_no_graph_in_the_gradients(
    norm: str | None, zero: str
) -> None:
    # torch's .grad is data; an input with requires_grad=True used to put autograd's graph
    # (AddmmBackward0, ...) into every accumulated .grad, kept alive from step to step.
    torch.manual_seed(0)
    model = nn.mlp("5-4-3", "relu", norm=norm).double()
    x, y = _data()
    plain = {}
    for requires in (False, True):
        model.zero_grad(set_to_none=zero == "set_to_none")
        for _ in range(2):  # the second backward adds into the first's .grad
            _step(model, x.clone().requires_grad_(requires), y)
        for name, p in model.named_parameters():
            assert p.grad is not None and not p.grad.requires_grad and p.grad.grad_fn is None
            if requires:
                assert torch.allclose(p.grad, plain[name], atol=1e-12)
            else:
                plain[name] = p.grad.clone()


def test_a_module_that_calls_itself_in_its_forward_raises_unless_its_state_is_copied() -> None:
    # A record left as the module's attributes cannot survive the module running itself
    # inside its own forward: that is an error, not a wrong gradient later; with
    # _saved_names = None (each call's state copied) the same module runs.
    def twice(copied: bool) -> nn.Module:
        class Twice(nn.Tanh):
            _saved_names = None if copied else ("_saved",)

            def forward(self, x: Tensor) -> Tensor:
                if x.shape[1] == 5:  # the outer call runs itself on the first four columns
                    return torch.cat([self(x[:, :4]), nn.Tanh.forward(self, x[:, 4:])], 1)
                return super().forward(x)

        return Twice()

    x, _ = _data()
    with pytest.raises(RuntimeError, match=r"called itself inside its own forward"):
        twice(copied=False)(x)
    module = twice(copied=True)
    out = module(x)
    assert torch.allclose(out, torch.tanh(x), atol=1e-12)
