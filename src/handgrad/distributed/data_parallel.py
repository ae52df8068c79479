"""``DataParallel``: one step of data-parallel training with a hand-written gradient all-reduce.

Every rank gets the same global batch (x, y) of N rows and keeps rows [start_r, stop_r) of it
(``shard_bounds``: sizes ⌊N/K⌋ or ⌈N/K⌉, the first N mod K ranks one row more). It runs the
hand-written forward and backward on its n_r rows, and the gradients are combined over the
flat gradient buffer (``Module.flatten_parameters``), in buckets, so that every rank holds the
single-process gradient of the global batch:

    reduction 'sum':   L = Σ_r L_r                       ⇒  ∇L = [AR] Σ_r ∇L_r
    reduction 'mean':  L = Σ_r c_r · L_r / C, C = Σ_r c_r  ⇒  ∇L = [AR] Σ_r ∇((c_r / C) · L_r)

where c_r is the count rank r's loss averaged over (rows, elements or Σ class weights, the
loss's own denominator), C = [AR] Σ_r c_r, and [AR] is ``torch.distributed.all_reduce`` (SUM).
The weight c_r / C enters as the loss's upstream gradient (``loss.backward(c_r / C)``), not as a
scale on the result, so that a layer whose backward combines ranks (``SyncBatchNorm``'s two
sums) sees the global loss's gradient on every rank.
Each bucket is a contiguous slice of the flat buffer; the backward pass produces the last
layers' gradients first, so the buckets are cut from the end of the buffer and each is scaled
and launched (``async_op=True``) as soon as every parameter in it has its gradient, while the
backward pass of the layers below goes on. ``step`` waits for all of them, then steps the
optimizer: the same gradient and the same state give the same update on every rank.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from handgrad.distributed.group import (
    DEFAULT_TIMEOUT_S,
    DistributedError,
    check_same_everywhere,
    collective,
    fingerprint,
)
from handgrad.distributed.layers import Shard, convert_layers, set_shard
from handgrad.nn import Module, fresh_grad
from handgrad.nn.flat import flat_view
from handgrad.nn.module import GRAD_SLOT

DEFAULT_BUCKET_NUMEL = 1 << 18  # 256 Ki values (2 MiB in float64) per all-reduce


def shard_bounds(n: int, world: int, rank: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of a global batch of ``n`` rows that ``rank`` of ``world`` keeps."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class _Bucket:
    """Parameters ``[first, last]`` (indices into the model's parameter list), a contiguous
    slice ``[lo, hi)`` of the flat gradient buffer."""

    __slots__ = ("hi", "lo", "members", "pending", "work")

    def __init__(self, members: list[int], lo: int, hi: int) -> None:
        self.members = members
        self.lo, self.hi = lo, hi
        self.pending = len(members)
        self.work: Any = None


class DataParallel:
    """A handgrad model and optimizer trained data-parallel over the process group.

    Example (run under ``torchrun --nproc_per_node=2 script.py``)::

        from handgrad.distributed import DataParallel, init_process_group
        init_process_group()                       # gloo on CPU, NCCL on CUDA
        torch.manual_seed(0)                        # the same seed on every rank
        model = handgrad.nn.mlp([784, 100, 10]).double()
        model.flatten_parameters()
        opt = handgrad.optim.SGD(model.parameters(), lr=0.1)
        dp = DataParallel(model, opt, handgrad.nn.CrossEntropyLoss())
        for x, y in batches:                        # the same global batches on every rank
            loss = dp.step(x, y)                    # the global batch's loss

    Args:
        model: a handgrad model; flattened here if it is not (``flatten_parameters``; build
            the optimizer after, or let it rebind). Its ``BatchNorm1d``/``Dropout`` layers
            become ``SyncBatchNorm``/``ShardedDropout`` (``distributed.layers``).
        optimizer: any handgrad optimizer over the model's parameters.
        loss_fn: a handgrad loss with reduction ``'mean'`` or ``'sum'``.
        bucket_numel: values per all-reduce bucket (the last bucket may be smaller).
        config: anything JSON-able every rank must agree on (checked at start, with the
            model's structure and initial values and the optimizer's hyper-parameters).
        timeout_s: shown in the message when a collective fails (the process group's own
            timeout, set by ``init_process_group``, is what bounds the wait).

    Works without a process group too (one process, no collective): the same code runs K=1.
    """

    def __init__(
        self,
        model: Module,
        optimizer: Any,
        loss_fn: Module,
        *,
        bucket_numel: int = DEFAULT_BUCKET_NUMEL,
        config: Any = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        check: bool = True,
    ) -> None:
        reduction = getattr(loss_fn, "reduction", None)
        if reduction not in ("mean", "sum"):
            raise ValueError(
                f"DataParallel: the loss's reduction must be 'mean' or 'sum', got {reduction!r}"
            )
        if bucket_numel <= 0:
            raise ValueError(f"DataParallel: bucket_numel must be > 0, got {bucket_numel}")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.reduction: str = reduction
        self.timeout_s = timeout_s
        on = dist.is_initialized()
        self.rank = dist.get_rank() if on else 0
        self.world_size = dist.get_world_size() if on else 1
        self.backend = str(dist.get_backend()) if on else "none"
        self.params = list(model.parameters())
        if not self.params:
            raise ValueError("DataParallel: the model has no parameters")
        if flat_view(self.params) is None or any(
            getattr(p, GRAD_SLOT, None) is None for p in self.params
        ):
            model.flatten_parameters()
            self.params = list(model.parameters())
        slots = [getattr(p, GRAD_SLOT, None) for p in self.params]
        flat = flat_view([s for s in slots if s is not None]) if None not in slots else None
        if flat is None:
            raise ValueError("DataParallel: the model's gradients are not one flat buffer")
        self.flat_grad: Tensor = flat  # (P,) every parameter's gradient slot, in order
        self._slot_ptr: dict[int, Tensor] = {
            id(p): s for p, s in zip(self.params, slots, strict=True) if s is not None
        }
        self.layers = convert_layers(model)
        self.buckets = self._make_buckets(bucket_numel)
        self._bucket_of = {i: b for b in self.buckets for i in b.members}
        self._index = {id(p): i for i, p in enumerate(self.params)}
        self._hooked = self._install_hooks()
        self._scale = 1.0
        self.allreduce_seconds = 0.0  # time spent waiting for buckets (and launching them)
        # A rank's request to stop (its Ctrl-C flag), summed with the loss at every step at no
        # extra collective: ``stop_agreed`` is the same on every rank after each step.
        self.stop_vote: Callable[[], bool] | None = None
        self.stop_agreed = False
        if check and self.world_size > 1:
            check_same_everywhere(fingerprint(model, optimizer, config), timeout_s)

    # -- buckets ---------------------------------------------------------------------------
    def _make_buckets(self, cap: int) -> list[_Bucket]:
        """Cut the flat buffer from its end (the last layers' gradients come first in
        backward) into buckets of whole parameters of about ``cap`` values."""
        offsets = [0]
        for p in self.params:
            offsets.append(offsets[-1] + p.numel())
        buckets: list[_Bucket] = []
        members: list[int] = []
        size = 0
        for i in reversed(range(len(self.params))):
            members.append(i)
            size += self.params[i].numel()
            if size >= cap or i == 0:
                lo, hi = offsets[min(members)], offsets[max(members) + 1]
                buckets.append(_Bucket(members, lo, hi))
                members, size = [], 0
        return buckets

    def _install_hooks(self) -> list[Module]:
        """Wrap the backward of every module that owns parameters: after it, its parameters'
        gradients are complete, and a bucket whose parameters all are is launched."""
        hooked: list[Module] = []
        for m in self.model.modules():
            own = [getattr(m, n) for n in m._param_names]
            if not own:
                continue
            original = m.backward
            indices = [self._index[id(p)] for p in own]

            def hooked_backward(
                *args: Any,
                _orig: Callable[..., Any] = original,
                _idx: list[int] = indices,
                **kwargs: Any,
            ) -> Any:
                out = _orig(*args, **kwargs)
                if self._active:
                    for i in _idx:
                        self._produced(i)
                return out

            m.__dict__["backward"] = hooked_backward
            hooked.append(m)
        self._active = False
        return hooked

    def close(self) -> None:
        """Remove the backward hooks (the model's layers stay converted)."""
        for m in self._hooked:
            m.__dict__.pop("backward", None)
        self._hooked = []

    def _produced(self, i: int) -> None:
        bucket = self._bucket_of[i]
        if bucket.pending <= 0:  # launched already: a module with parameters used twice
            raise DistributedError(
                "distributed: a module with parameters ran its backward twice in one step "
                "(used twice in the model); DataParallel supports each such module once"
            )
        bucket.pending -= 1
        if bucket.pending == 0:
            self._launch(bucket)

    def _launch(self, bucket: _Bucket) -> None:
        """Launch dL/dθ[lo:hi] ← [AR] Σ_r dL/dθ[lo:hi], not waiting."""
        for i in bucket.members:  # a parameter the loss did not reach: gradient 0, in its slot
            p = self.params[i]
            if p.grad is None:
                fresh_grad(p).zero_()
            elif p.grad.data_ptr() != self._slot_ptr[id(p)].data_ptr():
                raise DistributedError(
                    "distributed: a parameter's .grad is not its slot of the flat gradient "
                    "buffer (assigned by hand?); call optimizer.zero_grad() before the step"
                )
        part = self.flat_grad[bucket.lo : bucket.hi]
        if self.world_size > 1:
            bucket.work = collective(
                "the gradient all-reduce",
                lambda: dist.all_reduce(part, async_op=True),
                self.timeout_s,
            )
        bucket.pending = -1  # launched

    # -- one step --------------------------------------------------------------------------
    def shard(self, n: int) -> tuple[int, int]:
        """This rank's rows ``[start, stop)`` of a global batch of ``n`` rows."""
        if n < self.world_size:
            raise ValueError(
                f"DataParallel: a global batch of {n} rows cannot be split over "
                f"{self.world_size} ranks (every rank needs at least one row)"
            )
        return shard_bounds(n, self.world_size, self.rank)

    def compute_gradients(self, x: Tensor, y: Tensor) -> Tensor:
        """Forward and backward of this rank's shard of (x, y), gradients all-reduced.

        Shapes: x (N, *), y (N, *) the global batch (the same on every rank). Leaves in every
        parameter's ``.grad`` the gradient of the global batch's loss; returns that loss.
        Call ``optimizer.zero_grad()`` before (the gradient is accumulated into a non-None
        ``.grad``, as backward always does).
        """
        n = x.shape[0]
        if y.shape[0] != n:
            raise ValueError(
                f"DataParallel: x has {n} rows but y has {y.shape[0]}; they must match"
            )
        start, stop = self.shard(n)
        set_shard(self.layers, Shard(start, stop, n, self.timeout_s))
        try:
            out = self.model(x[start:stop])
            loss_local = self.loss_fn(out, y[start:stop])
            count = float(getattr(self.loss_fn, "_count", stop - start))
            vote = 1.0 if self.stop_vote is not None and self.stop_vote() else 0.0
            stats = torch.tensor(
                [float(loss_local.detach()), count, vote], dtype=torch.float64, device=x.device
            )
            if self.world_size > 1:  # C = Σ_r c_r, and the global loss, before the buckets
                weighted = stats.clone()
                if self.reduction == "mean":
                    weighted[0] = stats[0] * count
                collective("the loss all-reduce", lambda: dist.all_reduce(weighted), self.timeout_s)
            else:
                weighted = stats.clone()
                if self.reduction == "mean":
                    weighted[0] = stats[0] * count
            total_count = float(weighted[1])
            self.stop_agreed = bool(weighted[2] > 0)  # some rank asked to stop (Ctrl-C)
            self._scale = count / total_count if self.reduction == "mean" else 1.0
            for b in self.buckets:
                b.pending = len(b.members)
                b.work = None
            self._active = True
            try:
                self.model.backward(self.loss_fn.backward(self._scale))
            finally:
                self._active = False
            self._finish()
        finally:
            set_shard(self.layers, None)
        loss = weighted[0] / total_count if self.reduction == "mean" else weighted[0]
        return loss.to(loss_local.dtype)

    def _finish(self) -> None:
        """Launch what the backward did not reach, then wait for every bucket."""
        t0 = time.perf_counter()
        for b in self.buckets:
            if b.pending != -1:
                self._launch(b)
        for b in self.buckets:
            if b.work is not None:
                collective("the gradient all-reduce", b.work.wait, self.timeout_s)
                b.work = None
        self.allreduce_seconds += time.perf_counter() - t0

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """``zero_grad``, ``compute_gradients(x, y)``, ``optimizer.step()``; the global loss."""
        self.optimizer.zero_grad()
        loss = self.compute_gradients(x, y)
        self.optimizer.step()
        return loss
