"""Layers whose forward needs the other ranks: ``SyncBatchNorm`` and ``ShardedDropout``.

Each rank holds rows ``[start, stop)`` of a global batch of ``n_global`` rows (a ``Shard``).

``SyncBatchNorm`` (BatchNorm1d's batch statistics over the global batch), with Σ over every
rank's rows (and L), N the global count, all-reduced (SUM) where marked [AR]:

    forward:  μ = [AR] Σ x / N;  σ² = [AR] Σ (x − μ)² / N  (two passes, as the single process)
              x̂ = (x − μ) / √(σ² + ε),  y = γ · x̂ + β
    backward: g = dL/dy · γ;  A = [AR] Σ g,  B = [AR] Σ g · x̂
              dL/dx = (g − A / N − x̂ · B / N) / √(σ² + ε)
              dL/dγ = Σ_local dL/dy · x̂, dL/dβ = Σ_local dL/dy (summed by DataParallel's
              gradient all-reduce, like every other parameter's gradient)

``ShardedDropout`` draws the mask for the global batch, on every rank from the same generator
state, and keeps its own rows, so the units dropped do not depend on the number of ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from handgrad.distributed.group import collective
from handgrad.nn import BatchNorm1d, Dropout, Module, accumulate_grad
from handgrad.nn import functional as F


@dataclass
class Shard:
    """This rank's rows ``[start, stop)`` of a global batch of ``n_global`` rows."""

    start: int = 0
    stop: int = 0
    n_global: int = 0
    timeout_s: float | None = None


_SHARD = "_hg_shard"


def _shard_of(module: Module) -> Shard | None:
    shard = module.__dict__.get(_SHARD)
    return shard if isinstance(shard, Shard) and shard.n_global > 0 else None


def _all_reduce(t: Tensor, what: str, timeout_s: float | None) -> Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        collective(what, lambda: dist.all_reduce(t), timeout_s)
    return t


class SyncBatchNorm(BatchNorm1d):
    """``BatchNorm1d`` with its batch statistics over the global batch; see the module doc.

    Made by ``convert_layers`` from a ``BatchNorm1d`` in place (same parameters, buffers and
    state-dict keys). Eval mode with running statistics is local (no collective).

    Shape: (N_local, C) → (N_local, C), or (N_local, C, L) → (N_local, C, L).
    """

    _saved_names = ("_x_hat", "_inv_std", "_batch_stats", "_n_total")  # type: ignore[assignment]

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        shard = _shard_of(self)
        batch_stats = self.training or not self.track_running_stats
        if shard is None or not batch_stats:
            self._n_total = 0
            return super().forward(x)
        f = self.num_features
        if x.dim() not in (2, 3) or x.shape[1] != f:
            return super().forward(x)  # its one-line error
        dims = (0,) if x.dim() == 2 else (0, 2)
        per_row = 1 if x.dim() == 2 else x.shape[2]
        n_total = shard.n_global * per_row  # values per channel over every rank
        if self.training and n_total < 2:
            return super().forward(x)  # its error for a single value per channel
        s1 = _all_reduce(x.sum(dims, keepdim=True), "SyncBatchNorm's Σx", shard.timeout_s)
        mean = s1 / n_total  # (1, C[, 1])
        centered = x - mean  # like x
        s2 = (centered * centered).sum(dims, keepdim=True)
        var = _all_reduce(s2, "SyncBatchNorm's Σ(x−μ)²", shard.timeout_s) / n_total
        inv_std = torch.rsqrt(var + self.eps)  # (1, C[, 1])
        x_hat = centered * inv_std  # like x
        if self.training and self.track_running_stats:
            self._update_running(mean.view(f), var.view(f), n_total)
        self._x_hat, self._inv_std, self._batch_stats = x_hat, inv_std, True
        self._n_total = n_total
        shape = inv_std.shape
        if not self.affine:
            return x_hat
        if self.has_bias:
            return torch.addcmul(self.bias.view(shape), x_hat, self.weight.view(shape))
        return x_hat * self.weight.view(shape)

    def backward(self, grad_output: Tensor) -> Tensor:
        # dL/dγ = Σ_local dL/dy·x̂, dL/dβ = Σ_local dL/dy (each rank its share; the gradient
        # all-reduce sums them). With g = dL/dy·γ and means over the N rows of the global batch
        # ([AR] Σ g and [AR] Σ g·x̂, one collective):  dL/dx = (g − mean g − x̂·mean g·x̂)·σ⁻¹.
        n_total = self.__dict__.get("_n_total", 0)
        shard = _shard_of(self)
        if not n_total or shard is None:
            return super().backward(grad_output)
        x_hat, inv_std = self._x_hat, self._inv_std
        if x_hat is None or inv_std is None or grad_output.shape != x_hat.shape:
            return super().backward(grad_output)  # its one-line error
        dims = (0,) if x_hat.dim() == 2 else (0, 2)
        shape = inv_std.shape
        if self.affine:
            accumulate_grad(self.weight, (grad_output * x_hat).sum(dims))  # (C,)
            if self.has_bias:
                accumulate_grad(self.bias, grad_output.sum(dims))  # (C,)
            g = grad_output * self.weight.view(shape)
        else:
            g = grad_output
        sums = torch.cat([g.sum(dims, keepdim=True), (g * x_hat).sum(dims, keepdim=True)])
        _all_reduce(sums, "SyncBatchNorm's backward sums", shard.timeout_s)
        mean_g, mean_gx = sums[0:1] / n_total, sums[1:2] / n_total  # (1, C[, 1]) each
        return (g - mean_g - x_hat * mean_gx) * inv_std  # like x


class ShardedDropout(Dropout):
    """``Dropout`` whose mask is drawn for the global batch and sliced to this rank's rows.

    Every rank draws the same (N_global, *) mask from the same generator state (the global
    generator, seeded alike on every rank), so rank r's units are those the single process
    drops for rows [start, stop). Backward as Dropout: dL/dx = dL/dy · m.

    Shape: (N_local, *) → (N_local, *).
    """

    _saved_names = ("_mask", "_ran")

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        shard = _shard_of(self)
        if shard is None or not self.training or self.p == 0.0 or x.dim() == 0:
            return super().forward(x)
        if x.shape[0] != shard.stop - shard.start:
            raise ValueError(
                f"ShardedDropout(p={self.p}): input has {x.shape[0]} rows, this rank's shard "
                f"has {shard.stop - shard.start}"
            )
        like = torch.empty((shard.n_global, *x.shape[1:]), dtype=x.dtype, device=x.device)
        self._ran = True
        self._mask = F.dropout_mask(like, self.p)[shard.start : shard.stop]
        return F.dropout_forward(x, self._mask)


def convert_layers(model: Module) -> list[Module]:
    """Turn every ``BatchNorm1d`` into a ``SyncBatchNorm`` and every ``Dropout`` into a
    ``ShardedDropout``, in place (the objects, their parameters and buffers stay); returns them.
    """
    converted: list[Module] = []
    for m in model.modules():
        if type(m) is BatchNorm1d:
            m.__class__ = SyncBatchNorm
            m._n_total = 0  # type: ignore[attr-defined]
        elif type(m) is Dropout:
            m.__class__ = ShardedDropout
        if isinstance(m, SyncBatchNorm | ShardedDropout):
            converted.append(m)
    return converted


def set_shard(modules: list[Module], shard: Shard | None) -> None:
    """Tell the converted layers which rows of the global batch this rank holds."""
    for m in modules:
        m.__dict__[_SHARD] = shard
