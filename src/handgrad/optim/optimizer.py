"""What every handgrad optimizer shares: parameters and grads, flat state buffers, state dicts.

An optimizer holds the parameters it was built with and the ``.grad`` tensor of each (the model
preallocates them and its hand-written backward passes accumulate into them in place). Its
state (momentum, running averages, ...) lives in flat buffers of ``numel`` elements, one per
kind, preallocated at construction, together with the scratch space a step needs.

Two paths run the same update rule:

- **flat**: when the parameters, and separately their grads, lie end to end in one storage
  (a model after ``flatten_parameters()``, see ``handgrad.nn.flat``), the whole model is
  updated with a handful of in-place vector operations on 1-D views, and a step allocates no
  tensor. Build the optimizer *after* flattening the model: the layout is detected once, at
  construction.
- **per parameter**: otherwise the same operations run once per parameter on views of the same
  flat buffers. The two paths give bit-identical results.

Either way a step is carried out by one of two engines:

- **fused** (the default on the CPU): the update rule as one loop over the elements, compiled
  by numba (``handgrad.optim.kernels``), a single pass over the buffers;
- **torch operations**: the same rule as in-place torch operations, one pass each (on other
  devices, for optimizers without a loop, or with ``fused=False``).

The two agree to rounding (about 1e-16 relative per step in float64).

Only the learning rate ``opt.lr`` is meant to change during training (schedules set it); the
other hyper-parameters decide which buffers exist, so change them through
``load_state_dict``, which reallocates what the new values need.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor

from handgrad.nn.flat import flat_view
from handgrad.optim import kernels

T = TypeVar("T")


class Optimizer:
    """Base class: parameters, grads, flat state buffers, ``zero_grad`` and state dicts.

    A subclass declares its hyper-parameters in ``hyper_names`` (``lr`` first), checks them in
    ``_validate``, names the buffers a set of hyper-parameters needs in ``_layout``, and writes
    its update rule in ``_update``, which receives one *chunk*: the flat parameter, grad and
    buffers on the flat path, or one parameter's views of them on the per-parameter path.

    Attributes:
        params: the parameters, updated in place by ``step``.
        grads: their ``.grad`` tensors, read by ``step``.
        lr: the learning rate used by the next ``step``; schedules set it.
        step_count: how many steps have been taken (``t`` in the update rules, after
            ``step`` increments it).
        is_flat: whether steps run on the flat path.
        fused: whether steps run the compiled one-pass loop (see the module's docstring);
            read-only.
    """

    hyper_names: ClassVar[tuple[str, ...]] = ("lr",)
    has_fused_loop: ClassVar[bool] = False  # a subclass with ``_update_fused`` sets it
    lr: float

    def __init__(
        self, params: Iterable[Tensor], hyper: Mapping[str, Any], fused: bool | None = None
    ) -> None:
        where = type(self).__name__
        self.params: list[Tensor] = _check_params(where, params)
        self.grads: list[Tensor] = [p.grad for p in self.params]  # type: ignore[misc]
        self._validate(hyper, where)
        self._set_hyper(hyper)
        self.step_count = 0

        first = self.params[0]
        self._dtype, self._device = first.dtype, first.device
        self._shapes = [p.shape for p in self.params]
        self._offsets = [0]
        for p in self.params:
            self._offsets.append(self._offsets[-1] + p.numel())
        self.numel = self._offsets[-1]

        self._flat_param = flat_view(self.params)
        self._flat_grad = flat_view(self.grads)
        self.is_flat = self._flat_param is not None and self._flat_grad is not None
        self._fused = self._resolve_fused(fused, where)
        self._np_dtype = np.float32 if self._dtype == torch.float32 else np.float64
        # The smallest normal number: the compiled loops store running averages below it as 0.
        self._np_tiny = np.finfo(self._np_dtype).tiny

        self._state: dict[str, Tensor] = {}  # name -> (numel,), persisted by state_dict
        self._scalars: dict[str, tuple[Tensor, float]] = {}  # name -> (0-d tensor, its value)
        self._chunks: list[dict[str, Tensor]] = []
        self._arrays: list[dict[str, np.ndarray]] = []  # the chunks as 1-D numpy views, if fused
        self._build()

    # -- what subclasses provide ----------------------------------------------------------
    @classmethod
    def _validate(cls, hyper: Mapping[str, Any], where: str) -> None:
        """Raise ``ValueError``/``TypeError`` (naming ``where``) if a value is out of range."""
        check_number(where, "lr", hyper["lr"], low=0.0, low_open=True)

    @classmethod
    def _layout(cls, hyper: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """Names of the state buffers and of the scratch buffers these hyper-parameters need."""
        return [], []

    def _update(self, chunk: dict[str, Tensor]) -> None:
        """Apply the update rule to ``chunk["param"]`` given ``chunk["grad"]`` and the buffers."""
        raise NotImplementedError

    def _update_fused(self, arrays: dict[str, np.ndarray]) -> None:
        """``_update`` as one compiled loop over 1-D numpy views of the chunk's tensors."""
        raise NotImplementedError

    # -- the training-loop API ------------------------------------------------------------
    def step(self) -> None:
        """Update every parameter in place from its current ``.grad``; ``.grad`` is not changed."""
        for i, (p, g) in enumerate(zip(self.params, self.grads, strict=True)):
            if p.grad is not g:
                raise ValueError(
                    f"{type(self).__name__}.step: parameter {i} has a new .grad tensor since the "
                    "optimizer was built; accumulate into .grad in place, or build the "
                    "optimizer again"
                )
        self.step_count += 1
        if self._arrays:
            for arrays in self._arrays:
                self._update_fused(arrays)
        else:
            for chunk in self._chunks:
                self._update(chunk)

    def zero_grad(self) -> None:
        """Set every ``.grad`` to zero, in place (one ``zero_()`` on the flat path)."""
        if self._flat_grad is not None:
            self._flat_grad.zero_()
        else:
            for g in self.grads:
                g.zero_()

    def hyper(self) -> dict[str, Any]:
        """The hyper-parameters as a JSON-able dict (tuples become lists)."""
        return {name: _jsonable(getattr(self, name)) for name in self.hyper_names}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training bit for bit.

        Returns:
            ``{"type": class name, "hyper": hyper(), "step": step_count, "buffers": {...}}``
            where ``buffers`` maps ``"<name>.<i>"`` (``i`` the parameter index) to a copy of
            that parameter's state, shaped like the parameter. The tensors are copies, so the
            dict is a snapshot; the rest is JSON-able.
        """
        buffers = {
            f"{name}.{i}": view.clone()
            for name, flat in self._state.items()
            for i, view in enumerate(self._split(flat))
        }
        return {
            "type": type(self).__name__,
            "hyper": self.hyper(),
            "step": self.step_count,
            "buffers": buffers,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyper-parameters, step count and buffers from ``state_dict()``'s output.

        Buffers are copied into the existing ones, in place. Everything is checked before
        anything changes.

        Raises:
            ValueError: on a missing or extra entry, another optimizer's type, an invalid
                hyper-parameter, or a buffer of the wrong shape or dtype.
        """
        where = f"{type(self).__name__}.load_state_dict"
        _check_keys(where, "state dict", set(state_dict), {"type", "hyper", "step", "buffers"})
        if state_dict["type"] != type(self).__name__:
            raise ValueError(
                f"{where}: expected a state dict of type {type(self).__name__!r}, "
                f"got {state_dict['type']!r}"
            )
        hyper = dict(state_dict["hyper"])
        _check_keys(where, "hyper-parameter", set(hyper), set(self.hyper_names))
        self._validate(hyper, where)
        step = state_dict["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"{where}: step must be an int >= 0, got {step!r}")

        state_names, _ = self._layout(hyper)
        buffers: Mapping[str, Tensor] = state_dict["buffers"]
        expected = {f"{name}.{i}" for name in state_names for i in range(len(self.params))}
        _check_keys(where, "buffer", set(buffers), expected)
        for key, tensor in buffers.items():
            shape = self._shapes[int(key.rsplit(".", 1)[1])]
            if not isinstance(tensor, Tensor) or tensor.shape != shape:
                got = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
                raise ValueError(
                    f"{where}: buffer {key!r} should have shape {tuple(shape)}, got {got}"
                )
            if tensor.dtype != self._dtype:
                raise ValueError(
                    f"{where}: buffer {key!r} should have dtype {self._dtype}, got {tensor.dtype}"
                )

        self._set_hyper(hyper)
        self._build()
        for name, flat in self._state.items():
            for i, view in enumerate(self._split(flat)):
                view.copy_(buffers[f"{name}.{i}"])
        self.step_count = step

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyper().items())
        path = "flat" if self.is_flat else "per-parameter"
        engine = ", fused" if self._fused else ""
        sizes = f"{len(self.params)} tensors, {self.numel} values"
        return f"{type(self).__name__}({hyper}; {sizes}, {path}{engine})"

    @property
    def fused(self) -> bool:
        """Whether steps run the compiled one-pass loop; chosen at construction (``fused=``)."""
        return self._fused

    # -- plumbing -------------------------------------------------------------------------
    def _set_hyper(self, hyper: Mapping[str, Any]) -> None:
        for name in self.hyper_names:
            value = hyper[name]
            setattr(self, name, tuple(value) if isinstance(value, list) else value)

    def _resolve_fused(self, fused: bool | None, where: str) -> bool:
        """``fused`` as given, or (None) whether the compiled loop can run these parameters."""
        reasons = []
        if not self.has_fused_loop:
            reasons.append(f"{where} has no compiled loop")
        if self._device.type != "cpu":
            reasons.append(f"the parameters are on {self._device}, not the CPU")
        if self._dtype not in (torch.float32, torch.float64):
            reasons.append(f"the parameters are {self._dtype}, not float32 or float64")
        loose = [
            i
            for i, (p, g) in enumerate(zip(self.params, self.grads, strict=True))
            if not (p.is_contiguous() and g.is_contiguous())
        ]
        if loose:
            reasons.append(f"parameter {loose[0]} or its .grad is not contiguous")
        if not reasons and not kernels.available():
            reasons.append("numba cannot be imported")
        if fused is None:
            return not reasons
        if not isinstance(fused, bool):
            raise TypeError(f"{where}: fused must be True, False or None, got {fused!r}")
        if fused and reasons:
            raise ValueError(
                f"{where}: fused=True is not possible: {'; '.join(reasons)}; use fused=None "
                "(the default) to choose automatically"
            )
        return fused

    def _np_scalar(self, value: float) -> Any:
        """``value`` as a numpy scalar of the parameters' dtype, for the compiled loops."""
        return self._np_dtype(value)

    def _scalar(self, name: str, value: float) -> Tensor:
        """``value`` in a kept 0-d tensor of the parameters' dtype, refilled only on change.

        ``x.mul_(0.999)`` makes torch wrap 0.999 in a new tensor and convert it to ``x``'s
        dtype on every call; ``x.mul_(self._scalar("beta2", 0.999))`` does the same arithmetic
        (the same rounding of 0.999 to the dtype, the same kernel) without that, about 3 us less
        per operation on 80k floats.
        """
        kept = self._scalars.get(name)
        if kept is not None and kept[1] == value:
            return kept[0]
        scalar = kept[0] if kept is not None else torch.zeros((), dtype=self._dtype)
        scalar.fill_(value)
        self._scalars[name] = (scalar, value)
        return scalar

    def _new_buffer(self) -> Tensor:
        return torch.zeros(self.numel, dtype=self._dtype, device=self._device)  # (numel,)

    def _split(self, flat: Tensor) -> list[Tensor]:
        """Per-parameter views of a flat ``(numel,)`` buffer, shaped like the parameters."""
        return [
            flat[start:stop].view(shape)
            for start, stop, shape in zip(
                self._offsets[:-1], self._offsets[1:], self._shapes, strict=True
            )
        ]

    def _build(self) -> None:
        """Allocate the buffers the current hyper-parameters need and cut them into chunks."""
        state_names, scratch_names = self._layout(self.hyper())
        self._state = {
            name: self._state[name] if name in self._state else self._new_buffer()
            for name in state_names
        }
        scratch = {name: self._new_buffer() for name in scratch_names}
        flat = {**self._state, **scratch}
        if self.is_flat:
            assert self._flat_param is not None and self._flat_grad is not None
            self._chunks = [{"param": self._flat_param, "grad": self._flat_grad, **flat}]
        else:
            views = {name: self._split(buffer) for name, buffer in flat.items()}
            self._chunks = [
                {"param": p, "grad": g, **{name: v[i] for name, v in views.items()}}
                for i, (p, g) in enumerate(zip(self.params, self.grads, strict=True))
            ]
        # 1-D numpy views of the same memory (contiguous: checked in _resolve_fused).
        self._arrays = [
            {name: t.detach().view(-1).numpy() for name, t in chunk.items()}
            for chunk in self._chunks
            if self._fused
        ]


def sqrt_into(src: Tensor, out: Tensor) -> Tensor:
    """out = √src, element-wise, correctly rounded; returns ``out``.

    On the CPU this goes through numpy (the same memory, no copy): torch's CPU kernel is about
    3x slower than the hardware square root numpy uses, and slower again on zeros, which
    Adam's second moment is full of (pixels that are never lit). numpy's result is the exactly
    rounded IEEE square root; torch's differs from it by one unit in the last place on some
    elements, so handgrad agrees with torch.optim to ~1e-16 relative per step, not bit for bit.
    """
    if src.device.type == "cpu" and out.device.type == "cpu":
        np.sqrt(src.numpy(), out=out.numpy())
        return out
    return torch.sqrt(src, out=out)


def _check_params(where: str, params: Iterable[Tensor]) -> list[Tensor]:
    """The parameters as a list, each a tensor with a ``.grad`` of its own shape."""
    if isinstance(params, Tensor):
        raise TypeError(f"{where}: params should be an iterable of tensors, got a single Tensor")
    params = list(params)
    if not params:
        raise ValueError(f"{where}: got an empty parameter list")
    first = params[0]
    seen: set[int] = set()
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{where}: parameter {i} should be a Tensor, got {type(p).__name__}")
        if id(p) in seen:
            raise ValueError(f"{where}: parameter {i} appears more than once")
        seen.add(id(p))
        if not p.is_floating_point():
            raise ValueError(f"{where}: parameter {i} should be floating point, got {p.dtype}")
        if p.requires_grad:
            raise ValueError(
                f"{where}: parameter {i} requires grad; handgrad parameters run with autograd "
                "off and carry a hand-filled .grad"
            )
        # A missing .grad is an error rather than silently allocated: handgrad modules
        # preallocate it, and a fresh tensor here would never be seen by the backward pass.
        if p.grad is None:
            raise ValueError(
                f"{where}: parameter {i} (shape {tuple(p.shape)}) has no .grad tensor; "
                "set p.grad = torch.zeros_like(p) before building the optimizer"
            )
        if p.grad.shape != p.shape or p.grad.dtype != p.dtype or p.grad.device != p.device:
            raise ValueError(
                f"{where}: parameter {i}'s .grad should match it: expected "
                f"{tuple(p.shape)} {p.dtype} on {p.device}, got "
                f"{tuple(p.grad.shape)} {p.grad.dtype} on {p.grad.device}"
            )
        if p.dtype != first.dtype or p.device != first.device:
            raise ValueError(
                f"{where}: all parameters should share one dtype and device, got "
                f"{first.dtype} on {first.device} (parameter 0) and "
                f"{p.dtype} on {p.device} (parameter {i})"
            )
    return params


def _check_keys(where: str, what: str, got: set[str], expected: set[str]) -> None:
    missing, extra = sorted(expected - got), sorted(got - expected)
    if missing:
        raise ValueError(f"{where}: missing {what} {', '.join(map(repr, missing))}")
    if extra:
        raise ValueError(f"{where}: unexpected {what} {', '.join(map(repr, extra))}")


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


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
