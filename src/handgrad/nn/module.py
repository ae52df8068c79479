"""``Module``, the base of every layer and loss, and ``Sequential``.

A module's parameters are plain torch tensors that never require grad. ``backward`` gives each
one its gradient as torch's autograd does: a ``.grad`` that is None gets a fresh gradient (for
a parameter held in a flat buffer, its slot of the flat gradient buffer, written, not zeroed and
added to); an existing ``.grad`` is added into (``+=``). Names, state-dict keys and shapes follow
``torch.nn`` exactly, so a handgrad model's state dict loads into the equivalent ``torch.nn``
model with ``strict=True``, and back.

Saved state, per use. Each call ``m(x)`` keeps what ``m.backward`` needs in a record of its own,
pushed on the module's stack; each ``backward`` pops one, so a module used twice in a model (one
``ReLU`` placed twice in a ``Sequential``) backpropagates each use with its own input, in reverse
order. A backward frees its record: a second backward of one forward raises, as torch's
"Trying to backward through the graph a second time" does. A forward that begins a new top-level
call while an earlier one still waits for its backward (``o1 = m(x1); m(x2); m.backward(g1)``
looks exactly like the legal ``m(x1); o2 = m(x2); m.backward(g2)``) makes the next backward raise
rather than guess; run forwards that need no backward under ``no_saved_state()``. (An
evaluation forward in eval mode, followed by training forwards, is the usual loop and is simply
dropped.)

The record costs nothing in the usual case, one forward then its backward: it says "the
module's attributes" instead of copying them, and whatever would overwrite them first copies
them into the record -- another call of the module, a direct ``m.forward(x)`` (``forward`` is
wrapped for that; ``__call__`` runs the unwrapped one), a forward under ``no_saved_state()``.

The input gradient (dL/dx), as torch computes it: ``backward`` computes and returns it only when
the input "requires grad" -- ``x.requires_grad`` is True, or x is the output of a handgrad module
(the output of a module with parameters, or of one whose input required grad) -- or when asked
with ``backward(g, input_grad=True)``. Otherwise it returns None, and Linear skips the product.
Losses always return dL/d(input).

Children are found the way they are assigned: every attribute that holds a ``Module`` is a child,
in assignment order. Parameters and buffers are declared with ``register_parameter`` and
``register_buffer`` and then read and written as ordinary attributes.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import operator
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from handgrad.nn.flat import flatten_into_buffer, mark_replaced

# The attribute that marks a tensor as the output of a handgrad module that "requires grad".
_OUTPUT_TAG = "_hg_requires_grad"
# The attribute of a parameter that holds its slot of a flat gradient buffer.
GRAD_SLOT = "_hg_grad_slot"
_MISSING = object()
_NO_ARG = object()  # backward() called with no gradient (a loss's scalar default)


class _Lazy:
    """A record's values that are still the module's attributes (see ``Module.__call__``).

    Pickled and copied by name, so a copied module's record still says so.
    """

    __slots__ = ()

    def __reduce__(self) -> str:
        return "_LAZY"

    def __repr__(self) -> str:
        return "<saved state: the module's attributes>"


_LAZY = _Lazy()


def _nothing(_: object) -> tuple[()]:
    return ()


class _Mode:
    """Process-wide bookkeeping of forward and backward calls (plain ints: a few ns each)."""

    __slots__ = ("depth", "force_input_grad", "generation", "keep")

    def __init__(self) -> None:
        self.keep = True  # False inside no_saved_state()
        self.depth = 0  # module calls in progress (0: the next call is a top-level forward)
        self.generation = 0  # top-level forwards so far
        # Inside a backward asked for dL/dx (input_grad=True): every module it calls computes
        # its own, so that a user's composite module can return it.
        self.force_input_grad = False


_MODE = _Mode()


@contextlib.contextmanager
def no_saved_state() -> Iterator[None]:
    """Run forwards that keep no state for a backward (evaluation, finite-difference probes).

    Inside, ``m(x)`` computes the output only: nothing is pushed on any module's stack, so a
    backward afterwards belongs to the forward before the block. Like ``torch.no_grad()``
    for autograd. (BatchNorm in training mode still updates its running statistics.)

    Example:
        >>> with handgrad.nn.no_saved_state():
        ...     accuracy = (model(x_val).argmax(1) == y_val).float().mean()
    """
    previous = _MODE.keep
    _MODE.keep = False
    try:
        yield
    finally:
        _MODE.keep = previous


def requires_grad(x: object) -> bool:
    """Whether a backward should compute dL/dx for input ``x`` (torch's rule, no graph kept)."""
    return isinstance(x, Tensor) and (x.requires_grad or getattr(x, _OUTPUT_TAG, False))


class _GradBox:
    """A parameter's own gradient tensor, kept between steps for ``fresh_grad`` to write again.

    Empty in pickles and copies (``torch.save(model)``, ``copy.deepcopy``), so a saved or copied
    model carries no gradient memory.
    """

    __slots__ = ("tensor",)

    def __init__(self, tensor: Tensor | None = None) -> None:
        self.tensor = tensor

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (_GradBox, ())

    def __deepcopy__(self, memo: dict[int, Any]) -> _GradBox:
        return _GradBox()


# The attribute of a parameter that holds its own gradient (a parameter not in a flat buffer).
_OWN_GRAD = "_hg_own_grad"


def _alone() -> int:
    """``sys.getrefcount`` of a box's tensor, read as ``fresh_grad`` reads it, when nothing but
    the box holds the tensor (measured, not assumed: interpreters count differently)."""
    box = _GradBox(torch.empty(0))
    slot = box.tensor
    return sys.getrefcount(slot)


_ALONE = _alone()


def fresh_grad(param: Tensor) -> Tensor:
    """Attach and return a new ``.grad`` for ``param``, to be WRITTEN in full (not zeroed).

    For a parameter of a flattened model it is the parameter's slot of the flat gradient
    buffer, so an optimizer's one-vector fast path keeps working after ``zero_grad()`` set the
    grads to None. Otherwise it is the tensor the parameter's last fresh gradient was, written
    again (no allocation, no page faults; an optimizer's per-parameter path finds the same
    memory), unless anything still refers to that tensor -- ``old = p.grad`` kept from the last
    step keeps its values, as in torch -- in which case it is a new tensor like ``param``.
    (Views of an old ``.grad``, ``p.grad.view(-1)`` or ``.numpy()``, are not seen: ``clone()``
    a gradient you want to keep.)
    """
    slot = getattr(param, GRAD_SLOT, None)
    if slot is not None:
        try:
            param.grad = slot  # torch checks its size, dtype and device against the parameter's
            return slot
        except RuntimeError:
            pass  # moved or reshaped since it was flattened: a gradient tensor of its own
    box = getattr(param, _OWN_GRAD, None)
    if box is None:
        box = _GradBox()
        setattr(param, _OWN_GRAD, box)
    slot = box.tensor
    if slot is not None and sys.getrefcount(slot) == _ALONE:  # nobody else holds it
        try:
            param.grad = slot
            return slot
        except RuntimeError:
            pass  # the parameter changed shape, dtype or device
    slot = torch.empty_like(param)
    box.tensor = slot
    param.grad = slot
    return slot


def accumulate_grad(param: Tensor, value: Tensor) -> Tensor:
    """Add ``value`` to ``param.grad`` as autograd does: a fresh gradient where ``.grad`` is None.

    The helper for users' own modules, since ``param.grad += value`` cannot add to None (the
    state ``zero_grad()`` leaves, as in torch 2.x):

        >>> def backward(self, grad_out):
        ...     accumulate_grad(self.s, (grad_out * self._x).sum().reshape(1))  # dL/ds = Σ g·x
        ...     return grad_out * self.s

    Shapes: value like ``param``. Returns ``param.grad``.
    """
    if value.requires_grad:  # a gradient is data: no autograd graph goes into .grad
        value = value.detach()
    grad = param.grad
    if grad is None:
        if value.shape != param.shape:
            raise ValueError(
                f"accumulate_grad: gradient of shape {tuple(value.shape)} for a parameter of "
                f"shape {tuple(param.shape)}"
            )
        return fresh_grad(param).copy_(value)
    return grad.add_(value)


def grad_of(param: Tensor) -> Tensor:
    """The ``.grad`` of a parameter to add into: a zeroed fresh one if it was None."""
    grad = param.grad
    if grad is None:
        grad = fresh_grad(param).zero_()
    return grad


def _keep_values(module: Module, tape: list[tuple[Any, ...]]) -> None:
    """Copy into the record on top of ``tape`` the attributes its forward saved: they were
    left in place (the record lazy) and another forward is about to overwrite them."""
    generation, needs, training, _, ambiguous, key = tape[-1]
    d = module.__dict__
    try:
        values = module._saved_get(d)  # the value (one name) or a tuple of them
    except KeyError:
        values = module._saved_values(d)
    tape[-1] = (generation, needs, training, values, ambiguous, key)


def _guarded_forward(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a subclass's ``forward`` for calls that do not go through ``__call__`` (a direct
    ``m.forward(x)``, ``no_saved_state()``): first keep a waiting use's attributes, which the
    call overwrites. ``__call__`` runs the unwrapped ``fn`` (``forward._hg_raw``)."""

    @functools.wraps(fn)
    def forward(self: Module, *inputs: Any, **kwargs: Any) -> Any:
        tape = self.__dict__.get("_hg_tape")
        if tape and tape[-1][3] is _LAZY:
            _keep_values(self, tape)
        return fn(self, *inputs, **kwargs)

    forward._hg_raw = fn  # type: ignore[attr-defined]
    return forward


def _tracked_backward(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a subclass's ``backward``: pop this use's saved state, decide the input gradient.

    The wrapped ``backward(grad_output, ..., input_grad=None)`` runs ``fn`` with the attributes
    its forward saved, sets ``self.needs_input_grad``, and returns None in place of dL/dx when
    the input did not require grad (losses always return it). A ``super().backward(g)`` from
    inside another backward of the same module runs ``fn`` directly.
    """

    @functools.wraps(fn)
    def backward(
        self: Module,
        grad_output: Any = _NO_ARG,
        *args: Any,
        input_grad: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        if type(self).backward is not backward:
            # A parent class's backward, from the subclass's own (``super().backward(g)``):
            # that backward already took this use's saved state.
            if grad_output is not _NO_ARG:
                args = (grad_output, *args)
            return fn(self, *args, **kwargs)
        d = self.__dict__
        tape = d.get("_hg_tape")
        if tape and input_grad is None and not (args or kwargs or _MODE.force_input_grad):
            # The usual call, m.backward(g) after m(x): the same as below, in fewer steps.
            record = tape.pop()
            values, needs = record[3], record[1]
            if values is _LAZY:  # the attributes are this use's own
                pass
            elif record[5] is True or record[4]:  # found by comparing, or ambiguous
                tape.append(record)
                return _backward_general(self, fn, d, tape, grad_output, args, input_grad, kwargs)
            elif record[5].__class__ is str:
                d[record[5]] = values
            elif record[5]:
                d.update(zip(record[5], values, strict=True))
            d["_hg_needs"] = needs
            try:
                result = fn(self) if grad_output is _NO_ARG else fn(self, grad_output)
            except BaseException:
                _drop_records(self)  # this use and the rest below it will get no backward
                raise
            if needs or self._always_input_grad:
                return result
            return None
        return _backward_general(self, fn, d, tape, grad_output, args, input_grad, kwargs)

    backward._hg_tracked = True  # type: ignore[attr-defined]
    return backward


def _backward_general(
    self: Module,
    fn: Callable[..., Any],
    d: dict[str, Any],
    tape: list[tuple[Any, ...]] | None,
    grad_output: Any,
    args: tuple[Any, ...],
    input_grad: bool | None,
    kwargs: dict[str, Any],
) -> Any:
    """``_tracked_backward``'s every case: keywords, ``input_grad=``, no saved forward."""
    if not tape:
        raise self._no_record()
    _generation, needs, _training, values, ambiguous, key = tape.pop()
    if ambiguous:
        _drop_records(self)
        raise RuntimeError(
            f"{self._label()}: backward after two forward calls with no backward in "
            "between: handgrad cannot tell which forward this gradient belongs "
            "to; run forwards that need no backward under handgrad.nn.no_saved_state() "
            "(or call backward once per forward, before the next one)"
        )
    mode = _MODE
    forced = mode.force_input_grad
    need = (needs or forced) if input_grad is None else bool(input_grad)
    current = None
    if values is _LAZY:  # still the module's attributes
        pass
    elif key.__class__ is str:  # one declared attribute
        d[key] = values
    elif key is True:  # found by comparing attributes: put back afterwards what is there
        current = {k: d.get(k, _MISSING) for k in values}
        d.update(values)
    elif key:  # several declared attributes
        d.update(zip(key, values, strict=True))
    d["_hg_needs"] = need
    d["_hg_request"] = input_grad
    if input_grad is True:
        mode.force_input_grad = True  # for the modules it calls
    try:
        if args or kwargs or grad_output is _NO_ARG:
            if grad_output is not _NO_ARG:
                args = (grad_output, *args)
            result = fn(self, *args, **kwargs)
        else:
            result = fn(self, grad_output)
    except BaseException:
        _drop_records(self)
        raise
    finally:
        mode.force_input_grad = forced
        d["_hg_request"] = None  # the lean path leaves it unset
        if current is not None:
            for k, v in current.items():
                if v is _MISSING:
                    d.pop(k, None)
                else:
                    d[k] = v
    if need or self._always_input_grad:
        return result
    return None


def free_saved_state(module: Module) -> None:
    """Forget every saved forward of ``module`` and its descendants, waiting for a backward.

    For a caller that abandons forwards (a backward that raised, a probe): the next forward
    then starts clean instead of making its backward ambiguous.
    """
    _drop_records(module)


def _drop_records(module: Module) -> None:
    """Forget every saved forward of ``module`` and its descendants (after an error)."""
    for m in module.modules():
        tape = m.__dict__.get("_hg_tape")
        if tape:
            tape.clear()


def _drop_generation(module: Module, generation: int) -> None:
    """Forget the records a failed top-level forward pushed (it will get no backward)."""
    for m in module.modules():
        tape = m.__dict__.get("_hg_tape")
        while tape and tape[-1][0] == generation:
            tape.pop()


class Module:
    """Base class: a forward pass, a hand-written backward pass, and named parameters.

    Subclasses implement ``forward(*inputs)``, which keeps what the backward pass needs as
    attributes, and ``backward(grad_output)``, which returns dL/d(input) and adds each
    parameter's gradient with ``accumulate_grad`` (or ``grad_of(p).add_``). Calling the module,
    ``m(x)``, saves those attributes per use; ``backward`` sees the ones of its own forward.
    A subclass may name them in ``_saved_names`` (faster than finding what forward changed), and
    may read ``self.needs_input_grad`` in ``backward`` to skip dL/dx when nothing needs it.

    Example:
        >>> class Scale(Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.register_parameter("s", torch.ones(1))
        ...     def forward(self, x):
        ...         self._x = x
        ...         return x * self.s
        ...     def backward(self, grad_out):
        ...         accumulate_grad(self.s, (grad_out * self._x).sum().reshape(1))  # Σ g·x
        ...         return grad_out * self.s  # dL/dx = g·s
    """

    training: bool
    # The attributes a forward sets for its backward; None: whatever attributes it changes.
    _saved_names: ClassVar[tuple[str, ...] | None] = None
    # Losses return dL/d(input) whatever the input (it is their whole point).
    _always_input_grad: ClassVar[bool] = False
    _saved_get: Callable[[dict[str, Any]], Any]  # a staticmethod, set per class
    _saved_key: ClassVar[str | tuple[str, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fn = cls.__dict__.get("backward")
        if fn is not None and not getattr(fn, "_hg_tracked", False):
            cls.backward = _tracked_backward(fn)
        fwd = cls.__dict__.get("forward")
        if fwd is not None and getattr(fwd, "_hg_raw", None) is None:
            cls.forward = _guarded_forward(fwd)  # type: ignore[method-assign]
        own_forward = "forward" in cls.__dict__ and "_saved_names" not in cls.__dict__
        if own_forward and not cls.__module__.startswith("handgrad.nn."):
            cls._saved_names = None  # its own forward may keep more than the base's names
        names = cls._saved_names
        getter = operator.itemgetter(*names) if names else _nothing
        cls._saved_get = staticmethod(getter)
        # How a record names what it saved: the one name, the tuple of names, or ().
        cls._saved_key = names[0] if names and len(names) == 1 else (names or ())

    def __init__(self) -> None:
        self.training = True
        self._param_names: list[str] = []
        self._buffer_names: list[str] = []
        self._init_records()

    def _init_records(self) -> None:
        d = self.__dict__
        # records (generation, needs, training, values, ambiguous, key): key is the saved
        # attribute's name, a tuple of names (values a tuple), or True (values a dict)
        d["_hg_tape"] = []
        d["_hg_needs"] = None  # set by each backward (None: no backward yet)
        d["_hg_request"] = None

    # -- the two passes -------------------------------------------------------------------
    def forward(self, *inputs: Tensor) -> Tensor:
        """Compute the output and keep what ``backward`` needs."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    if TYPE_CHECKING:
        # Every subclass's backward is wrapped to take ``input_grad=`` too (see
        # ``_tracked_backward``); typed loosely so that subclasses may narrow the gradient.
        backward: Callable[..., Any]
    else:

        def backward(self, grad_output: Tensor, input_grad: bool | None = None) -> Tensor | None:
            """Return dL/d(input) given dL/d(output) (or None, see the module docstring); add
            each parameter's gradient to its ``.grad``. ``input_grad=True``: dL/dx always."""
            raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        mode = _MODE
        d = self.__dict__
        tape = d.get("_hg_tape")
        raw = getattr(type(self).forward, "_hg_raw", None)
        if (
            tape is not None
            and not tape
            and raw is not None
            and mode.keep
            and not kwargs
            and self._saved_names is not None
            and "forward" not in d
        ):
            # The usual call: no use of this module waits for its backward, and its forward
            # names what it saves. The same as below, in fewer steps, and lazily: the record
            # says "the attributes" (_LAZY) instead of copying them. Whatever overwrites them
            # first copies them into it: the next forward, through __call__ or directly.
            depth = mode.depth
            if depth == 0:
                mode.generation += 1
            mode.depth = depth + 1
            try:
                out = raw(self, *inputs)
            except BaseException:
                mode.depth = depth
                if depth == 0:
                    _drop_generation(self, mode.generation)
                raise
            mode.depth = depth
            if tape:  # it called itself inside its forward: those records' attributes are gone
                tape.clear()
                if depth == 0:
                    _drop_generation(self, mode.generation)
                raise RuntimeError(
                    f"{self._label()}: called itself inside its own forward, so the saved state "
                    "of the inner call was overwritten; set _saved_names = None on the class "
                    "(each call's state is then copied) or call a child module instead"
                )
            first = inputs[0] if inputs else None
            needs = (type(first) is Tensor or isinstance(first, Tensor)) and (
                getattr(first, _OUTPUT_TAG, False) or first.requires_grad
            )
            tape.append((mode.generation, needs, self.training, _LAZY, False, self._saved_key))
            if (
                (needs or self._param_names)
                and out is not first
                and (type(out) is Tensor or isinstance(out, Tensor))
            ):
                setattr(out, _OUTPUT_TAG, True)
            return out
        return self._call_general(inputs, kwargs)

    def _saved_values(self, d: dict[str, Any]) -> Any:
        """What ``_saved_get`` reads, with None for a name the forward did not set."""
        values = tuple(map(d.get, self._saved_names))  # type: ignore[arg-type]
        return values[0] if self._saved_key.__class__ is str else values

    def _call_general(self, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``__call__``'s every case: keywords, ``no_saved_state()``, a use that waits."""
        tape = self.__dict__.get("_hg_tape")
        if tape and tape[-1][3] is _LAZY:  # a waiting use's attributes, about to be overwritten
            _keep_values(self, tape)
        if kwargs:
            inputs = self._keyword_inputs(inputs, kwargs)
        mode = _MODE
        if not mode.keep:
            return self.forward(*inputs)
        depth = mode.depth
        if depth == 0:
            mode.generation += 1
        d = self.__dict__
        names = self._saved_names
        before = dict(d) if names is None else None
        mode.depth = depth + 1
        try:
            out = self.forward(*inputs)
        except BaseException:
            mode.depth = depth
            if depth == 0:
                _drop_generation(self, mode.generation)
            raise
        mode.depth = depth
        first = inputs[0] if inputs else None
        # (``type(x) is Tensor`` first: ``isinstance`` on torch tensors costs ~10 times more)
        needs = (type(first) is Tensor or isinstance(first, Tensor)) and (
            getattr(first, _OUTPUT_TAG, False) or first.requires_grad
        )
        if names is None:
            assert before is not None
            values: Any = {
                k: v
                for k, v in d.items()
                if before.get(k, _MISSING) is not v
                and not k.startswith("_hg_")
                and not isinstance(v, Module)
            }
            key: Any = True
        else:
            key = self._saved_key
            try:
                values = self._saved_get(d)  # the value (one name) or a tuple of them
            except KeyError:
                values = self._saved_values(d)
        tape = d.get("_hg_tape")
        if tape is None:
            self._init_records()
            tape = d["_hg_tape"]
        generation, training = mode.generation, self.training
        ambiguous = False
        if tape and tape[-1][0] != generation:
            # Records of an earlier top-level forward that got no backward: dropped. A later
            # backward could belong to either, so it must raise, unless they were evaluations
            # (eval mode) and this is training.
            ambiguous = not (training and not any(r[2] for r in tape))
            tape.clear()
        tape.append((generation, needs, training, values, ambiguous, key))
        tag = (needs or self._param_names) and out is not first
        if tag and (type(out) is Tensor or isinstance(out, Tensor)):
            setattr(out, _OUTPUT_TAG, True)
        return out

    def _keyword_inputs(self, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The positional inputs of ``m(input=x)`` (and other keywords of ``forward``)."""
        try:
            bound = inspect.signature(self.forward).bind(*inputs, **kwargs)
        except TypeError as exc:
            if not inputs and set(kwargs) == {"input"}:
                return (kwargs["input"],)
            raise TypeError(f"{self._label()}: {exc}") from None
        return tuple(bound.args)

    @property
    def needs_input_grad(self) -> bool:
        """Inside ``backward``: whether dL/d(input) is wanted (else it may be skipped)."""
        needs = self.__dict__.get("_hg_needs")
        return True if needs is None else bool(needs)

    def _label(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _not_run(self) -> ValueError:
        """The error for ``backward`` called before ``forward``."""
        return ValueError(f"{self!r}: backward called before forward; call the module first")

    def _no_record(self) -> Exception:
        """The error for a backward with no saved forward: before any, or a second time."""
        if self.__dict__.get("_hg_needs") is not None:  # a backward of this module ran
            return RuntimeError(
                f"{self._label()}: trying to backward through it a second time: its saved "
                "state was freed by the first backward of that forward; run the forward again "
                "(one backward per forward; gradients add up in .grad across forwards)"
            )
        return self._not_run()

    def _discard_record(self) -> None:
        """Free this use's saved forward without a backward (and one of each child's)."""
        tape = self.__dict__.get("_hg_tape")
        if tape:
            tape.pop()
            self.__dict__["_hg_needs"] = False  # as a backward would leave it (for _no_record)
        for child in self.children():
            child._discard_record()

    # -- registration ---------------------------------------------------------------------
    def register_parameter(self, name: str, tensor: Tensor) -> None:
        """Declare ``tensor`` as a trainable parameter called ``name``, with a zeroed ``.grad``."""
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{type(self).__name__}.{name}: expected a tensor, got {type(tensor)}")
        if not tensor.is_floating_point():
            raise TypeError(f"{type(self).__name__}.{name}: parameters must be floating point")
        tensor.requires_grad_(False)
        tensor.grad = torch.zeros_like(tensor)
        setattr(tensor, _OWN_GRAD, _GradBox(tensor.grad))  # written again after zero_grad()
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

    def named_modules(
        self, prefix: str = "", _seen: set[int] | None = None
    ) -> Iterator[tuple[str, Module]]:
        """Yield ``(dotted name, module)`` for this module and every descendant, depth first;
        a module used in several places once, under its first name (as torch does)."""
        seen = set() if _seen is None else _seen
        if id(self) in seen:
            return
        seen.add(id(self))
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, seen)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """Yield ``(name, tensor)`` with torch's names, e.g. ``"0.weight"`` in a Sequential; a
        parameter shared by several modules once (an optimizer must not step it twice)."""
        seen: set[int] = set()
        for module_name, module in self.named_modules(prefix):
            for name in module._param_names:
                p = getattr(module, name)
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_name}.{name}" if module_name else name), p

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
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: ``.grad = None`` (torch 2.x's default) or zeros.

        With None, the next backward gives each parameter a fresh gradient (its slot of the
        flat gradient buffer, for a flattened model), written rather than added to.
        """
        for p in self.parameters():
            grad = p.grad
            if set_to_none:
                p.grad = None
            elif grad is None:
                grad_of(p)
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
        """Move every parameter (with its grad) and floating buffer; return ``self``.

        Parameters that change get new tensors; each old one is marked replaced (see
        ``handgrad.nn.flat.replacement``), so an optimizer built before can tell.
        """
        flat = getattr(self, "_flat_params", None) is not None
        old = self._param_tensors()
        for module in self.modules():
            for name in module._param_names:
                p: Tensor = getattr(module, name)
                moved = p.to(dtype=dtype, device=device)
                if moved is not p:
                    if p.grad is not None:
                        moved.grad = p.grad.to(dtype=dtype, device=device)
                        setattr(moved, _OWN_GRAD, _GradBox(moved.grad))
                    setattr(module, name, moved)
            for name in module._buffer_names:
                b: Tensor = getattr(module, name)
                target = dtype if b.is_floating_point() else None
                setattr(module, name, b.to(dtype=target, device=device))
            module._moved(dtype, device)
        if flat:
            self.flatten_parameters()
        self._mark_replaced(old)
        return self

    def _param_tensors(self) -> list[tuple[Module, str, Tensor]]:
        return [(m, n, getattr(m, n)) for m in self.modules() for n in m._param_names]

    @staticmethod
    def _mark_replaced(old: list[tuple[Module, str, Tensor]]) -> None:
        for module, name, tensor in old:
            new = getattr(module, name)
            if new is not tensor:
                mark_replaced(tensor, new)

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
        for (module, name), p, view, grad_view in zip(
            owners, params, views, grad_views, strict=True
        ):
            view.grad = grad_view if p.grad is not None else None
            setattr(view, GRAD_SLOT, grad_view)  # re-attached by a backward that finds None
            setattr(module, name, view)
            if view is not p:
                mark_replaced(p, view)
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

    def __copy__(self) -> Module:
        """A shallow copy (shared parameters) with saved forwards of its own, none yet."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._init_records()
        return new

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_hg_tape" not in state:  # pickled by a handgrad without per-use records
            self._init_records()


class Sequential(Module):
    """Modules applied one after another; children are named ``"0"``, ``"1"``, ...

    ``backward`` runs the children's backward passes in reverse order:
    dL/dx = backward_0(backward_1(... backward_{n-1}(dL/dy))).

    Example:
        >>> model = Sequential(Linear(784, 50), ReLU(), Linear(50, 10))
        >>> out = model(x)                    # (N, 10)
        >>> model.backward(grad_out)                    # None: x is data, dL/dx skipped
        >>> grad_x = model.backward(grad_out, input_grad=True)  # after a new forward: (N, 784)
    """

    _saved_names = ()  # its children keep their own

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(
                    f"Sequential: argument {i} must be a handgrad.nn.Module, got {type(module)}"
                )
            setattr(self, str(i), module)
        self._layers: tuple[Module, ...] = tuple(modules)
        self._rest: tuple[Module, ...] = self._layers[1:]  # after the first
        self._reversed: tuple[Module, ...] = tuple(reversed(modules))

    def forward(self, *inputs: Tensor) -> Tensor:
        layers = self._layers
        if not layers:
            return inputs[0]
        x = layers[0](*inputs)
        for layer in self._rest:
            x = layer(x)
        return x

    def backward(self, grad_output: Tensor) -> Tensor | None:
        layers = self._reversed
        request = self.__dict__.get("_hg_request")
        inner = True if request else None  # asked for dL/dx: every layer computes its own
        last = len(layers) - 1
        grad: Tensor | None = grad_output
        for i, layer in enumerate(layers):
            if request is None:  # the usual call: no keyword to pass (it costs time)
                grad = layer.backward(grad)
            else:
                grad = layer.backward(grad, input_grad=request if i == last else inner)
            if grad is None:
                # This layer's input did not require grad: every layer below has no
                # parameters and data for input (else its output would), so none needs a
                # backward; their saved forwards are freed.
                for below in layers[i + 1 :]:
                    below._discard_record()
                return None
        return grad

    @property
    def input_grad(self) -> bool:
        """Whether ``backward`` computes dL/d(input); see ``Linear.input_grad``.

        Setting it to False makes the first Linear skip dL/dx even when its input requires
        grad (by default it is skipped when the input is data, as torch does).
        """
        first = self._layers[0] if self._layers else None
        return bool(getattr(first, "input_grad", True))

    @input_grad.setter
    def input_grad(self, value: bool) -> None:
        first = self._layers[0] if self._layers else None
        if first is not None and hasattr(first, "input_grad"):
            first.input_grad = value

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "_rest" not in state:  # pickled by a handgrad before it kept this
            self._rest = self._layers[1:]

    def __getitem__(self, index: int) -> Module:
        return self._layers[index]

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._layers)
