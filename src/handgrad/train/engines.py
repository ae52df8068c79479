"""The ``--engine autograd`` training step: the torch.nn twin, torch.optim and ``.backward()``.

This is the reference a handgrad run is compared with, so it is written the way a PyTorch
user would write it, and it lives beside ``handgrad.reference`` because it runs autograd (no
other training code does). ``AutogradEngine`` offers the training loop the same methods as
the handgrad engine, and converts optimizer state to and from handgrad's format, so both
engines write the same checkpoints::

    out = twin(xb)
    value = twin_loss(out, yb)
    value.backward()
    torch_opt.step()
    torch_opt.zero_grad()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from handgrad import nn
from handgrad.optim import Optimizer
from handgrad.reference import loss_to_torch, to_torch

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
        raise TypeError(f"handgrad.reference_engine: no torch.optim twin for {kind}")
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

    def step(self) -> None:
        self.opt.step()
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
