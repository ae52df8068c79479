"""A parameter group's flat state buffers: where ``state[p]``'s tensors live.

An optimizer keeps each parameter's state (``state[p]["exp_avg"]`` and so on, torch's names)
as a view into one flat buffer per state name and group, laid out like the group's
parameters, and its 0-d state (``step``, ...) as views into one ``(n_params,)`` tensor. When
the group's parameters and their grads are flat too (``handgrad.nn.flat``), a step can then
update the whole group at once, on 1-D views, or with one compiled loop over numpy views of
the same memory. ``Arena`` also answers, cheaply, whether that flat step can run now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from handgrad.nn.flat import flat_view

# The 0-d entries of torch.optim's per-parameter state (the rest are shaped like the parameter).
SCALAR_STATE = frozenset({"step", "mu_product", "eta", "mu"})


class Arena:
    """One group's parameters and the flat buffers their state lives in.

    ``flats[name]`` is ``(numel,)`` in the parameters' dtype (per-element state such as
    ``exp_avg``), ``scalars[name]`` is ``(n_params,)`` (0-d state such as ``step``);
    ``state[p][name]`` is a view of parameter ``i``'s part.
    """

    def __init__(self, group: dict[str, Any]) -> None:
        self.group = group
        self.params: list[Tensor] = list(group["params"])
        self.ptrs = [p.data_ptr() for p in self.params]
        self.shapes = [p.shape for p in self.params]
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.same_kind = all(p.dtype == self.dtype and p.device == self.device for p in self.params)
        self.offsets = [0]
        for p in self.params:
            self.offsets.append(self.offsets[-1] + p.numel())
        self.flat_param = flat_view(self.params) if self.same_kind else None
        self.flats: dict[str, Tensor] = {}
        self.scalars: dict[str, Tensor] = {}
        self.views: dict[str, list[Tensor]] = {}
        self.grad_slots: list[Tensor] | None = None  # the grads the flat gradient was seen as
        self.flat_grad: Tensor | None = None
        self.uniform = False  # every parameter has all its state and the same step
        self.np: dict[str, np.ndarray] = {}  # 1-D numpy views for the compiled loops
        self.fused_arrays: dict[str, np.ndarray] | None = None  # set by the first flat step
        self.steps: np.ndarray | None = None  # the numpy view of scalars["step"], if fused
        self.t = 0.0  # their common value, while fused_arrays is set
        # The compiled loop per parameter (a group not laid out flat): each parameter's numpy
        # views, and the addresses of each parameter and .grad they were made for.
        self.each_arrays: list[dict[str, np.ndarray]] | None = None
        self.each_ptrs: list[tuple[int, int]] = []
        self.each_steps: list[np.ndarray] = []  # numpy views of each state[p]["step"]
        self.requires_grad = any(p.requires_grad for p in self.params)
        self.compiled = self.dtype in (torch.float32, torch.float64) and self.device.type == "cpu"

    def live(self) -> bool:
        """Whether the parameters are still the memory this arena was built for.

        Moving or re-flattening a parameter gives it new memory, so its address changes.
        """
        return [p.data_ptr() for p in self.params] == self.ptrs

    def ready(self) -> bool:
        """Whether the flat path can run as last step: the same grad slots and memory.

        Every ``.grad`` is checked by identity; of the addresses, the first parameter's only:
        moving or re-flattening a model moves all its parameters, and gives them new grads
        (or None), which the identity checks see. Anything else takes ``live()``'s full look.
        """
        if not self.uniform or self.grad_slots is None:
            return False
        if self.params[0].data_ptr() != self.ptrs[0]:
            return False
        for p, slot in zip(self.params, self.grad_slots, strict=True):  # noqa: SIM110 (faster)
            if p.grad is not slot:
                return False
        return True

    def each_ready(self) -> bool:
        """Whether the per-parameter compiled loops can run as last step: every parameter and
        its ``.grad`` at the addresses their numpy views were made for.

        A backward that finds ``.grad`` None writes the parameter's own gradient tensor again
        (``handgrad.nn.fresh_grad``), so after the plain step the addresses are the same; a
        ``.grad`` that is new memory (assigned, or kept alive by the user) is seen here.
        """
        if self.each_arrays is None:
            return False
        for p, (p_ptr, g_ptr) in zip(self.params, self.each_ptrs, strict=True):
            grad = p.grad
            if grad is None or grad.data_ptr() != g_ptr or p.data_ptr() != p_ptr:
                return False
        return True

    def view(self, name: str, i: int, like: Tensor) -> Tensor:
        """Parameter ``i``'s view of the buffer ``name``, made for a state tensor like ``like``."""
        if name in SCALAR_STATE:
            store = self.scalars.get(name)
            if store is None:
                store = torch.zeros(len(self.params), dtype=like.dtype, device=like.device)
                self.scalars[name] = store
                self.views[name] = list(store.unbind())
                self.np.clear()
                self.fused_arrays = self.each_arrays = None
            return self.views[name][i]
        flat = self.flats.get(name)
        if flat is None:
            flat = torch.zeros(self.offsets[-1], dtype=self.dtype, device=self.device)
            self.flats[name] = flat
            self.views[name] = [
                flat[a:b].view(shape)
                for a, b, shape in zip(
                    self.offsets[:-1], self.offsets[1:], self.shapes, strict=True
                )
            ]
            self.np.clear()
            self.fused_arrays = self.each_arrays = None
        return self.views[name][i]

    def adopt(self, i: int, state: dict[str, Any]) -> None:
        """Move parameter ``i``'s state tensors into this arena (copy, cast to its dtype)."""
        p = self.params[i]
        for name, val in state.items():
            if isinstance(val, Tensor) and (
                val.dim() != 0 if name in SCALAR_STATE else val.shape != p.shape
            ):
                raise ValueError(
                    f"optimizer state {name!r} of a parameter of shape {tuple(p.shape)} has "
                    f"shape {tuple(val.shape)}"
                )
        if self.flat_param is None:  # no flat path for this group: state stays where it is
            return
        for name, val in state.items():
            if not isinstance(val, Tensor):
                continue
            slot = self.view(name, i, val)
            if val is not slot:
                slot.copy_(val)
                state[name] = slot

    def check_uniform(self, states: Mapping[Tensor, dict[str, Any]], names: set[str]) -> None:
        """Set ``uniform``: all parameters hold exactly ``names``, in this arena, at one step."""
        self.uniform = False
        self.fused_arrays = self.each_arrays = None
        if self.flat_param is None:
            return
        for i, p in enumerate(self.params):
            state = states.get(p, {})
            if set(state) != names:
                return
            for name, val in state.items():
                if val is not self.views[name][i]:
                    return
        for store in self.scalars.values():
            if not bool((store == store[0]).all()):
                return
        self.uniform = True

    def find_flat_grad(self) -> bool:
        """Whether every ``.grad`` is the matching slot of one flat buffer (cached by identity)."""
        slots = self.grad_slots
        if slots is not None:
            for p, slot in zip(self.params, slots, strict=True):
                if p.grad is not slot:
                    break
            else:
                return True
        grads = [p.grad for p in self.params]
        flat = None
        if all(g is not None for g in grads):
            flat = flat_view(grads)  # type: ignore[arg-type]
        if flat is None or flat.dtype != self.dtype or flat.device != self.device:
            return False
        self.grad_slots, self.flat_grad = grads, flat  # type: ignore[assignment]
        self.np.pop("grad", None)
        self.fused_arrays = None
        return True

    def numpy_views(self) -> dict[str, np.ndarray]:
        """1-D numpy views of the flat param, grad and state buffers (cached)."""
        if "grad" not in self.np:
            assert self.flat_param is not None and self.flat_grad is not None
            self.np = {name: flat.numpy() for name, flat in self.flats.items()}
            self.np.update({f"scalar:{n}": s.numpy() for n, s in self.scalars.items()})
            self.np["param"] = self.flat_param.detach().numpy()
            self.np["grad"] = self.flat_grad.detach().numpy()
        return self.np
