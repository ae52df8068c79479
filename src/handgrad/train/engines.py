"""The two training engines: handgrad's hand-written step and the autograd reference.

The training loop, ``compare`` and the closing timings drive an engine through the
:class:`Engine` protocol, so they never ask which one they hold. On the handgrad engine one
micro-batch is::

    out = model(xb)                       # (B, C)
    value = loss(out, yb)                 # 0-dim
    model.backward(loss.backward())       # grads accumulate into each param's .grad

and an optimizer step ``opt.step(); opt.zero_grad()``. The autograd engine is the reference a
handgrad run is compared with, written the way a PyTorch user would write it, on the
``torch.nn`` twin of the same model (``handgrad.reference.to_torch``) and the ``torch.optim``
optimizer of the same type and settings::

    out = twin(xb)
    value = twin_loss(out, yb)
    value.backward()
    torch_opt.step()
    torch_opt.zero_grad()

It is, with ``handgrad.reference``, one of the few modules that run autograd (see
``docs/architecture.md``). It converts optimizer state to and from handgrad's format, so both
engines write the same checkpoints.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from handgrad import nn
from handgrad.optim import Optimizer
from handgrad.reference import loss_to_torch, to_torch

if TYPE_CHECKING:
    from handgrad.train.build import TrainLoss
    from handgrad.train.config import TrainConfig

ENGINES = ("handgrad", "autograd")


class LossModule(Protocol):
    """A handgrad loss: ``value = loss(out, target)``, then ``grad = loss.backward()``."""

    reduction: str

    def __call__(self, input: Tensor, target: Tensor) -> Tensor: ...
    def backward(self, grad_output: Tensor | float | None = None) -> Tensor: ...


class Engine(Protocol):
    """What the loop, ``compare`` and the timings need from an engine."""

    name: str
    loss_reduction: str
    lr: float

    def forward_backward(self, xb: Tensor, yb: Tensor) -> Tensor: ...
    def step(self, after_update: Callable[[], None] | None = None) -> None: ...
    def predict(self, x: Tensor) -> Tensor: ...
    def eval_loss(self, outputs: Tensor, y: Tensor) -> Tensor: ...
    def forward_loss(self, x: Tensor, y: Tensor) -> Tensor: ...
    def backward_last(self) -> None: ...
    def zero_grad(self) -> None: ...
    def model_state(self) -> dict[str, Tensor]: ...
    def load_model_state(self, state: dict[str, Tensor]) -> None: ...
    def optim_state(self) -> dict[str, Any]: ...
    def load_optim_state(self, state: dict[str, Any]) -> None: ...
    def final_model(self) -> nn.Module: ...
    def weights_finite(self) -> bool: ...


class HandgradEngine:
    """Hand-written backward passes and a handgrad optimizer, autograd off."""

    name = "handgrad"

    def __init__(self, model: nn.Module, loss: LossModule, opt: Optimizer) -> None:
        self.model, self.loss, self.opt = model, loss, opt
        self.loss_reduction = loss.reduction
        self._eval_loss = copy.copy(loss)  # its own saved tensors, so evaluation disturbs nothing

    @property
    def lr(self) -> float:
        return self.opt.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.opt.lr = value

    def forward_backward(self, xb: Tensor, yb: Tensor) -> Tensor:
        out = self.model(xb)  # (B, C)
        value = self.loss(out, yb)  # 0-dim
        self.model.backward(self.loss.backward())
        return value

    def step(self, after_update: Callable[[], None] | None = None) -> None:
        """``opt.step(); opt.zero_grad()``; ``after_update()`` runs between the two (the
        layer statistics read the gradients and the update there)."""
        self.opt.step()
        if after_update is not None:
            after_update()
        self.opt.zero_grad()

    def predict(self, x: Tensor) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model(x)
        finally:
            self.model.train(was_training)

    def eval_loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return self._eval_loss(outputs, y)

    def forward_loss(self, x: Tensor, y: Tensor) -> Tensor:
        return self.loss(self.model(x), y)

    def backward_last(self) -> None:
        self.model.backward(self.loss.backward())

    def zero_grad(self) -> None:
        self.opt.zero_grad()

    def model_state(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_model_state(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state)

    def optim_state(self) -> dict[str, Any]:
        return self.opt.checkpoint_state()

    def load_optim_state(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state)

    def final_model(self) -> nn.Module:
        return self.model

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())


def build_engine(config: TrainConfig, model: nn.Module, loss: TrainLoss, opt: Optimizer) -> Engine:
    """The config's engine over an already built model, loss and handgrad optimizer.

    The autograd engine copies them into a ``torch.nn`` twin and a ``torch.optim`` optimizer
    of the same type and settings.
    """
    if config.engine == "autograd":
        return AutogradEngine(model, loss, opt)
    return HandgradEngine(model, loss, opt)


def grad_mode(engine: Engine) -> Any:
    """The autograd mode an engine runs in: off for handgrad's (``torch.no_grad``; inference
    mode would also do, but its tensors could not be handed to the autograd twin afterwards, as
    ``compare`` does), as torch leaves it for the autograd engine."""
    import contextlib

    return torch.no_grad() if engine.name == "handgrad" else contextlib.nullcontext()


# handgrad optimizer class name -> torch.optim class with the same arguments.
TORCH_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "SGD": torch.optim.SGD,
    "Adam": torch.optim.Adam,
    "AdamW": torch.optim.AdamW,
    "RMSprop": torch.optim.RMSprop,
}
# State entries that hold a tensor per parameter (torch's names, which handgrad shares).
BUFFER_NAMES = (
    "momentum_buffer",
    "exp_avg",
    "exp_avg_sq",
    "max_exp_avg_sq",
    "square_avg",
    "grad_avg",
)


def torch_optimizer(opt: Optimizer, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer of ``opt``'s type and hyper-parameters over ``params``."""
    kind = type(opt).__name__
    if kind not in TORCH_OPTIMIZERS:
        raise TypeError(f"handgrad.train.engines: no torch.optim twin for {kind}")
    hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in opt.hyper().items()}
    return TORCH_OPTIMIZERS[kind](params, foreach=False, **hyper)


class AutogradEngine:
    """The torch.nn twin of a handgrad model trained with torch.optim and autograd."""

    name = "autograd"

    def __init__(self, model: nn.Module, loss: nn.Loss, opt: Optimizer) -> None:
        self._model = model  # the handgrad model, which receives the final weights
        self.twin = to_torch(model)
        self.loss = loss_to_torch(loss)
        self.loss_reduction = loss.reduction
        self.params = list(self.twin.parameters())
        self.opt = torch_optimizer(opt, self.params)
        self._kind = type(opt).__name__
        self._hyper_names = list(opt.hyper())
        self._steps = 0
        self._value: Tensor | None = None

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    @lr.setter
    def lr(self, value: float) -> None:
        self.opt.param_groups[0]["lr"] = value

    def forward_backward(self, xb: Tensor, yb: Tensor) -> Tensor:
        with torch.enable_grad():
            out = self.twin(xb)  # (B, C)
            value = self.loss(out, yb)  # 0-dim
            value.backward()
        return value.detach()

    def step(self, after_update: Callable[[], None] | None = None) -> None:
        self.opt.step()
        if after_update is not None:
            after_update()
        self.opt.zero_grad()
        self._steps += 1

    def predict(self, x: Tensor) -> Tensor:
        was_training = self.twin.training
        self.twin.eval()
        try:
            with torch.no_grad():
                return self.twin(x)
        finally:
            self.twin.train(was_training)

    def eval_loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad():
            return self.loss(outputs, y)

    def forward_loss(self, x: Tensor, y: Tensor) -> Tensor:
        with torch.enable_grad():
            self._value = self.loss(self.twin(x), y)
        return self._value.detach()

    def backward_last(self) -> None:
        if self._value is None:
            raise ValueError("AutogradEngine.backward_last: call forward_loss first")
        self._value.backward()
        self._value = None

    def zero_grad(self) -> None:
        self.opt.zero_grad()

    def model_state(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.twin.state_dict().items()}

    def load_model_state(self, state: dict[str, Tensor]) -> None:
        self.twin.load_state_dict(state, strict=True)

    def optim_state(self) -> dict[str, Any]:
        """torch.optim's state in handgrad's ``Optimizer.state_dict()`` format."""
        group = self.opt.param_groups[0]
        hyper = {
            k: list(group[k]) if isinstance(group[k], tuple) else group[k]
            for k in self._hyper_names
        }
        buffers: dict[str, Tensor] = {}
        for i, p in enumerate(self.params):
            for name in BUFFER_NAMES:
                value = self.opt.state.get(p, {}).get(name)
                if isinstance(value, Tensor):
                    buffers[f"{name}.{i}"] = value.detach().clone()
        return {"type": self._kind, "hyper": hyper, "step": self._steps, "buffers": buffers}

    def load_optim_state(self, state: dict[str, Any]) -> None:
        """Restore from handgrad's format (as written by either engine)."""
        if state["type"] != self._kind:
            raise ValueError(
                f"AutogradEngine.load_optim_state: expected {self._kind} state, got {state['type']}"
            )
        group = self.opt.param_groups[0]
        for key, value in state["hyper"].items():
            group[key] = tuple(value) if isinstance(value, list) else value
        self._steps = int(state["step"])
        self.opt.state.clear()
        if self._steps == 0:
            return
        for i, p in enumerate(self.params):
            entry: dict[str, Any] = {}
            if self._kind != "SGD":
                entry["step"] = torch.tensor(float(self._steps))
            for name in BUFFER_NAMES:
                key = f"{name}.{i}"
                if key in state["buffers"]:
                    entry[name] = state["buffers"][key].detach().clone().to(p.device, p.dtype)
            if entry:
                self.opt.state[p] = entry

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.params)

    def final_model(self) -> nn.Module:
        """The handgrad model holding the twin's current weights."""
        self._model.load_state_dict(self.model_state())
        return self._model
