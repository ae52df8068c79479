"""Training runs: a config dataclass, one loop for both engines, run records, plots, recipes.

    from handgrad.train import TrainConfig, train, new_run_dir

    config = TrainConfig(model="784-128-10", epochs=5)
    result = train(config, run_dir=new_run_dir("runs", config.name))
    print(result.status, result.final["test_error"])

Where each job lives (``docs/architecture.md`` draws the whole map):

- ``config``: ``TrainConfig``, the run's description (and the command line's options);
- ``build``: a config to data, model, loss, optimizer, schedule and batches;
- ``steps``: the step plan, which micro-batches step ``s`` sees, augmented;
- ``engines``: handgrad's engine and the autograd reference engine;
- ``loop``: ``train(config)``; ``evaluation``, ``checkpoints``, ``stopping``: its pieces;
- ``session``: a command-line run (resume guard, one or both engines, closing timings);
- ``threads``: torch's thread count, set, restored or measured;
- ``compare``: the two engines side by side; ``records``, ``metrics``, ``plots``, ``recipes``.

The names below are imported on first use, so that ``from handgrad.train.config import
TrainConfig`` (the command line's parser) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AUGMENTATIONS": "handgrad.train.steps",
    "Plan": "handgrad.train.steps",
    "build_plan": "handgrad.train.steps",
    "TrainData": "handgrad.train.build",
    "build_loss": "handgrad.train.build",
    "build_model": "handgrad.train.build",
    "build_optimizer": "handgrad.train.build",
    "build_schedule": "handgrad.train.build",
    "load_data": "handgrad.train.build",
    "TrainConfig": "handgrad.train.config",
    "Engine": "handgrad.train.engines",
    "HandgradEngine": "handgrad.train.engines",
    "AutogradEngine": "handgrad.train.engines",
    "build_engine": "handgrad.train.engines",
    "RunResult": "handgrad.train.loop",
    "train": "handgrad.train.loop",
    "Checkpoint": "handgrad.train.records",
    "find_run": "handgrad.train.records",
    "load_checkpoint": "handgrad.train.records",
    "new_run_dir": "handgrad.train.records",
    "read_metrics": "handgrad.train.records",
    "save_checkpoint": "handgrad.train.records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'handgrad.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
