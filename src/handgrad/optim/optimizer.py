"""What every handgrad optimizer shares: torch.optim's interface over flat state buffers.

``Optimizer`` subclasses ``torch.optim.Optimizer``, so everything torch gives an optimizer is
there and behaves as in torch: parameter groups with per-group options and
``add_param_group``, ``param_groups`` that torch's ``lr_scheduler`` (and handgrad's schedules)
drive, ``state`` keyed by parameter, ``zero_grad(set_to_none=True)``, step hooks, and
``state_dict()``/``load_state_dict()`` in torch.optim's format (a state dict moves between a
handgrad optimizer and the torch.optim optimizer of the same kind, both ways). The optimizer
may be built before any gradient exists; each ``step()`` reads every parameter's *current*
``.grad`` and skips a parameter whose ``.grad`` is None, as torch does.

Each subclass writes its update rule once, in ``_update(param, grad, state, group)``: torch
operations, line by line as in its docstring. It runs in one of two places:

- **per parameter**: each parameter with a gradient, on its own ``state`` (the general path);
- **flat**: when a group's parameters lie end to end in one buffer (a model after
  ``flatten_parameters()``, see ``handgrad.nn.flat``), their ``.grad`` tensors are the
  matching slots of one flat gradient buffer, and every parameter is at the same step, the
  whole group is updated at once on 1-D views: ``param``, ``grad`` and each state buffer are
  then ``(numel,)`` tensors covering the group.

``state[p]``'s tensors are views into flat per-group buffers (the *arena*,
``handgrad.optim.arena``) so that the flat path finds them in place; ``state_dict()`` returns
copies. A subclass with a compiled loop
(``kernels``) also provides ``_update_fused``, the same rule as one pass over 1-D numpy views,
chosen with ``fused`` (default: wherever it can run, i.e. float32/float64 on the CPU, on the
flat path and per parameter once a parameter has all its state); the two are tested equal.
For a group that is not flat (a model left unflattened), once every parameter has its gradient
and state at one step, the numpy views of each parameter are kept (``Arena.each_arrays``) and
later steps run the loops on them directly while every parameter and ``.grad`` is still at the
same address: the plain step keeps them there, since a backward after ``zero_grad()`` writes
each parameter's own gradient tensor again (``handgrad.nn.fresh_grad``).

Parameters that ``Module.to()`` or ``flatten_parameters()`` replaced by new tensors after the
optimizer was built are followed (``handgrad.nn.flat.replacement``), their state moved along,
at the next ``step()`` or ``zero_grad()``: the optimizer never steps tensors the model has
dropped.

Parameters that are moved or re-flattened in place (same tensor objects, new memory, e.g.
``p.data = p.data.double()``) are noticed at the next ``step()`` and the optimizer re-binds to
the live memory, its state carried over (cast to the new dtype): the flat path checks each
``.grad`` against the flat gradient's slots by identity and the first parameter's address
(moving a model moves every parameter and its grads); any other step compares every
parameter's address with the ones its state buffers were built for.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
import torch.optim.optimizer as _torch_optimizer
from torch import Tensor

from handgrad.nn import flat
from handgrad.optim import kernels
from handgrad.optim.arena import SCALAR_STATE, Arena

T = TypeVar("T")
_GLOBAL_PRE_HOOKS = _torch_optimizer._global_optimizer_pre_hooks
_GLOBAL_POST_HOOKS = _torch_optimizer._global_optimizer_post_hooks

# Keys torch.optim puts in every group of these optimizers, with the only values handgrad
# runs (they choose torch's own implementations, which handgrad replaces).
TORCH_EXTRAS: dict[str, Any] = {
    "foreach": None,
    "capturable": False,
    "differentiable": False,
}


def scalar_dtype() -> torch.dtype:
    """The dtype torch.optim keeps ``state["step"]`` and other 0-d state in."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def value(x: Tensor | float) -> float:
    """A 0-d tensor's value as a Python float (a float is returned as is)."""
    return x.item() if isinstance(x, Tensor) else x


class Optimizer(torch.optim.Optimizer):
    """Base class: torch.optim's ``Optimizer`` whose update rule runs per parameter or flat.

    A subclass lists ``option_names`` (its constructor's options, as torch names them, ``lr``
    first), checks a group's options in ``_validate``, creates a parameter's state in
    ``_init_state`` (torch's keys and initial values) and writes its rule in ``_update``;
    optionally ``_update_fused`` with ``has_fused_loop = True``. ``state["step"]`` (if the kind
    has one) is incremented by the base class before ``_update`` runs.

    Attributes:
        fused: whether steps run the compiled one-pass loop where they can (read-only).
        lr: group 0's learning rate; setting it sets every group's.
    """

    option_names: ClassVar[tuple[str, ...]] = ("lr",)
    group_extras: ClassVar[dict[str, Any]] = TORCH_EXTRAS
    has_step: ClassVar[bool] = True
    has_fused_loop: ClassVar[bool] = False

    def __init__(
        self, params: Iterable[Any], defaults: dict[str, Any], fused: bool | None = None
    ) -> None:
        where = type(self).__name__
        if fused is not None and not isinstance(fused, bool):
            raise TypeError(f"{where}: fused must be True, False or None, got {fused!r}")
        if fused and not (self.has_fused_loop and kernels.available()):
            raise ValueError(
                f"{where}: fused=True is not possible: "
                + (f"{where} has no compiled loop" if not self.has_fused_loop else "no numba")
                + "; use fused=None (the default) to choose automatically"
            )
        self._fused = self.has_fused_loop and fused is not False and kernels.available()
        self._fused_asked = fused is True
        self._arenas: list[Arena | None] = []
        self._moves_seen = -1  # flat.move_count() when replaced parameters were last looked for
        self.steps_taken = 0  # calls of step(); each parameter's own count is state["step"]
        self._init_caches()
        if isinstance(params, Tensor):
            raise TypeError(f"{where}: params should be an iterable of tensors, got a Tensor")
        try:
            super().__init__(params, {**defaults, **self.group_extras})
        except ValueError as err:
            said = str(err)  # the option checks name the optimizer already
            raise ValueError(
                said if said.startswith(f"{where}: ") else f"{where}: {said}"
            ) from None

    # -- copies and pickles ---------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """torch's state (defaults, state, param_groups) and the options chosen at build; the
        flat buffers' views and compiled plans are made again in the copy, as needed."""
        state = super().__getstate__()
        state.update(
            _fused=self._fused, _fused_asked=self._fused_asked, steps_taken=self.steps_taken
        )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._arenas = []
        self._moves_seen = -1
        self._init_caches()

    def _init_caches(self) -> None:
        """Make the per-object caches a subclass keeps (at build, and in a copy)."""

    # -- what subclasses provide ----------------------------------------------------------
    @classmethod
    def _validate(cls, group: Mapping[str, Any], where: str) -> None:
        """Raise ``ValueError``/``TypeError`` (naming ``where``) if an option is out of range."""
        check_lr(where, group["lr"])
        if not isinstance(group.get("maximize", False), bool):
            raise TypeError(f"{where}: maximize must be a bool, got {group['maximize']!r}")
        for key, ok in TORCH_EXTRAS.items():
            if group.get(key, ok) not in (ok, False, None):
                raise ValueError(f"{where}: {key}={group[key]!r} is not supported by handgrad")
        # The options several kinds share, one rule each wherever they appear.
        if "betas" in group:
            check_betas(where, group["betas"])
        for name in ("eps", "weight_decay"):
            if name in group:
                check_number(where, name, group[name], low=0.0)
        if "decoupled_weight_decay" in group:
            check_bool(where, "decoupled_weight_decay", group["decoupled_weight_decay"])

    def _state_names(self, group: Mapping[str, Any]) -> set[str]:
        """The keys of a parameter's state under these options, once it has taken a step."""
        return {"step"}

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """A new parameter's state, torch's keys and initial values (``step`` at 0)."""
        return {"step": torch.tensor(0.0, dtype=scalar_dtype())}

    def _update(
        self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        """The update rule with torch operations, on one parameter or a whole flat group."""
        raise NotImplementedError

    def _update_fused(self, arrays: dict[str, np.ndarray], t: float, group: dict[str, Any]) -> None:
        """``_update`` as one compiled loop over a flat group's 1-D numpy views."""
        raise NotImplementedError

    def _update_fused_each(
        self, plan: list[dict[str, np.ndarray]], t: float, group: dict[str, Any]
    ) -> None:
        """``_update_fused`` on each parameter's views in ``plan`` (a group that is not flat);
        a subclass may make the step's coefficients once for all of them."""
        for arrays in plan:
            self._update_fused(arrays, t, group)

    # -- the training-loop API ------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a ``.grad`` from it; ``.grad`` is not changed.

        Args:
            closure: re-evaluates the model and returns the loss (run with grad enabled).
        """
        if (
            self._optimizer_step_pre_hooks
            or self._optimizer_step_post_hooks
            or _GLOBAL_PRE_HOOKS
            or _GLOBAL_POST_HOOKS
            or torch._C._autograd._profiler_enabled()
        ):
            return _hooked_step(self, closure)
        return self._step(closure)

    # torch wraps ``step`` in a profiler range that calls the step hooks, at a cost in every
    # step; ``hooked`` tells torch it is done: ``step`` runs that wrapper when it is needed.
    step.hooked = True  # type: ignore[attr-defined]

    def _step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            loss = closure()  # handgrad's backward needs no autograd, so none is switched on
        if flat.move_count() != self._moves_seen:
            self._follow_replaced()
        arenas = self._arenas
        for index, group in enumerate(self.param_groups):
            arena = arenas[index] if index < len(arenas) else None
            # The common case first: the same flat buffers as last step (a few identity checks),
            # and the compiled loop; written out here, as each layer of calls costs time.
            if arena is not None and arena.group is group:
                if arena.fused_arrays is not None and arena.ready():
                    if arena.steps is not None:
                        arena.t += 1.0
                        arena.steps.fill(arena.t)  # every state[p]["step"]
                    self._update_fused(arena.fused_arrays, arena.t, group)
                    continue
                if arena.each_arrays is not None and arena.each_ready():  # a group not flat
                    arena.t += 1.0
                    for step in arena.each_steps:
                        step.fill(arena.t)  # state[p]["step"]
                    self._update_fused_each(arena.each_arrays, arena.t, group)
                    continue
            if arena is None or arena.group is not group or not arena.ready():
                arena = self._arena(index, group)
                if not (arena.uniform and arena.find_flat_grad()):
                    arena = None
            # In-place updates of tensors that require grad need grad mode off (as in torch).
            grad_enabled = torch.is_grad_enabled() and (arena is None or arena.requires_grad)
            if grad_enabled:
                torch._C._set_grad_enabled(False)
            try:
                if arena is None:
                    self._step_each(self._arenas[index], group)  # type: ignore[arg-type]
                else:
                    self._step_flat(arena, group)
            finally:
                if grad_enabled:
                    torch._C._set_grad_enabled(True)
        self.steps_taken += 1
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: ``.grad = None`` (the default, as in torch), or
        zero it in place (``set_to_none=False``; one ``zero_()`` per flat gradient buffer).

        With the default, a handgrad ``backward`` gives each parameter its slot of the model's
        flat gradient buffer again, so the flat path keeps running.
        """
        if flat.move_count() != self._moves_seen:
            self._follow_replaced()
        if set_to_none:
            for group in self.param_groups:
                for p in group["params"]:
                    p.grad = None
            return
        arenas = self._arenas
        for index, group in enumerate(self.param_groups):
            arena = arenas[index] if index < len(arenas) else None
            if arena is not None and arena.group is group and arena.ready():
                arena.flat_grad.zero_()  # type: ignore[union-attr]
                continue
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.zero_()

    @property
    def fused(self) -> bool:
        """Whether steps run the compiled one-pass loop where they can (``fused=`` at build)."""
        return self._fused

    @property
    def lr(self) -> float:
        """Group 0's learning rate; ``opt.lr = x`` sets every group's (as schedules do)."""
        return float(self.param_groups[0]["lr"])

    @lr.setter
    def lr(self, lr: float) -> None:
        for group in self.param_groups:
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def hyper(self) -> dict[str, Any]:
        """Group 0's options (``option_names``) as a JSON-able dict (tuples become lists)."""
        group = self.param_groups[0]
        return {name: _jsonable(group[name]) for name in self.option_names}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``, then the group's options checked."""
        where = type(self).__name__
        try:
            super().add_param_group(param_group)
        except (ValueError, TypeError) as err:
            raise type(err)(f"{where}: {err}") from None
        group = self.param_groups[-1]
        try:
            self._validate(group, where)
            for i, p in enumerate(group["params"]):
                if not p.is_floating_point():
                    raise ValueError(
                        f"{where}: parameter {i} should be floating point, got {p.dtype}"
                    )
        except (ValueError, TypeError):
            self.param_groups.pop()
            raise
        if isinstance(group["lr"], Tensor) and group["lr"].dim() != 0:
            group["lr"] = group["lr"].squeeze()

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's format: ``{"state": {index: {name: tensor}}, "param_groups": [...]}``.

        The tensors are copies (a snapshot that neither optimizer shares).
        """
        packed = super().state_dict()
        packed["state"] = {
            key: {k: v.clone() if isinstance(v, Tensor) else v for k, v in entry.items()}
            for key, entry in packed["state"].items()
        }
        return packed

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load torch.optim's format (from this class or its torch.optim namesake).

        Also accepts the checkpoint format of ``checkpoint_state()``. Options are checked
        before anything changes; state tensors are copied into this optimizer's buffers.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if "buffers" in state_dict:
            state_dict = self._from_checkpoint(state_dict, where)
        if set(state_dict) != {"state", "param_groups"}:
            raise ValueError(
                f"{where}: expected keys 'state' and 'param_groups', got {sorted(state_dict)}"
            )
        for group in state_dict["param_groups"]:
            missing = [n for n in self.option_names if n not in group]
            if missing:
                raise ValueError(f"{where}: a parameter group lacks {', '.join(missing)}")
            self._validate(group, where)
        state_dict = dict(state_dict)
        state_dict["param_groups"] = [
            {**self.group_extras, **{k: v for k, v in g.items() if k != "fused"}}
            for g in state_dict["param_groups"]
        ]
        try:
            super().load_state_dict(state_dict)
        except (ValueError, KeyError) as err:
            raise ValueError(f"{where}: {err}") from None
        # torch casts 0-d state such as mu_product to the parameter's dtype; keep it as saved
        # (resuming stays bit-exact). And torch's state_dict() hands out its live tensors: copy.
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for saved_id, p in zip(saved_ids, params, strict=True):
            entry, saved = self.state.get(p, {}), state_dict["state"].get(saved_id, {})
            for name, val in entry.items():
                if isinstance(val, Tensor):
                    like = saved.get(name)
                    keep = name in SCALAR_STATE and isinstance(like, Tensor)
                    entry[name] = val.to(like.dtype) if keep else val.clone()
                    if entry[name] is val:
                        entry[name] = val.clone()
        self._arenas = []
        if self.has_step:
            self.steps_taken = max((_step_of(s) for s in self.state.values()), default=0)

    def checkpoint_state(self) -> dict[str, Any]:
        """The state as handgrad's run checkpoints store it (one group, one step).

        Returns:
            ``{"type": class name, "hyper": hyper(), "step": steps taken, "buffers": {...}}``
            with ``buffers`` mapping ``"<name>.<i>"`` (``i`` the parameter index) to a copy of
            parameter ``i``'s state tensor ``name``; ``load_state_dict`` reads it back.

        Raises:
            ValueError: with several parameter groups, or parameters at different steps.
        """
        where = f"{type(self).__name__}.checkpoint_state"
        if len(self.param_groups) != 1:
            raise ValueError(f"{where}: needs one parameter group; use state_dict()")
        packed = self.state_dict()
        step = self.steps_taken
        if self.has_step:
            steps = {_step_of(entry) for entry in packed["state"].values()}
            n_params = len(self.param_groups[0]["params"])
            if len(steps) > 1 or (steps and len(packed["state"]) != n_params):
                raise ValueError(f"{where}: parameters are at different steps; use state_dict()")
            step = steps.pop() if steps else 0
        buffers = {
            f"{name}.{i}": v
            for i, entry in packed["state"].items()
            for name, v in entry.items()
            if name != "step"
        }
        return {
            "type": type(self).__name__,
            "hyper": self.hyper(),
            "step": step,
            "buffers": buffers,
        }

    def _from_checkpoint(self, ckpt: Mapping[str, Any], where: str) -> dict[str, Any]:
        _check_keys(where, "checkpoint entry", set(ckpt), {"type", "hyper", "step", "buffers"})
        if ckpt["type"] != type(self).__name__:
            raise ValueError(
                f"{where}: expected a state of type {type(self).__name__!r}, got {ckpt['type']!r}"
            )
        if len(self.param_groups) != 1:
            raise ValueError(f"{where}: a checkpoint state needs one parameter group")
        step = ckpt["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"{where}: step must be an int >= 0, got {step!r}")
        hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["hyper"].items()}
        _check_keys(where, "option", set(hyper), set(self.option_names))
        n = len(self.param_groups[0]["params"])
        state: dict[int, dict[str, Any]] = {}
        for key, tensor in ckpt["buffers"].items():
            name, _, index = key.rpartition(".")
            if not index.isdigit() or int(index) >= n or not isinstance(tensor, Tensor):
                raise ValueError(f"{where}: unexpected buffer {key!r}")
            state.setdefault(int(index), {})[name] = tensor
        if step > 0 and self.has_step:
            for i in range(n):
                state.setdefault(i, {})["step"] = torch.tensor(float(step), dtype=scalar_dtype())
        group = {**self.param_groups[0], **hyper, "params": list(range(n))}
        self.steps_taken = step
        return {"state": state, "param_groups": [group]}

    def __repr__(self) -> str:
        groups = []
        for i, group in enumerate(self.param_groups):
            options = ", ".join(f"{k}={group[k]!r}" for k in self.option_names)
            groups.append(f"group {i} ({len(group['params'])} tensors): {options}")
        engine = "fused" if self._fused else "torch operations"
        return f"{type(self).__name__}({'; '.join(groups)}; {engine})"

    # -- plumbing -------------------------------------------------------------------------
    def _follow_replaced(self) -> None:
        """Put the live tensor in place of every parameter that ``Module.to()`` or
        ``flatten_parameters()`` replaced (``handgrad.nn.flat.replacement``), its state moved
        along (cast to the new dtype and device), so that ``step()`` updates the model as it is
        now, never the tensors it no longer uses."""
        self._moves_seen = flat.move_count()
        changed = False
        for group in self.param_groups:
            params = group["params"]
            for i, p in enumerate(params):
                new = flat.replacement(p)
                if new is None:
                    continue
                params[i] = new
                changed = True
                state = self.state.pop(p, None)
                if state:
                    self.state[new] = {
                        name: val.to(dtype=new.dtype, device=new.device)
                        if isinstance(val, Tensor) and name not in SCALAR_STATE
                        else val
                        for name, val in state.items()
                    }
        if changed:
            self._arenas = []

    def _arena(self, index: int, group: dict[str, Any]) -> Arena:
        while len(self._arenas) <= index:
            self._arenas.append(None)
        arena = self._arenas[index]
        if (
            arena is not None
            and arena.group is group
            and len(arena.params) == len(group["params"])
            and arena.live()
        ):
            return arena
        arena = Arena(group)
        for i, p in enumerate(arena.params):
            state = self.state.get(p)
            if state:
                arena.adopt(i, state)
        self._arenas[index] = arena
        self._check_uniform(arena, group)
        return arena

    def _check_uniform(self, arena: Arena, group: dict[str, Any]) -> None:
        arena.check_uniform(self.state, self._state_names(group))

    def _step_each(self, arena: Arena, group: dict[str, Any]) -> None:
        where = type(self).__name__
        for i, p in enumerate(arena.params):
            grad = p.grad
            if grad is None:
                continue
            if grad.shape != p.shape or grad.dtype != p.dtype or grad.device != p.device:
                raise ValueError(
                    f"{where}.step: parameter {i} of group {self.param_groups.index(group)} has "
                    f"a .grad of {tuple(grad.shape)} {grad.dtype} on {grad.device}, expected "
                    f"{tuple(p.shape)} {p.dtype} on {p.device}"
                )
            if grad.is_sparse:
                raise ValueError(f"{where}.step: sparse gradients are not supported")
            state = self.state[p]
            if not state:
                state.update(self._init_state(p, group))
                arena.adopt(i, state)
            if self.has_step:
                state["step"] += 1
            arrays = self._fused_views(p, grad, state, group) if self._fused else None
            if arrays is None:
                self._update(p, grad, state, group)
            else:
                self._update_fused(arrays, value(state.get("step", 0.0)), group)
            arena.adopt(i, state)  # state the update created (SGD's first momentum buffer)
        self._check_uniform(arena, group)
        if self._fused and arena.compiled and not (arena.uniform and arena.find_flat_grad()):
            self._plan_each(arena, group)  # (a flat group takes the one-pass loop instead)

    def _plan_each(self, arena: Arena, group: dict[str, Any]) -> None:
        """Make the per-parameter compiled step of a group whose parameters are not flat (or
        whose grads are not): when every parameter has its gradient and all its state, at one
        step, ``_step`` runs the loops on these numpy views while ``arena.each_ready()``."""
        arena.each_arrays = None
        names = self._state_names(group)
        if not names <= {"step"} | (names - SCALAR_STATE):
            return  # the compiled loops keep no 0-d state but the step
        plan, steps = [], []
        for p in arena.params:
            state = self.state.get(p)
            if p.grad is None or not state or set(state) != names:
                return
            arrays = self._fused_views(p, p.grad, state, group)
            if arrays is None:
                return
            plan.append(arrays)
            if "step" in state:
                steps.append(state["step"])
        if len({value(t) for t in steps}) > 1:
            return  # parameters at different steps
        arena.steps = None  # the flat path's; it re-makes it if it runs
        arena.each_steps = [t.numpy() for t in steps]
        arena.t = value(steps[0]) if steps else 0.0
        arena.each_ptrs = [(p.data_ptr(), p.grad.data_ptr()) for p in arena.params]  # type: ignore[union-attr]
        arena.each_arrays = plan

    def _fused_views(
        self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> dict[str, np.ndarray] | None:
        """1-D numpy views of one parameter's tensors for the compiled loop, if it can run."""
        if param.dtype not in (torch.float32, torch.float64) or param.device.type != "cpu":
            return None
        if set(state) != self._state_names(group):  # e.g. SGD's first step
            return None
        tensors = {"param": param, "grad": grad}
        tensors.update({k: v for k, v in state.items() if k not in SCALAR_STATE})
        if not all(t.is_contiguous() and t.dtype == param.dtype for t in tensors.values()):
            return None
        return {k: t.detach().view(-1).numpy() for k, t in tensors.items()}

    def _step_flat(self, arena: Arena, group: dict[str, Any]) -> None:
        assert arena.flat_param is not None and arena.flat_grad is not None
        if self._fused and arena.compiled:  # (the first flat step; then _step runs the loop)
            arrays = arena.numpy_views()
            assert set(arena.scalars) <= {"step"}, "the compiled loops keep no other 0-d state"
            arena.steps = arrays.get("scalar:step")
            arena.fused_arrays = arrays
            arena.t = 0.0
            if arena.steps is not None:
                arena.steps += 1
                arena.t = float(arena.steps[0])
            self._update_fused(arrays, arena.t, group)
            return
        state = {name: flat for name, flat in arena.flats.items()}
        state.update(
            {name: views[0] for name, views in arena.views.items() if name in arena.scalars}
        )
        if self.has_step:
            arena.scalars["step"] += 1
        self._update(arena.flat_param, arena.flat_grad, state, group)
        for store in arena.scalars.values():
            store[1:] = store[0]


def _step_of(entry: Mapping[str, Any]) -> int:
    step = entry.get("step")
    return int(step.item()) if isinstance(step, Tensor) else 0


def _check_keys(where: str, what: str, got: set[str], expected: set[str]) -> None:
    missing, extra = sorted(expected - got), sorted(got - expected)
    if missing:
        raise ValueError(f"{where}: missing {what} {', '.join(map(repr, missing))}")
    if extra:
        raise ValueError(f"{where}: unexpected {what} {', '.join(map(repr, extra))}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.item()
    return list(value) if isinstance(value, tuple) else value


def check_lr(where: str, lr: Any) -> None:
    """Raise unless ``lr`` is a number > 0 or a one-element floating tensor."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1 or not lr.is_floating_point():
            raise ValueError(
                f"{where}: a tensor lr must be one floating-point element, got "
                f"{tuple(lr.shape)} {lr.dtype}"
            )
        lr = lr.item()
    check_number(where, "lr", lr, low=0.0, low_open=True)


def check_betas(where: str, betas: Any) -> None:
    """Raise unless ``betas`` is a pair of numbers in [0, 1)."""
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise ValueError(f"{where}: betas must be a pair (β1, β2), got {betas!r}")
    for i, beta in enumerate(betas):
        check_number(where, f"betas[{i}]", beta, low=0.0, high=1.0, high_open=True)


def check_bool(where: str, name: str, flag: Any) -> None:
    """Raise unless ``flag`` is a bool."""
    if not isinstance(flag, bool):
        raise TypeError(f"{where}: {name} must be a bool, got {flag!r}")


def check_number(
    where: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise unless ``value`` is a finite real number in the given interval.

    Example: ``check_number("Adam", "eps", eps, low=0.0)`` raises
    ``ValueError("Adam: eps must be >= 0, got -1.0")``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{where}: {name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be finite, got {value}")
    lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{where}: {name} must be {_both(lo, hi)}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{where}: {name} must be {_both(lo, hi)}, got {value}")


def _both(lo: str, hi: str) -> str:
    return f"{lo} and {hi}" if lo and hi else lo or hi


def check_int(where: str, name: str, value: Any, *, low: int) -> None:
    """Raise unless ``value`` is an int >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: {name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{where}: {name} must be >= {low}, got {value}")


def build_named(
    kind: str, registry: Mapping[str, Callable[..., T]], name: str, *args: Any, **kwargs: Any
) -> T:
    """Call ``registry[name](*args, **kwargs)``, turning a wrong name or option into a clear error.

    Raises:
        ValueError: for an unknown name (suggesting the closest one) or an unknown keyword.
    """
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=1, cutoff=0.0)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {kind} {name!r}{hint} (valid: {', '.join(sorted(registry))})")
    factory = registry[name]
    options = [
        p.name
        for p in list(inspect.signature(factory).parameters.values())[len(args) :]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    for key in kwargs:
        if key not in options:
            raise ValueError(
                f"{kind} {name!r}: unknown option {key!r} (valid: {', '.join(options)})"
            )
    return factory(*args, **kwargs)


# torch's own wrapper (profiler range, step hooks) around the plain step, for when it is needed.
_hooked_step = torch.optim.Optimizer.profile_hook_step(Optimizer._step)
