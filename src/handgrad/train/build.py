"""From a ``TrainConfig`` to the things a run needs: data, model, loss, optimizer, schedule.

Each function is usable on its own (``handgrad compare`` and the tests build models and data
the way a run does)::

    check_config(config)                         # once, at the entry point: every field
    data = load_data(config)                     # TrainData: train / valid / test tensors
    model = build_model(config)                  # seeds torch with config.seed, then draws
    loss = build_loss(config)
    model.flatten_parameters()
    opt = build_optimizer(config, model, data.n_train)
    plan = build_plan(config, data.n_train)      # handgrad.train.steps
    schedule = build_schedule(config, data.n_train, plan.total_steps)  # None: constant lr

Naming: ``build_*(config, ...)`` makes a run's part from a config; ``make_*(name, **kwargs)``
(``handgrad.optim.make_optimizer``, ``make_schedule``, ``handgrad.data.make_augment``) makes
a thing from its registered name. The builders do not validate the config again: the entry
points (``train``, ``compare``, ``handgrad train``) call ``check_config`` once.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from handgrad import nn
from handgrad.data import Batches, load_preset, split_validation
from handgrad.data.presets import N_CLASSES, N_FEATURES, one_hot
from handgrad.errors import HandgradError
from handgrad.limits import check_memory, mlp_memory
from handgrad.optim import SCHEDULES, Optimizer, Schedule, make_optimizer, make_schedule
from handgrad.train import tabular
from handgrad.train.config import TrainConfig
from handgrad.train.steps import Plan, build_plan, build_transform

# The inputs a config's model must take (MNIST's 28 x 28 pixels).
N_PIXELS = N_FEATURES


@dataclass
class TrainData:
    """The tensors of a run. ``x_*`` ``(N, 784)``; ``y_*`` the loss's targets; ``labels_*`` int64
    class indices ``(N,)``. The validation part is carved from train (None without a split)."""

    x_train: Tensor
    y_train: Tensor
    labels_train: Tensor
    x_valid: Tensor | None
    y_valid: Tensor | None
    labels_valid: Tensor | None
    x_test: Tensor
    y_test: Tensor
    labels_test: Tensor
    targets: str  # class | onehot | value
    name: str
    source: str
    description: str
    # Appended for tables (handgrad.train.tabular): the class count (1 output for regression),
    # the task, and the table's recorded layout (None for the image presets).
    n_classes: int = N_CLASSES
    task: str = "classification"
    table: dict[str, Any] | None = None

    @property
    def n_train(self) -> int:
        return len(self.x_train)


def resolve_targets(config: TrainConfig) -> str:
    """The target kind: ``class`` indices, ``onehot`` rows, or the digit ``value`` (N, 1)."""
    if config.targets != "auto":
        return config.targets
    if config.loss == "cross_entropy":
        return "class"
    return "value" if _widths(config)[-1] == 1 else "onehot"


def _widths(config: TrainConfig) -> list[int]:
    return nn.parse_sizes(config.model)


def check_config(config: TrainConfig) -> None:
    """Check every field (``config.validate()``) and that model, loss and targets fit together
    (no data needed): the one check of a run, made at its entry point.

    Raises:
        ValueError: one line naming the mismatch.
    """
    config.validate()
    check_device(config.device)
    widths = _widths(config)
    check_run_memory(config, widths)
    kind = resolve_targets(config)
    out = widths[-1]
    if tabular.is_table(config):
        _check_table_config(config, kind)
    else:
        if widths[0] != N_PIXELS:
            raise ValueError(
                f"model {config.model}: MNIST inputs have {N_PIXELS} pixels, not {widths[0]}"
            )
        if kind == "value" and out != 1:
            raise ValueError(
                f"targets value: the model must end in 1 output, {config.model} has {out}"
            )
        if kind in ("class", "onehot") and out != N_CLASSES:
            raise ValueError(
                f"targets {kind}: the model must end in {N_CLASSES} outputs, "
                f"{config.model} has {out}"
            )
    if config.loss == "cross_entropy" and kind == "value":
        raise ValueError("loss cross_entropy: needs class or onehot targets, not value")
    if config.loss != "cross_entropy" and kind == "class":
        raise ValueError(f"loss {config.loss}: needs onehot or value targets, not class indices")
    if kind != "onehot" and config.target_scale != 1.0:
        raise ValueError(f"target_scale: applies to onehot targets only, these are {kind}")


def _check_table_config(config: TrainConfig, kind: str) -> None:
    """A table run's model and targets (its widths once the table is recorded)."""
    if config.task == "regression" and config.loss == "cross_entropy":
        raise ValueError("task regression: needs a squared loss (--loss mse), not cross_entropy")
    if config.task == "regression" and kind != "value":
        raise ValueError(f"task regression: the targets are values, not {kind}")
    if config.task == "classification" and kind == "value":
        raise ValueError("task classification: needs class or onehot targets, not value")
    if config.table:
        tabular.check_model_fits(config, config.table)


def load_table_data(config: TrainConfig) -> TrainData:
    """The user's table (``config.data_file``): seeded splits, standardized on train only.

    Raises:
        HandgradError: the file cannot be read, names a bad row or column, or has changed
            since the run recorded its SHA-256.
        ValueError: the model does not fit the table.
    """
    tabular.check_digest(config)
    parts = tabular.split_table(config)
    info = parts.info
    tabular.check_model_fits(config, info)
    kind = resolve_targets(config)
    dtype = config.torch_dtype()
    regression = info["task"] == "regression"
    n_out = tabular.n_outputs(info)
    if regression and kind != "value":
        raise ValueError(f"{config.data_file}: a regression target needs value targets")

    def x_of(x: np.ndarray) -> Tensor:
        return torch.from_numpy(x).to(dtype=dtype, device=config.device)  # (N, D)

    def labels_of(y: np.ndarray) -> Tensor:
        t = torch.from_numpy(y)
        return t.to(dtype=dtype if regression else torch.int64, device=config.device)  # (N,)

    def y_of(labels: Tensor) -> Tensor:
        if kind == "class":
            return labels  # (N,)
        if kind == "value":
            return labels.to(dtype).unsqueeze(1)  # (N, 1)
        return one_hot(labels.cpu(), dtype, config.target_scale, n_out).to(labels.device)

    labels_train, labels_test = labels_of(parts.y_train), labels_of(parts.y_test)
    labels_valid = labels_of(parts.y_valid) if parts.y_valid is not None else None
    name = Path(str(config.data_file)).name
    rows = info["rows"]
    return TrainData(
        x_train=x_of(parts.x_train),
        y_train=y_of(labels_train),
        labels_train=labels_train,
        x_valid=x_of(parts.x_valid) if parts.x_valid is not None else None,
        y_valid=y_of(labels_valid) if labels_valid is not None else None,
        labels_valid=labels_valid,
        x_test=x_of(parts.x_test),
        y_test=y_of(labels_test),
        labels_test=labels_test,
        targets=kind,
        name=name,
        source=str(config.data_file),
        description=(
            f"{name}: {info['task']}, {len(info['feature_names'])} features, "
            f"{rows['train']:,} train / {rows['valid']:,} valid / {rows['test']:,} test rows"
        ),
        n_classes=n_out,
        task=info["task"],
        table=info,
    )


def load_data(config: TrainConfig) -> TrainData:
    """Load the config's preset (or table), make the loss's targets and carve the validation
    split.

    Raises:
        HandgradError: the data cannot be found or read.
        ValueError: a bad split size.
    """
    if tabular.is_table(config):
        return load_table_data(config)
    kind = resolve_targets(config)
    dtype = config.torch_dtype()
    if config.preset == "fleuret":
        ds = load_preset(
            "fleuret",
            data_dir=config.data_dir,
            full=config.full,
            target_scale=config.target_scale if kind == "onehot" else 1.0,
            dtype=dtype,
            device=config.device,
            download=config.download,
        )
    else:
        ds = load_preset(
            config.preset,
            data_dir=config.data_dir,
            dtype=dtype,
            device=config.device,
            download=config.download,
        )

    def targets(labels: Tensor, preset_y: Tensor) -> Tensor:
        if kind == "class":
            return labels  # (N,)
        if kind == "value":
            return labels.to(dtype).unsqueeze(1)  # (N, 1)
        if preset_y.dim() == 2:
            return preset_y  # (N, C), the preset's own one-hot rows
        return one_hot(labels.cpu(), dtype, config.target_scale).to(labels.device)  # (N, C)

    y_train = targets(ds.labels_train, ds.y_train)
    y_test = targets(ds.labels_test, ds.y_test)
    x_train, labels_train, x_test = ds.x_train, ds.labels_train, ds.x_test
    if config.input_scale != 1.0:  # seed 003 as written: train_input * zeta
        x_train, x_test = x_train * config.input_scale, x_test * config.input_scale
    x_valid = y_valid = labels_valid = None
    if config.valid:
        split = split_validation(
            x_train, y_train, config.valid, seed=config.seed, labels=labels_train
        )  # fmt: skip
        x_train, y_train, x_valid, y_valid = (
            split.x_train,
            split.y_train,
            split.x_valid,
            split.y_valid,
        )
        # split_validation returns the labels' parts when given labels.
        labels_train, labels_valid = _given(split.labels_train), _given(split.labels_valid)
    return TrainData(
        x_train=x_train,
        y_train=y_train,
        labels_train=labels_train,
        x_valid=x_valid,
        y_valid=y_valid,
        labels_valid=labels_valid,
        x_test=x_test,
        y_test=y_test,
        labels_test=ds.labels_test,
        targets=kind,
        name=ds.name,
        source=ds.source,
        description=ds.description,
    )


def _given(t: Tensor | None) -> Tensor:
    if t is None:
        raise TypeError("split_validation dropped the labels it was given")
    return t


def build_model(config: TrainConfig, *, seed: bool = True) -> nn.Sequential:
    """The config's MLP, drawn from ``torch.manual_seed(config.seed)`` (unless ``seed=False``)."""
    if seed:
        torch.manual_seed(config.seed)
    return nn.mlp(
        config.model,
        config.act,
        out_act=config.out_act,
        norm=config.norm,
        dropout=config.dropout,
        input_dropout=config.input_dropout,
        init=config.init,
        std=config.init_std,
        bias_std=config.bias_std,
        draw_order=config.draw_order,
        dtype=config.torch_dtype(),
        device=config.device,
    )


# The losses a config can name (SumSquaredLoss is an MSELoss with reduction="sum").
TrainLoss = nn.MSELoss | nn.CrossEntropyLoss


def build_loss(config: TrainConfig) -> TrainLoss:
    if config.loss == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    if config.loss == "mse":
        return nn.MSELoss()
    return nn.SumSquaredLoss()


def effective_lr(config: TrainConfig, n_train: int) -> float:
    """``lr``, or ``lr / N_train`` with ``lr_per_sample`` (the seeds' ``eta = 0.1 / N``)."""
    return _lr(config) / n_train if config.lr_per_sample else _lr(config)


def _lr(config: TrainConfig) -> float:
    if isinstance(config.lr, str):
        raise ValueError(
            f"lr {config.lr!r}: handgrad train --lr auto measures it first; give a number here"
        )
    return config.lr


def optimizer_kwargs(config: TrainConfig, n_train: int) -> dict[str, object]:
    """The keyword arguments of the config's optimizer (only those the config sets)."""
    kwargs: dict[str, object] = dict(config.optimizer_options)
    for name in ("momentum", "weight_decay", "betas", "eps", "nesterov"):
        value = getattr(config, name)
        if value is not None:
            kwargs[name] = value
    kwargs["lr"] = effective_lr(config, n_train)
    return kwargs


def build_optimizer(config: TrainConfig, model: nn.Module, n_train: int) -> Optimizer:
    """The config's handgrad optimizer over ``model``'s parameters (flatten the model first)."""
    return make_optimizer(config.optimizer, model.parameters(), **optimizer_kwargs(config, n_train))


def build_training_parts(
    config: TrainConfig, n_train: int
) -> tuple[nn.Sequential, TrainLoss, Optimizer]:
    """A run's model (seeded, flattened into one buffer), loss and optimizer, ready to train.

    The first layer's input gradient is never computed, as in torch: the pixels do not require
    grad, so ``backward`` skips dL/d(pixels) and the first layer's N x 784 product with it.
    """
    model = build_model(config)
    loss = build_loss(config)
    model.flatten_parameters()
    return model, loss, build_optimizer(config, model, n_train)


def build_batches(config: TrainConfig, data: TrainData) -> Batches:
    """The run's training batches: ``config.batch_size`` records, shuffled (or not) from
    ``config.seed``, the short last batch kept unless ``config.drop_last``."""
    return Batches(
        data.x_train,
        data.y_train,
        config.batch_size,
        shuffle=config.shuffle,
        seed=config.seed,
        drop_last=config.drop_last,
    )


def build_schedule(config: TrainConfig, n_train: int, total_steps: int) -> Schedule | None:
    """The learning-rate schedule, or None for a constant rate.

    Arguments the schedule takes and the options leave out are filled in: ``lr``/``max_lr``
    from the config, ``total_steps`` from the plan, ``n_samples`` = N_train. With
    ``lr_per_sample`` every rate (``lr``, ``max_lr``, ``min_lr``, ``values``) is divided by N.
    """
    if config.schedule == "constant" and not config.schedule_options:
        return None
    factory = SCHEDULES[config.schedule]
    params = inspect.signature(factory).parameters
    opts = dict(config.schedule_options)
    for key in ("lr", "max_lr"):
        if key in params and key not in opts:
            opts[key] = _lr(config)
    if "total_steps" in params and "total_steps" not in opts:
        opts["total_steps"] = total_steps
    if "n_samples" in params and "n_samples" not in opts:
        opts["n_samples"] = n_train
    required = [
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and name not in opts
    ]
    if required:
        raise HandgradError(
            f"--schedule {config.schedule}: needs the option {required[0]}; give it with "
            f"--schedule-option {required[0]}=VALUE"
        )
    if config.lr_per_sample:
        for key in ("lr", "max_lr", "min_lr"):
            if key in opts:
                opts[key] = opts[key] / n_train
        if "values" in opts:
            opts["values"] = [v / n_train for v in opts["values"]]
    return make_schedule(config.schedule, **opts)


def pixels_to_input(config: TrainConfig, pixels: np.ndarray) -> Tensor:
    """Raw MNIST-style pixels ``(N, 28, 28)`` uint8 → the model's input ``(N, 784)``.

    The same transform the config's preset applies to its images: for ``fleuret`` the training
    part's scalar mean and std, for ``fastai`` ``/ 256``, for ``mnist`` ``/ 255``.
    """
    from handgrad.data import load_embedded, load_mnist_arrays
    from handgrad.data.presets import FLEURET_SUBSET, fleuret_from_arrays

    dtype = config.torch_dtype()
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[1:] != (28, 28):
        raise ValueError(f"pixels: expected uint8 (N, 28, 28), got {pixels.dtype} {pixels.shape}")
    flat = torch.from_numpy(np.ascontiguousarray(pixels)).reshape(len(pixels), -1).to(dtype)
    if config.preset == "fastai":
        return (flat / 256).to(config.device)
    if config.preset in ("mnist", "fashion-mnist", "kmnist"):
        return (flat / 255).to(config.device)
    if config.full:
        arrays = load_mnist_arrays(config.data_dir, download=config.download)
        n_train = None
    else:
        arrays, n_train = load_embedded(), FLEURET_SUBSET
    # Run the preset's own normalization with these pixels in place of the test images.
    ds = fleuret_from_arrays(
        {
            "train_images": arrays["train_images"],
            "train_labels": arrays["train_labels"],
            "test_images": pixels,
            "test_labels": np.zeros(len(pixels), dtype=np.uint8),
        },
        n_train=n_train,
        n_test=None,
        dtype=dtype,
    )
    return ds.x_test.to(config.device)


def model_from_state(config: TrainConfig, state: dict[str, Tensor]) -> nn.Sequential:
    """The config's model holding ``state`` (a state dict with torch.nn's keys)."""
    model = build_model(config, seed=False)
    model.load_state_dict(state)
    return model


def preflight(config: TrainConfig, data: TrainData) -> Plan:
    """Build every part of a run once, so that a bad setting fails before anything is written.

    Returns the plan. The global torch generator is left as it was.
    """
    plan = build_plan(config, data.n_train)
    with torch.random.fork_rng(devices=[]):
        model = build_model(config, seed=False)
        model.flatten_parameters()
        build_optimizer(config, model, data.n_train)
    build_schedule(config, data.n_train, plan.total_steps)
    build_transform(config)
    return plan


def check_device(device: str) -> None:
    """Refuse a device this machine cannot train on (before anything is written).

    Raises:
        HandgradError: an unknown name, ``meta`` (tensors without data), or a CUDA/MPS device
            this machine does not have.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise HandgradError(
            f"--device {device}: not a torch device; use cpu (or cuda, cuda:1, mps)"
        ) from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise HandgradError(
                f"--device {device}: this machine (or this torch build) has no CUDA device; "
                "use --device cpu"
            )
        if dev.index is not None and dev.index >= count:
            raise HandgradError(
                f"--device {device}: there are only {count} CUDA devices (cuda:0 to "
                f"cuda:{count - 1})"
            )
        return
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise HandgradError(f"--device {device}: MPS is not available here; use --device cpu")
        return
    why = " (tensors without data: nothing can be trained)" if dev.type == "meta" else ""
    raise HandgradError(f"--device {device}: cannot train on {dev.type}{why}; use --device cpu")


def check_run_memory(config: TrainConfig, widths: list[int]) -> None:
    """Refuse a model or batch that cannot fit in memory, before anything is allocated."""
    itemsize = 8 if config.dtype == "float64" else 4
    batch = config.batch_size or 0  # a full batch is checked when the data is known
    check_memory(
        f"--model {config.model}" + (f" --batch-size {batch}" if config.batch_size else ""),
        mlp_memory(widths, batch, itemsize),
        "use a smaller model or batch",
    )


def check_run_weights(
    run_dir: Path, config: TrainConfig, state: dict[str, Tensor], source: Path
) -> None:
    """Check the weights ``evaluate``/``predict`` loaded from a run against the model its
    ``config.json`` builds (names, shapes, dtypes, all finite) and the config against the
    fingerprint its checkpoint and model file carry (``train.checks.check_run_model``).

    Raises:
        HandgradError: naming the file and what does not fit.
    """
    from handgrad.train.checks import check_run_model

    with torch.random.fork_rng(devices=[]):
        expected = build_model(config, seed=False).state_dict()
    check_run_model(run_dir, config.fingerprint(), state, source, expected)
