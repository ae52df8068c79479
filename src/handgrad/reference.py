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

_ACTIVATIONS: dict[type, type] = {
    nn.ReLU: torch.nn.ReLU,
    nn.Tanh: torch.nn.Tanh,
    nn.Sigmoid: torch.nn.Sigmoid,
}


def _module_twin(module: nn.Module) -> torch.nn.Module:
    """The torch.nn module of the same kind and settings (parameters not yet copied)."""
    kind = type(module)
    twin: torch.nn.Module
    if isinstance(module, nn.Sequential):
        twin = torch.nn.Sequential(*[_module_twin(m) for m in module])
    elif kind is nn.Linear:
        assert isinstance(module, nn.Linear)
        twin = torch.nn.Linear(module.in_features, module.out_features, bias=module.has_bias)
    elif kind in _ACTIVATIONS:
        twin = _ACTIVATIONS[kind]()
    elif isinstance(module, nn.LeakyReLU):
        twin = torch.nn.LeakyReLU(module.negative_slope)
    elif isinstance(module, nn.GELU):
        twin = torch.nn.GELU(approximate=module.approximate)
    elif isinstance(module, nn.Softmax):
        twin = torch.nn.Softmax(dim=module.dim)
    elif isinstance(module, nn.LogSoftmax):
        twin = torch.nn.LogSoftmax(dim=module.dim)
    elif isinstance(module, nn.Dropout):
        twin = torch.nn.Dropout(module.p)
    elif isinstance(module, nn.BatchNorm1d):
        twin = torch.nn.BatchNorm1d(
            module.num_features, eps=module.eps, momentum=module.momentum, affine=module.affine
        )
    elif isinstance(module, nn.LayerNorm):
        twin = torch.nn.LayerNorm(
            module.normalized_shape,
            eps=module.eps,
            elementwise_affine=module.elementwise_affine,
            bias=module.has_bias,
        )
    elif isinstance(module, nn.Flatten):
        twin = torch.nn.Flatten(module.start_dim, module.end_dim)
    else:
        raise TypeError(
            f"handgrad.reference: no torch.nn twin for {kind.__name__}; twins exist for the "
            "layers in handgrad.nn and Sequential stacks of them"
        )
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
    """The torch.nn loss equivalent to a handgrad loss."""
    if isinstance(loss, nn.SumSquaredLoss):
        return torch.nn.MSELoss(reduction="sum")
    if isinstance(loss, nn.MSELoss):
        return torch.nn.MSELoss(reduction=loss.reduction)
    if isinstance(loss, nn.CrossEntropyLoss):
        return torch.nn.CrossEntropyLoss(
            reduction=loss.reduction, label_smoothing=loss.label_smoothing
        )
    if isinstance(loss, nn.NLLLoss):
        return torch.nn.NLLLoss(reduction=loss.reduction)
    raise TypeError(f"handgrad.reference: no torch.nn twin for loss {type(loss).__name__}")


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
