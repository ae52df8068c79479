"""The torch.nn twin of a handgrad model: the one place in handgrad where autograd runs.

``to_torch(model)`` builds the equivalent ``torch.nn`` module with the same parameters, buffers
and mode; ``loss_to_torch(loss)`` does the same for a loss. ``autograd_gradients`` runs forward
and ``.backward()`` on the twin and returns every gradient a hand-written backward pass should
reproduce: the input's, each parameter's, and each child module's output and input gradients.
The ``--engine autograd`` training runs and ``handgrad compare`` use this module too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from handgrad import nn

# The handgrad classes that have a torch.nn twin; a subclass has its base's twin only if it
# inherits ``forward`` (overriding ``backward`` alone, to write or to break a backward pass,
# still computes the base's function).
TWINNED: tuple[type[nn.Module], ...] = (
    nn.Sequential,
    nn.Linear,
    nn.ReLU,
    nn.LeakyReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.Softmax,
    nn.LogSoftmax,
    nn.Dropout,
    nn.BatchNorm1d,
    nn.LayerNorm,
    nn.Flatten,
    nn.SumSquaredLoss,
    nn.MSELoss,
    nn.CrossEntropyLoss,
    nn.NLLLoss,
)


def twin_base(cls: type) -> type[nn.Module] | None:
    """The handgrad.nn class whose forward ``cls`` computes, if it has a torch twin; else None.

    ``cls`` itself when it is one of ``TWINNED``; a subclass's nearest twinned base when the
    subclass inherits that base's ``forward``; None when it defines its own forward.
    """
    for klass in cls.__mro__:
        if klass in TWINNED:
            own_forward = getattr(cls, "forward", None)
            return klass if own_forward is getattr(klass, "forward", None) else None
    return None


def _no_twin(kind: type) -> TypeError:
    return TypeError(
        f"handgrad.reference: no torch.nn twin for {kind.__name__}; twins exist for the layers "
        "and losses of handgrad.nn (and subclasses that only override backward)"
    )


def _module_twin(module: nn.Module) -> torch.nn.Module:
    """The torch.nn module of the same kind and settings (parameters not yet copied)."""
    base = twin_base(type(module))
    twin: torch.nn.Module
    if base is nn.Sequential:
        assert isinstance(module, nn.Sequential)
        twin = torch.nn.Sequential(*[_module_twin(m) for m in module])
    elif base is nn.Linear:
        assert isinstance(module, nn.Linear)
        twin = torch.nn.Linear(module.in_features, module.out_features, bias=module.has_bias)
    elif base is nn.ReLU:
        twin = torch.nn.ReLU()
    elif base is nn.Tanh:
        twin = torch.nn.Tanh()
    elif base is nn.Sigmoid:
        twin = torch.nn.Sigmoid()
    elif base is nn.LeakyReLU:
        assert isinstance(module, nn.LeakyReLU)
        twin = torch.nn.LeakyReLU(module.negative_slope)
    elif base is nn.GELU:
        assert isinstance(module, nn.GELU)
        twin = torch.nn.GELU(approximate=module.approximate)
    elif base is nn.Softmax:
        assert isinstance(module, nn.Softmax)
        twin = torch.nn.Softmax(dim=module.dim)
    elif base is nn.LogSoftmax:
        assert isinstance(module, nn.LogSoftmax)
        twin = torch.nn.LogSoftmax(dim=module.dim)
    elif base is nn.Dropout:
        assert isinstance(module, nn.Dropout)
        twin = torch.nn.Dropout(module.p)
    elif base is nn.BatchNorm1d:
        assert isinstance(module, nn.BatchNorm1d)
        twin = torch.nn.BatchNorm1d(
            module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
            bias=module.has_bias,
        )
    elif base is nn.LayerNorm:
        assert isinstance(module, nn.LayerNorm)
        twin = torch.nn.LayerNorm(
            module.normalized_shape,
            eps=module.eps,
            elementwise_affine=module.elementwise_affine,
            bias=module.has_bias,
        )
    elif base is nn.Flatten:
        assert isinstance(module, nn.Flatten)
        twin = torch.nn.Flatten(module.start_dim, module.end_dim)
    else:
        raise _no_twin(type(module))
    return twin


def to_torch(model: nn.Module) -> torch.nn.Module:
    """The equivalent torch.nn module, holding copies of ``model``'s parameters and buffers.

    The twin has the model's dtype, device and train/eval mode; its parameters require grad.
    """
    twin = _module_twin(model)
    params = list(model.parameters())
    buffers = [b for _, b in model.named_buffers()]
    floating = params or [b for b in buffers if b.is_floating_point()]
    if floating:
        first = floating[0]
        twin = twin.to(dtype=first.dtype, device=first.device)
    with torch.no_grad():
        twin.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()})
    twin.train(model.training)
    for child, twin_child in zip(model.modules(), twin.modules(), strict=False):
        twin_child.train(child.training)
    return twin


def loss_to_torch(loss: nn.Module) -> torch.nn.Module:
    """The torch.nn loss equivalent to a handgrad loss (same policy for subclasses as layers)."""
    base = twin_base(type(loss))
    if base is nn.SumSquaredLoss:
        return torch.nn.MSELoss(reduction="sum")
    if base is nn.MSELoss:
        assert isinstance(loss, nn.MSELoss)
        return torch.nn.MSELoss(reduction=loss.reduction)
    if base is nn.CrossEntropyLoss:
        assert isinstance(loss, nn.CrossEntropyLoss)
        return torch.nn.CrossEntropyLoss(
            weight=_copy(loss.weight),
            ignore_index=loss.ignore_index,
            reduction=loss.reduction,
            label_smoothing=loss.label_smoothing,
        )
    if base is nn.NLLLoss:
        assert isinstance(loss, nn.NLLLoss)
        return torch.nn.NLLLoss(
            weight=_copy(loss.weight), ignore_index=loss.ignore_index, reduction=loss.reduction
        )
    raise _no_twin(type(loss))


def _copy(weight: Tensor | None) -> Tensor | None:
    return None if weight is None else weight.detach().clone()


def vjp(
    twin: torch.nn.Module, x: Tensor, upstream: Tensor
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Forward ``twin`` on ``x`` and pull ``upstream`` back: (output, dL/dx, dL/dparams).

    L = Σ output · upstream, so dL/d(output) is ``upstream``. Parameters the output does not
    depend on get zero gradients.
    """
    x_in = x.detach().clone().requires_grad_(True)
    params = [(name, p) for name, p in twin.named_parameters() if p.requires_grad]
    with torch.enable_grad():
        out = twin(x_in)
        grads = torch.autograd.grad(
            out, [x_in, *[p for _, p in params]], grad_outputs=upstream, allow_unused=True
        )
    grad_x = grads[0] if grads[0] is not None else torch.zeros_like(x)
    param_grads = {
        name: (g if g is not None else torch.zeros_like(p)).detach()
        for (name, p), g in zip(params, grads[1:], strict=True)
    }
    return out.detach(), grad_x.detach(), param_grads


def loss_gradient(
    twin: torch.nn.Module, x: Tensor, target: Tensor, upstream: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The twin loss's value at ``x`` and its gradient dL/dx (``upstream`` for reduction='none')."""
    x_in = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = twin(x_in, target)
        (grad,) = torch.autograd.grad(value, [x_in], grad_outputs=upstream)
    return value.detach(), grad.detach()


@dataclass
class AutogradResult:
    """What autograd computed on the twin.

    Attributes:
        loss: the loss value (0-dim, or per element for reduction='none').
        output: the model's output.
        input_grad: dL/d(input), shaped like the input.
        param_grads: dL/d(parameter) by torch's parameter names.
        module_grads: for each child of a Sequential, by its name (``"0"``, ``"1"``, ...):
            ``(grad of its input, grad of its output)``.
        module_inputs: each child's input tensor (detached), by name.
    """

    loss: Tensor
    output: Tensor
    input_grad: Tensor
    param_grads: dict[str, Tensor] = field(default_factory=dict)
    module_grads: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    module_inputs: dict[str, Tensor] = field(default_factory=dict)


def autograd_gradients(
    model: nn.Module,
    loss: nn.Module,
    x: Tensor,
    target: Tensor,
    grad_output: Tensor | None = None,
) -> AutogradResult:
    """Forward and ``.backward()`` through the torch twin of ``model`` and ``loss``.

    Dropout in training mode draws its mask from torch's generator, like handgrad's, so call
    both with the same seed to compare them. BatchNorm's running statistics are updated on the
    twin only.

    Shapes: x (N, *), target as the loss expects; ``grad_output`` is the gradient of the loss
    value (needed only for reduction='none').
    """
    twin = to_torch(model)
    twin_loss = loss_to_torch(loss)
    x_in = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        if isinstance(twin, torch.nn.Sequential):
            children = list(twin.children())
            names = [str(i) for i in range(len(children))]
        else:
            children, names = [twin], [""]
        h = x_in
        inputs: list[Tensor] = []
        outputs: list[Tensor] = []
        for child in children:
            inputs.append(h)
            h = child(h)
            h.retain_grad()
            outputs.append(h)
        value = twin_loss(h, target)
        if grad_output is None:
            value.backward()
        else:
            value.backward(grad_output)
    module_grads: dict[str, tuple[Tensor, Tensor]] = {}
    module_inputs: dict[str, Tensor] = {}
    for name, inp, out in zip(names, inputs, outputs, strict=True):
        gi = inp.grad if inp.grad is not None else torch.zeros_like(inp)
        go = out.grad if out.grad is not None else torch.zeros_like(out)
        module_grads[name] = (gi.detach(), go.detach())
        module_inputs[name] = inp.detach()
    param_grads = {
        name: (p.grad.detach() if p.grad is not None else torch.zeros_like(p.detach()))
        for name, p in twin.named_parameters()
    }
    input_grad = x_in.grad if x_in.grad is not None else torch.zeros_like(x_in)
    return AutogradResult(
        loss=value.detach(),
        output=h.detach(),
        input_grad=input_grad.detach(),
        param_grads=param_grads,
        module_grads=module_grads,
        module_inputs=module_inputs,
    )
