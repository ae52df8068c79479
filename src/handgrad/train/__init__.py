"""Training runs: a config dataclass, one loop for both engines, run records, plots, recipes.

    from handgrad.train import TrainConfig, train, new_run_dir

    config = TrainConfig(model="784-128-10", epochs=5)
    result = train(config, run_dir=new_run_dir("runs", config.name))
    print(result.status, result.final["test_error"])

``handgrad.train.build`` turns a config into data, model, loss, optimizer and schedule;
``handgrad.train.recipes`` holds the seed notebooks as configs with their expected figures.
"""

from handgrad.train.build import (
    AUGMENTATIONS,
    Plan,
    TrainData,
    build_loss,
    build_model,
    build_optimizer,
    build_schedule,
    load_data,
    make_plan,
)
from handgrad.train.config import TrainConfig
from handgrad.train.loop import Engine, HandgradEngine, RunResult, make_engine, train
from handgrad.train.records import (
    Checkpoint,
    find_run,
    load_checkpoint,
    new_run_dir,
    read_metrics,
    save_checkpoint,
)

__all__ = [
    "AUGMENTATIONS",
    "Checkpoint",
    "Engine",
    "HandgradEngine",
    "Plan",
    "RunResult",
    "TrainConfig",
    "TrainData",
    "build_loss",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "find_run",
    "load_checkpoint",
    "load_data",
    "make_engine",
    "make_plan",
    "new_run_dir",
    "read_metrics",
    "save_checkpoint",
    "train",
]
