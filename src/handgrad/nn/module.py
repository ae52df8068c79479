"""``Module``, the base of every layer and loss, and ``Sequential``.

A module's parameters are plain torch tensors that never require grad. Each one carries a
preallocated ``.grad`` of its own shape, which ``backward`` accumulates into (``+=``), as torch's
autograd does. Names, state-dict keys and shapes follow ``torch.nn`` exactly, so a handgrad model's
state dict loads into the equivalent ``torch.nn`` model with ``strict=True``, and back.

Children are found the way they are assigned: every attribute that holds a ``Module`` is a child,
in assignment order. Parameters and buffers are declared with ``register_parameter`` and
``register_buffer`` and then read and written as ordinary attributes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from handgrad.nn.flat import flatten_into_buffer


def grad_of(param: Tensor) -> Tensor:
    """The ``.grad`` of a parameter registered with ``register_parameter`` (never None)."""
    grad = param.grad
    if grad is None:
        raise ValueError(f"parameter of shape {tuple(param.shape)} has no .grad; zero_grad() first")
    return grad


class Module:
    """Base class: a forward pass, a hand-written backward pass, and named parameters.

    Subclasses implement ``forward(*inputs)``, which keeps what the backward pass needs, and
    ``backward(grad_output)``, which returns dL/d(input) and adds each parameter's gradient to
    its ``.grad``.

    Example:
        >>> class Scale(Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.register_parameter("s", torch.ones(1))
        ...     def forward(self, x):
        ...         self._x = x
        ...         return x * self.s
        ...     def backward(self, grad_out):
        ...         self.s.grad += (grad_out * self._x).sum().reshape(1)  # dL/ds = Σ g·x
        ...         return grad_out * self.s  # dL/dx = g·s
    """

    training: bool

    def __init__(self) -> None:
        self.training = True
        self._param_names: list[str] = []
        self._buffer_names: list[str] = []

    # -- the two passes -------------------------------------------------------------------
    def forward(self, *inputs: Tensor) -> Tensor:
        """Compute the output and keep what ``backward`` needs."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_output: Tensor) -> Tensor:
        """Return dL/d(input) given dL/d(output); accumulate parameter gradients into ``.grad``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *inputs: Tensor) -> Tensor:
        return self.forward(*inputs)

    def _not_run(self) -> ValueError:
        """The error for ``backward`` called before ``forward``."""
        return ValueError(f"{self!r}: backward called before forward; call the module first")

    # -- registration ---------------------------------------------------------------------
    def register_parameter(self, name: str, tensor: Tensor) -> None:
        """Declare ``tensor`` as a trainable parameter called ``name``, with a zeroed ``.grad``."""
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{type(self).__name__}.{name}: expected a tensor, got {type(tensor)}")
        if not tensor.is_floating_point():
            raise TypeError(f"{type(self).__name__}.{name}: parameters must be floating point")
        tensor.requires_grad_(False)
        tensor.grad = torch.zeros_like(tensor)
        setattr(self, name, tensor)
        if name not in self._param_names:
            self._param_names.append(name)

    def register_buffer(self, name: str, tensor: Tensor) -> None:
        """Declare ``tensor`` as non-trainable state saved in the state dict (e.g. running mean)."""
        setattr(self, name, tensor)
        if name not in self._buffer_names:
            self._buffer_names.append(name)

    # -- traversal ------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Yield ``(name, child)`` for each attribute holding a Module, in assignment order."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield ``(dotted name, module)`` for this module and every descendant, depth first."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """Yield ``(name, tensor)`` with torch's names, e.g. ``"0.weight"`` in a Sequential."""
        for module_name, module in self.named_modules(prefix):
            for name in module._param_names:
                yield (f"{module_name}.{name}" if module_name else name), getattr(module, name)

    def parameters(self) -> Iterator[Tensor]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        for module_name, module in self.named_modules(prefix):
            for name in module._buffer_names:
                yield (f"{module_name}.{name}" if module_name else name), getattr(module, name)

    def num_parameters(self) -> int:
        """The number of trainable scalars."""
        return sum(p.numel() for p in self.parameters())

    # -- gradients and modes --------------------------------------------------------------
    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to zero, in place."""
        for p in self.parameters():
            grad = p.grad
            if grad is None:
                p.grad = torch.zeros_like(p)
            else:
                grad.zero_()

    def train(self, mode: bool = True) -> Module:
        """Switch this module and its children to training mode (or eval with ``mode=False``)."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    # -- state dicts ----------------------------------------------------------------------
    def _state_items(self) -> Iterator[tuple[str, Module, str]]:
        """``(key, owner, attribute)`` in torch's order: own params, own buffers, then children."""

        def walk(module: Module, prefix: str) -> Iterator[tuple[str, Module, str]]:
            for name in [*module._param_names, *module._buffer_names]:
                yield (f"{prefix}{name}", module, name)
            for child_name, child in module.named_children():
                yield from walk(child, f"{prefix}{child_name}.")

        return walk(self, "")

    def state_dict(self) -> dict[str, Tensor]:
        """Parameters and buffers by torch.nn's keys (detached copies are not made)."""
        return {key: getattr(owner, attr) for key, owner, attr in self._state_items()}

    def load_state_dict(self, state: Mapping[str, Tensor], strict: bool = True) -> Module:
        """Copy values from ``state`` into this module's tensors, in place.

        Raises:
            ValueError: a key is missing or unexpected (with ``strict``), or a shape differs.
            TypeError: a value is not a tensor.
        """
        items = list(self._state_items())
        expected = {key for key, _, _ in items}
        missing = [k for k in expected if k not in state]
        extra = [k for k in state if k not in expected]
        name = type(self).__name__
        if strict and (missing or extra):
            parts = []
            if missing:
                parts.append(f"missing keys {sorted(missing)}")
            if extra:
                parts.append(f"unexpected keys {sorted(extra)}")
            raise ValueError(f"{name}.load_state_dict: {'; '.join(parts)}")
        for key, owner, attr in items:
            if key not in state:
                continue
            value = state[key]
            if not isinstance(value, Tensor):
                raise TypeError(f"{name}.load_state_dict: {key} is {type(value)}, not a tensor")
            current: Tensor = getattr(owner, attr)
            if value.shape != current.shape:
                raise ValueError(
                    f"{name}.load_state_dict: {key} has shape {tuple(value.shape)}, "
                    f"expected {tuple(current.shape)}"
                )
        for key, owner, attr in items:
            if key in state:
                current = getattr(owner, attr)
                current.copy_(state[key].detach())
        return self

    # -- dtype and device -----------------------------------------------------------------
    def to(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> Module:
        """Move every parameter (with its grad) and floating buffer; return ``self``."""
        flat = getattr(self, "_flat_params", None) is not None
        for module in self.modules():
            for name in module._param_names:
                p: Tensor = getattr(module, name)
                moved = p.to(dtype=dtype, device=device)
                if moved is not p:
                    grad = p.grad if p.grad is not None else torch.zeros_like(p)
                    moved.grad = grad.to(dtype=dtype, device=device)
                    setattr(module, name, moved)
            for name in module._buffer_names:
                b: Tensor = getattr(module, name)
                target = dtype if b.is_floating_point() else None
                setattr(module, name, b.to(dtype=target, device=device))
            module._moved(dtype, device)
        if flat:
            self.flatten_parameters()
        return self

    def _moved(self, dtype: torch.dtype | None, device: torch.device | str | None) -> None:
        """Hook for modules that cache dtype- or device-specific tensors."""

    def double(self) -> Module:
        return self.to(dtype=torch.float64)

    def float(self) -> Module:
        return self.to(dtype=torch.float32)

    # -- one contiguous buffer ------------------------------------------------------------
    def flatten_parameters(self) -> Module:
        """Hold all parameters, and all their grads, as views into one flat buffer each.

        Values and names are unchanged; an optimizer built afterwards updates the whole model
        with a few vector operations (see ``handgrad.nn.flat``). Returns ``self``.
        """
        owners = [(module, name) for module in self.modules() for name in module._param_names]
        if not owners:
            return self
        params = [getattr(m, n) for m, n in owners]
        dtypes = {p.dtype for p in params}
        devices = {p.device for p in params}
        if len(dtypes) > 1 or len(devices) > 1:
            raise ValueError(
                f"{type(self).__name__}.flatten_parameters: parameters must share one dtype and "
                f"device, got {sorted(map(str, dtypes))} on {sorted(map(str, devices))}"
            )
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat, views = flatten_into_buffer(params)
        flat_grad, grad_views = flatten_into_buffer(grads)
        for (module, name), view, grad_view in zip(owners, views, grad_views, strict=True):
            view.grad = grad_view
            setattr(module, name, view)
        self._flat_params = flat
        self._flat_grads = flat_grad
        return self

    # -- printing -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The arguments shown inside this module's ``repr``."""
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        lines = [head]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class Sequential(Module):
    """Modules applied one after another; children are named ``"0"``, ``"1"``, ...

    ``backward`` runs the children's backward passes in reverse order:
    dL/dx = backward_0(backward_1(... backward_{n-1}(dL/dy))).

    Example:
        >>> model = Sequential(Linear(784, 50), ReLU(), Linear(50, 10))
        >>> out = model(x)                    # (N, 10)
        >>> grad_x = model.backward(grad_out)  # (N, 784)
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(
                    f"Sequential: argument {i} must be a handgrad.nn.Module, got {type(module)}"
                )
            setattr(self, str(i), module)
        self._layers: tuple[Module, ...] = tuple(modules)
        self._reversed: tuple[Module, ...] = tuple(reversed(modules))

    def forward(self, *inputs: Tensor) -> Tensor:
        x = self._layers[0](*inputs) if self._layers else inputs[0]
        for layer in self._layers[1:]:
            x = layer(x)
        return x

    def backward(self, grad_output: Tensor) -> Tensor:
        grad = grad_output
        for layer in self._reversed:
            grad = layer.backward(grad)
        return grad

    @property
    def input_grad(self) -> bool:
        """Whether ``backward`` computes dL/d(input); see ``Linear.input_grad``.

        Setting it to False on a model fed with data skips the first Linear's input gradient
        (nothing uses it), and ``backward`` then returns an empty tensor.
        """
        first = self._layers[0] if self._layers else None
        return bool(getattr(first, "input_grad", True))

    @input_grad.setter
    def input_grad(self, value: bool) -> None:
        first = self._layers[0] if self._layers else None
        if first is not None and hasattr(first, "input_grad"):
            first.input_grad = value

    def __getitem__(self, index: int) -> Module:
        return self._layers[index]

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._layers)
