"""The autograd graph between a learner's named tensors: order, uses, and local recomputation.

``check_gradients`` runs the learner's forward once on float64 copies with autograd on. This
module walks the graph it recorded:

- ``backward_order``: the named tensors from the loss end to the inputs (a topological order of
  the graph nodes, each consumer before what it consumes);
- ``Graph.uses``: the edges by which a named tensor enters later operations (a tensor used
  twice has two uses, and its gradient two contributions);
- ``Graph.backprop``: dL/dT for a set of named tensors T, optionally with the gradient arriving
  at other named tensors *replaced* by given tensors (a tensor hook returning the learner's
  gradient). With the learner's own upstream gradients injected this way, dL/dT is what the
  learner's line for dT should have computed from them: the local judgement that tells a
  mistake from an inherited error. Every use's contribution is recorded on the way (a node hook
  on the consuming operation), which is what names a missing branch.

Only ``handgrad.check.learner*`` and the reference modules may run autograd.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from handgrad.check.compare import max_abs

Node = Any  # torch.autograd.graph.Node (its C++ classes have no common Python type to name)


@dataclass(frozen=True)
class Use:
    """One edge by which a named tensor enters an operation: the operation's node, the position
    of the tensor among its inputs, and the name of the nearest named tensor it leads to (None
    when the path reaches the loss without one)."""

    node: Node
    slot: int
    op: str
    leads_to: str | None


@dataclass
class Pass:
    """The result of one backward: dL/dT for the asked names, and per name the contribution of
    each use (in ``Graph.uses`` order) and the largest upstream gradient entering its uses."""

    grads: dict[str, Tensor]
    contributions: dict[str, list[Tensor | None]] = field(default_factory=dict)
    upstream: dict[str, list[Tensor | None]] = field(default_factory=dict)
    upstream_top: dict[str, float] = field(default_factory=dict)


def op_name(node: Node) -> str:
    """``MulBackward0`` -> ``mul``."""
    name = type(node).__name__
    for suffix in ("Backward0", "Backward1", "Backward"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.lower()


class Graph:
    """The recorded graph from ``loss`` back to the named tensors ``tensors`` (name -> tensor)."""

    def __init__(self, loss: Tensor, tensors: Mapping[str, Tensor]) -> None:
        self.loss = loss
        self.tensors = dict(tensors)
        self.nodes: list[Node] = []  # topological: every consumer before what it consumes
        self.consumers: dict[Node, list[tuple[Node, int]]] = {}
        self._walk()
        self.node_of: dict[str, tuple[Node, int] | None] = {
            name: self._node_of(t) for name, t in self.tensors.items()
        }
        self._named_nodes: dict[tuple[Node, int], str] = {}
        for name, key in self.node_of.items():
            if key is not None:
                self._named_nodes.setdefault(key, name)
        self.uses: dict[str, list[Use]] = {name: self._uses(name) for name in self.tensors}

    def _walk(self) -> None:
        root = self.loss.grad_fn
        if root is None:
            return
        seen = {root}
        stack = [root]
        indegree: dict[Node, int] = {root: 0}
        while stack:
            node = stack.pop()
            for slot, (child, _) in enumerate(node.next_functions):
                if child is None:
                    continue
                self.consumers.setdefault(child, []).append((node, slot))
                indegree[child] = indegree.get(child, 0) + 1
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        ready = [root]
        while ready:
            node = ready.pop(0)
            self.nodes.append(node)
            for child, _ in node.next_functions:
                if child is None:
                    continue
                indegree[child] -= 1
                if indegree[child] == 0:
                    ready.append(child)

    def _node_of(self, t: Tensor) -> tuple[Node, int] | None:
        if t.grad_fn is not None:
            return t.grad_fn, t.output_nr
        if not t.requires_grad:
            return None
        for node in self.nodes:
            if getattr(node, "variable", None) is t:
                return node, 0
        return None

    def position(self, name: str) -> int:
        """The index of the name's node in the topological order (len(nodes) if unreachable)."""
        key = self.node_of[name]
        if key is None:
            return len(self.nodes)
        try:
            return self.nodes.index(key[0])
        except ValueError:
            return len(self.nodes)

    def _uses(self, name: str) -> list[Use]:
        key = self.node_of[name]
        if key is None:
            return []
        node, output_nr = key
        uses = []
        for consumer, slot in self.consumers.get(node, []):
            if consumer.next_functions[slot][1] != output_nr:
                continue
            uses.append(Use(consumer, slot, op_name(consumer), self._leads_to(consumer, name)))
        return uses

    def _leads_to(self, node: Node, own: str) -> str | None:
        """The first named tensor met walking from ``node`` towards the loss."""
        queue, seen = [node], {node}
        while queue:
            current = queue.pop(0)
            for key, name in self._named_nodes.items():
                if key[0] is current and name != own:
                    return name
            for consumer, _ in self.consumers.get(current, []):
                if consumer not in seen:
                    seen.add(consumer)
                    queue.append(consumer)
        return None

    def downstream(self, name: str) -> set[str]:
        """The named tensors computed (directly or not) from ``name``."""
        key = self.node_of[name]
        if key is None:
            return set()
        found: set[str] = set()
        queue, seen = [key[0]], {key[0]}
        while queue:
            current = queue.pop(0)
            for consumer, _ in self.consumers.get(current, []):
                if consumer in seen:
                    continue
                seen.add(consumer)
                queue.append(consumer)
                for k, n in self._named_nodes.items():
                    if k[0] is consumer and n != name:
                        found.add(n)
        return found

    def backprop(
        self,
        names: Sequence[str],
        replaced: Mapping[str, Tensor] | None = None,
    ) -> Pass:
        """dL/dT for each of ``names``, with the gradient of each tensor in ``replaced``
        replaced by the given tensor (same shape, float64), and every use's contribution."""
        replaced = replaced or {}
        result = Pass(grads={})
        handles = []
        for name in names:
            result.contributions[name] = [None] * len(self.uses[name])
            result.upstream[name] = [None] * len(self.uses[name])
            result.upstream_top[name] = 0.0
            for i, use in enumerate(self.uses[name]):
                recorder = self._recorder(result, name, i, use.node, use.slot)
                handles.append(use.node.register_hook(recorder))
        for name, grad in replaced.items():
            t = self.tensors[name]
            if t.grad_fn is None:
                continue  # a leaf is consumed by nothing upstream of it
            handles.append(t.register_hook(_constant(grad)))
        wanted = [n for n in names if self.node_of[n] is not None]
        try:
            if wanted:
                got = torch.autograd.grad(
                    self.loss,
                    [self.tensors[n] for n in wanted],
                    retain_graph=True,
                    allow_unused=True,
                )
            else:
                got = ()
        finally:
            for h in handles:
                h.remove()
        for name, g in zip(wanted, got, strict=True):
            t = self.tensors[name]
            result.grads[name] = torch.zeros_like(t) if g is None else g.detach()
        for name in names:
            if name in replaced:
                result.grads[name] = replaced[name]
            elif name not in result.grads:
                result.grads[name] = torch.zeros_like(self.tensors[name]).detach()
        return result

    @staticmethod
    def _recorder(result: Pass, name: str, index: int, node: Node, slot: int) -> Any:
        def hook(
            grad_inputs: tuple[Tensor | None, ...], grad_outputs: tuple[Tensor | None, ...]
        ) -> None:
            g = grad_inputs[slot]
            if g is not None:
                result.contributions[name][index] = g.detach().clone()
            if grad_outputs and grad_outputs[0] is not None:
                up = grad_outputs[0].detach()
                result.upstream[name][index] = unreduced(node, slot, up)
            top = max((max_abs(o) for o in grad_outputs if o is not None), default=0.0)
            result.upstream_top[name] = max(result.upstream_top[name], top)

        return hook


def unreduced(node: Node, slot: int, up: Tensor) -> Tensor:
    """The gradient an element-wise operation sends to its input ``slot`` *before* it is summed
    down to the input's (broadcast) shape: for y = a·b it is dy·b, for y = a + b it is dy, ...
    (known for mul, div, add, sub; otherwise the gradient entering the operation)."""
    op = op_name(node)
    try:
        if op == "mul":
            other = node._saved_other if slot == 0 else node._saved_self
            return (up * other).detach()
        if op == "div":
            a, b = node._saved_self, node._saved_other
            return (up / b if slot == 0 else -up * a / b**2).detach()
        if op == "sub" and slot == 1:
            return (-up * node._saved_alpha).detach()
    except (AttributeError, RuntimeError):
        pass
    return up.clone()


def _constant(grad: Tensor) -> Any:
    def hook(_: Tensor) -> Tensor:
        return grad

    return hook


# Operations with a kink where one side's slope is 0 and the other's 1 (for its input).
_KINKED = ("relu", "clampmin", "clamp", "threshold", "maximum", "minimum")


def kink_points(node: Node, slot: int) -> list[Tensor | float]:
    """Where the operation's input ``slot`` sits on a kink: the values (or tensors, for
    maximum/minimum) at which the slope jumps between 0 and 1; empty for smooth operations."""
    op = op_name(node)
    if op not in _KINKED:
        return []
    try:
        if op == "relu":
            return [0.0]
        if op in ("clampmin", "clamp"):
            found = [getattr(node, "_saved_min", None), getattr(node, "_saved_max", None)]
            return [float(v) for v in found if isinstance(v, int | float)]
        if op == "threshold":
            return [float(node._saved_threshold)]
        other = node._saved_other if slot == 0 else node._saved_self
        return [other.detach()]
    except (AttributeError, RuntimeError, TypeError):
        return []
