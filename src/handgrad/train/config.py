"""The description of a run: one dataclass that the CLI fills and a run directory keeps.

``TrainConfig`` holds everything a run depends on. ``config.save(path)`` writes it as JSON and
``TrainConfig.load(path)`` reads it back (unknown keys and wrong types are one-line errors), so
``handgrad train --config runs/x/config.json`` repeats run ``x`` exactly. ``validate()`` checks
what can be checked without the data; ``handgrad.train.build`` checks the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handgrad.data.augment import AUGMENTS as AUGMENT_PRESETS
from handgrad.data.augment import Augment
from handgrad.errors import HandgradError, did_you_mean
from handgrad.nn.init import INITS
from handgrad.nn.mlp import ACTIVATIONS, NORMS

DATA_PRESETS = ("fleuret", "fastai", "mnist")
TARGETS = ("auto", "class", "onehot", "value")
LOSSES = ("cross_entropy", "mse", "sum_squared")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine", "onecycle", "piecewise", "ninja")
MONITORS = ("valid_error", "valid_loss")
DTYPES = ("float32", "float64")
ENGINES = ("handgrad", "autograd")
AUGMENTS = tuple(AUGMENT_PRESETS)  # none, shift, affine, elastic (handgrad.data.augment)
# Augment fields that augment_options may set (side is the image size, fixed at 28 for MNIST).
AUGMENT_OPTIONS = tuple(f.name for f in dataclasses.fields(Augment) if f.name != "side")
EVAL_TEST = ("always", "end")
DRAW_ORDERS = ("out_in", "in_out")

# Fields that name or place a run without changing what it computes (left out of its hash).
COSMETIC_FIELDS = ("name", "recipe", "data_dir", "download")
# Fields added after runs were already written: left out of the hash at their defaults, so the
# checkpoints of those runs still resume.
LATER_FIELDS = {"augment_options": {}, "drop_last": False, "eval_test": "always"}


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults: the README's first ``handgrad train``."""

    # -- naming --------------------------------------------------------------------------
    name: str = "run"  # run directory prefix: <out>/<name>-<YYYYmmdd-HHMMSS>/
    recipe: str | None = None  # the recipe this config was made from (informational)

    # -- data ----------------------------------------------------------------------------
    preset: str = "fleuret"  # data preset: fleuret (1,000/1,000 embedded), fastai, mnist
    full: bool = False  # fleuret: all 60,000/10,000 records instead of the embedded subset
    data_dir: str | None = None  # folder with the MNIST files (else $HANDGRAD_DATA, cache)
    download: bool = True  # fetch (and verify) MNIST when it is not found anywhere
    valid: int | float = 100  # validation records carved from train: count, fraction, 0 = none
    targets: str = "auto"  # class indices | onehot | value (digit as a float, (N, 1)) | auto
    target_scale: float = 1.0  # one-hot targets: the value at the label (0.9 for tanh outputs)

    # -- model ---------------------------------------------------------------------------
    model: str = "784-128-10"  # layer widths: input-hidden...-output
    act: str = "relu"  # hidden activation: relu, leaky_relu, tanh, sigmoid, gelu, gelu_tanh
    out_act: str = "none"  # activation after the last layer (tanh in the Fleuret/ninja seeds)
    norm: str = "none"  # none | batchnorm | layernorm after each hidden Linear
    dropout: float = 0.0  # dropout after each hidden activation
    input_dropout: float = 0.0  # dropout on the input pixels
    init: str = "torch"  # torch | normal | xavier_uniform | xavier_normal | kaiming_*
    init_std: float | None = None  # weight std for init="normal" (1 if None)
    bias_std: float | None = None  # draw biases from N(0, bias_std²) (else the init's default)
    draw_order: str = "out_in"  # in_out draws W as (D_in, D_out), as notebooks doing x @ w

    # -- loss ----------------------------------------------------------------------------
    loss: str = "cross_entropy"  # cross_entropy | mse (mean) | sum_squared (the seeds' Σ(y-t)²)
    label_smoothing: float = 0.0  # cross_entropy only

    # -- optimizer and schedule ----------------------------------------------------------
    optimizer: str = "adam"  # sgd | adam | adamw | rmsprop (torch.optim's arguments)
    lr: float = 1e-3  # learning rate (divided by N_train when lr_per_sample)
    lr_per_sample: bool = False  # eta = lr / N_train, as the Fleuret and ninja seeds write it
    momentum: float | None = None  # sgd, rmsprop (None: the optimizer's default)
    weight_decay: float | None = None  # all optimizers (None: default; adamw's is 0.01)
    betas: tuple[float, float] | None = None  # adam, adamw
    eps: float | None = None  # adam, adamw, rmsprop
    nesterov: bool | None = None  # sgd
    optimizer_options: dict[str, Any] = field(default_factory=dict)  # other keyword arguments
    schedule: str = "constant"  # constant | step | cosine | onecycle | piecewise | ninja
    schedule_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"warmup_steps": 100}

    # -- length, batches, evaluation -----------------------------------------------------
    batch_size: int | None = 64  # records per (micro-)batch; None = the full training set
    shuffle: bool = True  # new order each epoch (from seed and epoch only)
    accumulate: int | None = 1  # micro-batches per optimizer step; None = a whole pass
    epochs: int | None = 20  # passes over the training set (ignored when steps is set)
    steps: int | None = None  # optimizer steps; overrides epochs
    eval_every: int | None = None  # steps between evaluations; None = once per epoch
    checkpoint_every: int | None = None  # steps between checkpoints; None = at each evaluation
    patience: int | None = None  # early stopping: evaluations without a better `monitor`
    monitor: str = "valid_error"  # valid_error | valid_loss (needs a validation split)
    drop_last: bool = False  # skip the last, smaller batch of each epoch
    # test split: "always" at every evaluation, or "end": only once, after training (every
    # earlier record has test_loss/test_error null; model choices then see no test figure)
    eval_test: str = "always"
    augment: str = "none"  # random transform of each training batch: none|shift|affine|elastic
    augment_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"shift": 1.0}

    # -- reproducibility and hardware ----------------------------------------------------
    seed: int = 0  # seeds the weights (torch.manual_seed), the split and the batch order
    dtype: str = "float32"  # float32 | float64
    device: str = "cpu"  # torch device
    # torch threads during the run (None: torch's default). 1 by default: these small MLPs gain
    # little from more, a busy machine loses a lot to waiting threads, and float sums (so the
    # exact results) can change with the thread count.
    threads: int | None = 1
    engine: str = "handgrad"  # handgrad (hand-written backward) | autograd (torch reference)

    # -- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field (tuples become lists)."""
        out = dataclasses.asdict(self)
        if out["betas"] is not None:
            out["betas"] = list(out["betas"])
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build a config from a dict, checking each key and each value's type.

        Raises:
            ValueError: an unknown key (naming the closest field) or a value of the wrong type.
        """
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                raise ValueError(f"{where}: unknown key {key!r}{did_you_mean(str(key), names)}")
            values[key] = _coerce(f"{where}: {key}", value, hints[key])
        return cls(**values)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Read a config written by ``save`` (or by hand).

        Raises:
            HandgradError: the file cannot be read or is not valid JSON.
            ValueError: an unknown key or a wrong type.
        """
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise HandgradError(f"{path}: cannot read config ({exc.strerror or exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HandgradError(
                f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        return cls.from_dict(data, where=str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(self.to_json())

    def fingerprint(self) -> str:
        """SHA-256 of the fields that change what the run computes (not its name or place)."""
        data = {
            k: v
            for k, v in self.to_dict().items()
            if k not in COSMETIC_FIELDS and not (k in LATER_FIELDS and LATER_FIELDS[k] == v)
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    # -- checks --------------------------------------------------------------------------
    def validate(self) -> TrainConfig:
        """Check every field that can be checked without the data; return ``self``.

        Raises:
            ValueError: naming the field, what was expected and what came.
        """
        choices = {
            "preset": DATA_PRESETS,
            "targets": TARGETS,
            "loss": LOSSES,
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "monitor": MONITORS,
            "dtype": DTYPES,
            "engine": ENGINES,
            "augment": AUGMENTS,
            "eval_test": EVAL_TEST,
            "draw_order": DRAW_ORDERS,
            "act": ACTIVATIONS,
            "out_act": ACTIVATIONS,
            "init": INITS,
            "norm": NORMS,
        }
        for name, valid in choices.items():
            value = getattr(self, name)
            if value not in valid:
                raise ValueError(
                    f"unknown {name} {value!r}{did_you_mean(str(value), valid)}; "
                    f"choose from {', '.join(valid)}"
                )
        if not self.name or any(c in self.name for c in "/\\\0") or self.name.startswith("."):
            raise ValueError(f"name: expected a plain file name, got {self.name!r}")
        _positive("lr", self.lr)
        _positive_int("batch_size", self.batch_size, none_ok=True)
        _positive_int("accumulate", self.accumulate, none_ok=True)
        _positive_int("epochs", self.epochs, none_ok=True)
        _positive_int("steps", self.steps, none_ok=True)
        if self.epochs is None and self.steps is None:
            raise ValueError("epochs and steps are both unset; give one of them")
        _positive_int("eval_every", self.eval_every, none_ok=True)
        _positive_int("checkpoint_every", self.checkpoint_every, none_ok=True)
        _positive_int("patience", self.patience, none_ok=True)
        _positive_int("threads", self.threads, none_ok=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: expected an int >= 0, got {self.seed!r}")
        for name in ("dropout", "input_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1), got {value}")
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing: expected [0, 1], got {self.label_smoothing}")
        if not math.isfinite(self.target_scale) or self.target_scale == 0:
            raise ValueError(
                f"target_scale: expected a finite non-zero number, got {self.target_scale}"
            )
        if self.init_std is not None:
            _positive("init_std", self.init_std, zero_ok=True)
        if self.bias_std is not None:
            _positive("bias_std", self.bias_std, zero_ok=True)
        if isinstance(self.valid, bool) or self.valid < 0:
            raise ValueError(
                f"valid: expected a count >= 0 or a fraction in (0, 1), got {self.valid!r}"
            )
        if isinstance(self.valid, float) and self.valid >= 1.0:
            raise ValueError(
                "valid: a float is a fraction of the training set and must be < 1, "
                f"got {self.valid}"
            )
        if self.patience is not None and not self.valid:
            raise ValueError("patience: early stopping needs a validation split (valid > 0)")
        if self.full and self.preset != "fleuret":
            raise ValueError(
                f"full: only the fleuret preset has a subset; {self.preset} is always full"
            )
        if self.label_smoothing and self.loss != "cross_entropy":
            raise ValueError("label_smoothing: applies to the cross_entropy loss only")
        self.augmentation()
        return self

    def augmentation(self) -> Augment:
        """The ``Augment`` that ``augment`` names with ``augment_options`` applied.

        Raises:
            ValueError: an unknown option (naming the closest), a bad value, or options given
                with ``augment`` "none".
        """
        options = self.augment_options
        if not isinstance(options, dict):
            raise ValueError(f"augment_options: expected a JSON object, got {options!r}")
        for key in options:
            if key not in AUGMENT_OPTIONS:
                raise ValueError(
                    f"augment_options: unknown key {key!r}"
                    f"{did_you_mean(str(key), AUGMENT_OPTIONS)}; "
                    f"choose from {', '.join(AUGMENT_OPTIONS)}"
                )
        if options and self.augment == "none":
            raise ValueError(
                "augment_options: augment is none; name a base augmentation "
                f"({', '.join(a for a in AUGMENTS if a != 'none')}) to change"
            )
        try:
            return dataclasses.replace(AUGMENT_PRESETS[self.augment], **options)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"augment_options: {exc}") from None

    # -- derived -------------------------------------------------------------------------
    def torch_dtype(self) -> Any:
        import torch

        return {"float32": torch.float32, "float64": torch.float64}[self.dtype]

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (unknown names are a ValueError)."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in names:
                raise ValueError(f"config: unknown field {key!r}{did_you_mean(key, sorted(names))}")
        return dataclasses.replace(self, **changes)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _positive(name: str, value: Any, zero_ok: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if value < 0 or (value == 0 and not zero_ok):
        raise ValueError(f"{name}: must be {'>= 0' if zero_ok else '> 0'}, got {value}")


def _positive_int(name: str, value: Any, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name}: must be > 0, got {value}")


def _type_name(hint: Any) -> str:
    names = {type(None): "null", int: "an integer", float: "a number", str: "a string"}
    names[bool] = "true or false"
    if hint in names:
        return names[hint]
    return "a list" if typing.get_origin(hint) is tuple else str(hint).replace("typing.", "")


def _coerce(where: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the type hint ``hint`` (JSON lists become tuples)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(where, value, option)
            except ValueError as exc:
                errors.append(str(exc))
        names = " or ".join(_type_name(o) for o in options)
        raise ValueError(f"{where}: expected {names}, got {value!r}")
    if hint is Any:
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ValueError(f"{where}: expected a list of {len(args)} numbers, got {value!r}")
        return tuple(_coerce(where, v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a JSON object, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported field type {hint!r}")
