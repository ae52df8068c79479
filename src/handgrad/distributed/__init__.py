"""Data-parallel training on ``torch.distributed`` with a hand-written gradient all-reduce.

``init_process_group`` joins the group (gloo on CPU, NCCL on CUDA, with a timeout);
``DataParallel`` shards each global batch, runs the hand-written forward and backward, and
all-reduces the flat gradient buffer in buckets during the backward pass; ``SyncBatchNorm`` and
``ShardedDropout`` make BatchNorm and dropout equal their single-process run.
"""

from handgrad.distributed.data_parallel import DataParallel, shard_bounds
from handgrad.distributed.group import (
    DistributedError,
    backend_for,
    check_same_everywhere,
    fingerprint,
    init_process_group,
)
from handgrad.distributed.layers import ShardedDropout, SyncBatchNorm, convert_layers

__all__ = [
    "DataParallel",
    "DistributedError",
    "ShardedDropout",
    "SyncBatchNorm",
    "backend_for",
    "check_same_everywhere",
    "convert_layers",
    "fingerprint",
    "init_process_group",
    "shard_bounds",
]
