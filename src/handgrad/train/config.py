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
from typing import TYPE_CHECKING, Any

from handgrad.errors import HandgradError, did_you_mean
from handgrad.limits import check_threads, read_config_text

if TYPE_CHECKING:
    from handgrad.data.augment import Augment

# This module imports neither torch nor the rest of handgrad, so that the command line can
# build its parser (and answer --help) from the fields' metadata at once. The choices that
# handgrad.nn and handgrad.data define are therefore repeated here; tests/test_train_config.py
# checks that they are the same.
DATA_PRESETS = ("fleuret", "fastai", "mnist", "fashion-mnist", "kmnist")
TARGETS = ("auto", "class", "onehot", "value")
LOSSES = ("cross_entropy", "mse", "sum_squared")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine", "onecycle", "piecewise", "ninja")
MONITORS = ("valid_error", "valid_loss")
DTYPES = ("float32", "float64")
ENGINES = ("handgrad", "autograd")
AUGMENTS = ("none", "shift", "affine", "elastic")  # handgrad.data.augment.AUGMENTS
EVAL_TEST = ("always", "end")
DRAW_ORDERS = ("out_in", "in_out")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "gelu_tanh", "none")  # nn.mlp
NORMS = ("none", "batchnorm", "layernorm")  # handgrad.nn.mlp.NORMS
INITS = (
    "torch",
    "normal",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
)  # handgrad.nn.init.INITS

# Fields that name or place a run without changing what it computes (left out of its hash).
COSMETIC_FIELDS = ("name", "recipe", "data_dir", "download")
# Fields added after runs were already written: left out of the hash at their defaults, so the
# checkpoints of those runs still resume.
LATER_FIELDS: dict[str, Any] = {
    "augment_options": {},
    "drop_last": False,
    "eval_test": "always",
    "input_scale": 1.0,
    "layer_stats": True,
    "keep_best": False,
}
# The user's own table (handgrad.train.tabular): left out of the hash when unused.
TASKS = ("auto", "classification", "regression")
LATER_FIELDS.update(
    data_file=None,
    target=None,
    target_file=None,
    task="auto",
    test_fraction=0.2,
    test_file=None,
    data_sha256=None,
    table={},
)
# The process group of a data-parallel run (handgrad.train.distributed_run): a single-process
# run records world_size 1 and backend null, and keeps the hash it always had.
LATER_FIELDS.update(world_size=1, backend=None)
BACKENDS = (None, "gloo", "nccl")

# The command line's option groups, in the order `handgrad train --help` shows them.
GROUPS = ("data", "model", "loss and optimizer", "length and batches", "run")


def option(default: Any = dataclasses.MISSING, *, group: str, help: str, **meta: Any) -> Any:
    """A config field that is also a ``handgrad train`` option (``handgrad.cli.options``).

    Args:
        default: the field's default (a dict default is copied for each config).
        group: one of ``GROUPS``.
        help: the option's help, without its default (the parser adds it).
        meta: ``flag`` (default ``--field-name``; ``--no-x`` for a True bool), ``metavar``,
            ``choices``, ``words`` (command-line words with a special value, e.g.
            ``{"full": None}``), ``overrides`` (a field set to None when only this one is
            given), ``resume`` (True: may accompany ``--resume``), ``default_text``.
    """
    metadata = {"group": group, "help": help, **meta}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults: the README's first ``handgrad train``."""

    # -- naming --------------------------------------------------------------------------
    # run directory prefix: <out>/<name>-<YYYYmmdd-HHMMSS>/
    name: str = option("run", group="run", help="run name", default_text="the recipe's, or run")
    recipe: str | None = None  # the recipe this config was made from (informational)

    # -- data ----------------------------------------------------------------------------
    preset: str = option(
        "fleuret",
        group="data",
        choices=DATA_PRESETS,
        help="data preset: fleuret (1,000/1,000 embedded), fastai, mnist, fashion-mnist, kmnist",
    )
    full: bool = option(False, group="data", help="fleuret: all 60,000/10,000 records")
    data_dir: str | None = option(
        None,
        group="data",
        flag="--data",
        metavar="DIR",
        resume=True,
        help="folder with the MNIST files (else $HANDGRAD_DATA, then the cache)",
    )
    download: bool = option(
        True, group="data", help="never download MNIST (default: fetch and verify if missing)"
    )
    valid: int | float = option(
        100,
        group="data",
        metavar="N",
        help="validation records carved from train (a count or a fraction; 0 none)",
    )
    targets: str = option(
        "auto",
        group="data",
        choices=TARGETS,
        help="loss targets: class indices, onehot rows, value (the digit as a float, (N, 1))",
    )
    target_scale: float = option(
        1.0, group="data", metavar="S", help="value at the label of one-hot targets (0.9 for tanh)"
    )
    # every split's inputs times S (seed 003 as written: train_input * zeta, zeta = 0.9)
    input_scale: float = option(
        1.0, group="data", metavar="S", help="multiply every input by S (seed 003: 0.9)"
    )

    # -- model ---------------------------------------------------------------------------
    model: str = option(
        "784-128-10", group="model", metavar="SPEC", help="layer widths: input-hidden...-output"
    )
    act: str = option("relu", group="model", choices=ACTIVATIONS, help="hidden activation")
    out_act: str = option(
        "none", group="model", choices=ACTIVATIONS, help="activation after the last layer"
    )
    norm: str = option(
        "none", group="model", choices=NORMS, help="normalization after each hidden Linear"
    )
    dropout: float = option(
        0.0, group="model", metavar="P", help="dropout after each hidden activation"
    )
    input_dropout: float = option(0.0, group="model", metavar="P", help="dropout on the input")
    init: str = option("torch", group="model", choices=INITS, help="weight init")
    init_std: float | None = option(
        None, group="model", metavar="STD", help="weight std for --init normal (1 if unset)"
    )
    bias_std: float | None = option(
        None, group="model", metavar="STD", help="draw biases from N(0, STD^2)"
    )
    draw_order: str = option(
        "out_in",
        group="model",
        choices=DRAW_ORDERS,
        help="in_out: draw W as (D_in, D_out) like x @ w notebooks",
    )

    # -- loss ----------------------------------------------------------------------------
    loss: str = option(
        "cross_entropy",
        group="loss and optimizer",
        choices=LOSSES,
        help="cross_entropy, mse (mean) or sum_squared (the seeds' sum of (y-t)^2)",
    )
    label_smoothing: float = option(
        0.0, group="loss and optimizer", metavar="E", help="cross_entropy only"
    )

    # -- optimizer and schedule ----------------------------------------------------------
    optimizer: str = option(
        "adam",
        group="loss and optimizer",
        choices=OPTIMIZERS,
        help="the optimizer (torch.optim's arguments)",
    )
    # "auto": the LR finder's suggestion (handgrad.train.lr_finder), measured before the run
    # and recorded as the number in config.json (with lr_finder.json beside it)
    lr: float | str = option(
        1e-3,
        group="loss and optimizer",
        words={"auto": "auto"},
        help="learning rate (divided by N_train with --lr-per-sample); auto: the LR finder's",
    )
    lr_per_sample: bool = option(
        False,
        group="loss and optimizer",
        help="use lr / N_train (the seeds' eta = 0.1 / N)",
    )
    momentum: float | None = option(
        None, group="loss and optimizer", help="sgd, rmsprop (unset: the optimizer's default)"
    )
    weight_decay: float | None = option(
        None, group="loss and optimizer", help="all optimizers (unset: default; adamw's is 0.01)"
    )
    betas: tuple[float, float] | None = option(
        None, group="loss and optimizer", metavar=("B1", "B2"), help="adam, adamw"
    )
    eps: float | None = option(None, group="loss and optimizer", help="adam, adamw, rmsprop")
    nesterov: bool | None = option(None, group="loss and optimizer", help="sgd")
    optimizer_options: dict[str, Any] = option(  # noqa: RUF009 (a field, copied per config)
        {},
        group="loss and optimizer",
        flag="--optimizer-option",
        help="another optimizer argument (repeatable)",
    )
    schedule: str = option(
        "constant", group="loss and optimizer", choices=SCHEDULES, help="learning-rate schedule"
    )
    schedule_options: dict[str, Any] = option(  # noqa: RUF009 (a field, copied per config)
        {},
        group="loss and optimizer",
        flag="--schedule-option",
        help="a schedule argument, e.g. warmup_steps=100 (repeatable)",
    )

    # -- length, batches, evaluation -----------------------------------------------------
    batch_size: int | None = option(
        64,
        group="length and batches",
        metavar="N|full",
        words={"full": None},
        help="records per (micro-)batch; full: the whole training set",
    )
    shuffle: bool = option(
        True, group="length and batches", help="keep the records' order (default: a new order "
        "each epoch, from seed and epoch only)"
    )  # fmt: skip
    accumulate: int | None = option(
        1,
        group="length and batches",
        metavar="N|pass",
        words={"pass": None},
        help="micro-batches per optimizer step; pass: a whole pass",
    )
    epochs: int | None = option(
        20,
        group="length and batches",
        overrides="steps",
        help="passes over the training set (ignored when steps is set)",
    )
    steps: int | None = option(
        None, group="length and batches", overrides="epochs", help="optimizer steps"
    )
    eval_every: int | None = option(
        None,
        group="length and batches",
        metavar="STEPS",
        default_text="once per epoch",
        help="steps between evaluations",
    )
    checkpoint_every: int | None = option(
        None,
        group="length and batches",
        metavar="STEPS",
        default_text="at each evaluation",
        help="steps between checkpoints",
    )
    patience: int | None = option(
        None,
        group="length and batches",
        metavar="EVALS",
        help="early stopping: evaluations without a better --monitor",
    )
    monitor: str = option(
        "valid_error",
        group="length and batches",
        choices=MONITORS,
        help="the early-stopping figure (needs a validation split)",
    )
    drop_last: bool = option(
        False, group="length and batches", help="skip the last, smaller batch of each epoch"
    )
    # test split: "always" at every evaluation, or "end": only once, after training (every
    # earlier record has test_loss/test_error null; model choices then see no test figure)
    eval_test: str = option(
        "always",
        group="length and batches",
        choices=EVAL_TEST,
        help="evaluate the test set at every evaluation, or once, at the end",
    )
    augment: str = option(
        "none", group="length and batches", choices=AUGMENTS, help="augment each training batch"
    )
    augment_options: dict[str, Any] = option(  # noqa: RUF009 (a field, copied per config)
        {},
        group="length and batches",
        flag="--augment-option",
        help="an augmentation magnitude, e.g. shift=1.5 rotate=8 (repeatable)",
    )

    # -- reproducibility and hardware ----------------------------------------------------
    seed: int = option(
        0, group="run", help="seeds the weights (torch.manual_seed), the split, the batch order"
    )
    dtype: str = option("float32", group="run", choices=DTYPES, help="float32 or float64")
    device: str = option("cpu", group="run", help="torch device")
    # torch threads during the run: None leaves torch's default; "auto" measures the fastest
    # count on the run's own step and records it in config.json (handgrad.train.threads).
    threads: int | str | None = option(
        None,
        group="run",
        metavar="N|auto",
        words={"0": None, "auto": "auto"},
        default_text="torch's",
        help="torch threads; 0: torch's default; auto: the fastest, measured on this run's step",
    )
    engine: str = "handgrad"  # handgrad (hand-written backward) | autograd (torch reference)
    # per-layer statistics (layers.jsonl) at the first steps and at evaluations; they change
    # nothing the run computes (handgrad.train.layer_stats)
    layer_stats: bool = option(
        True, group="run", help="record no per-layer statistics (layers.jsonl)"
    )
    keep_best: bool = option(
        False,
        group="run",
        help="keep best.safetensors: the weights at the best --monitor figure",
    )

    # -- the user's own table (handgrad.train.tabular; issue 19) -------------------------
    data_file: str | None = option(
        None,
        group="data",
        metavar="FILE",
        help="train on your own table: a .csv with a header, an .npz with x and y, or an .npy "
        "of features (with --target-file); replaces --preset; --valid defaults to 0.2 here",
    )
    target: str | None = option(
        None, group="data", metavar="COLUMN", help="--data-file .csv: the target column"
    )
    target_file: str | None = option(
        None, group="data", metavar="FILE", help="--data-file .npy: the .npy of targets (N,)"
    )
    task: str = option(
        "auto",
        group="data",
        choices=TASKS,
        help="--data-file: auto (classification for labels or few integers, else regression)",
    )
    test_fraction: float = option(
        0.2,
        group="data",
        metavar="F",
        help="--data-file: test rows carved (seeded) from the file, unless --test-file",
    )
    test_file: str | None = option(
        None, group="data", metavar="FILE", help="--data-file: a separate test table"
    )
    # Recorded when the run starts (handgrad.train.tabular.resolve_table): the files' SHA-256
    # and the table's layout and standardization (training split only), for resume, evaluate,
    # predict and export.
    data_sha256: str | None = None
    table: dict[str, Any] = field(default_factory=dict)

    # -- data-parallel training (handgrad train under torchrun; issue 20) -----------------
    # Recorded when the run starts: the number of processes and torch.distributed's backend
    # (gloo on CPU, nccl on CUDA); 1 and null for a single process. Not options: torchrun's
    # --nproc_per_node sets them.
    world_size: int = 1
    backend: str | None = None

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
        fields_by_name = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                raise ValueError(f"{where}: unknown key {key!r}{did_you_mean(str(key), names)}")
            values[key] = _coerce(f"{where}: {key}", value, hints[key])
            words = fields_by_name[key].metadata.get("words")
            if words and isinstance(value, str) and value not in words.values():
                # a number, or one of its words ("auto"); never another string
                raise ValueError(f"{where}: {key}: expected a number, got {value!r}")
        return cls(**values)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Read a config written by ``save`` (or by hand).

        Raises:
            HandgradError: the file cannot be read or is not valid JSON.
            ValueError: an unknown key or a wrong type.
        """
        path = Path(path)
        text = read_config_text(path)  # at most 1 MiB: --config /dev/zero is refused at once
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HandgradError(
                f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        return cls.from_dict(data, where=str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config as JSON, atomically (a failed write leaves the old file intact)."""
        from handgrad.train.records import atomic_write

        atomic_write(Path(path), self.to_json().encode())

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
        if self.lr != "auto":
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
        if self.threads != "auto":
            _positive_int("threads", self.threads, none_ok=True)
            check_threads("threads", self.threads)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: expected an int >= 0, got {self.seed!r}")
        for name in ("dropout", "input_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1), got {value}")
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing: expected [0, 1], got {self.label_smoothing}")
        if not math.isfinite(self.input_scale) or self.input_scale == 0:
            raise ValueError(
                f"input_scale: expected a finite non-zero number, got {self.input_scale}"
            )
        if self.keep_best and not self.valid:
            raise ValueError("keep_best: the best weights need a validation split (valid > 0)")
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
        self._validate_table()
        _positive_int("world_size", self.world_size)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected null, gloo or nccl, got {self.backend!r}")
        if self.world_size > 1 and self.backend is None:
            raise ValueError("backend: a run of world_size > 1 names its backend (gloo, nccl)")
        if self.label_smoothing and self.loss != "cross_entropy":
            raise ValueError("label_smoothing: applies to the cross_entropy loss only")
        self.augmentation()
        return self

    def _validate_table(self) -> None:
        """The ``--data-file`` fields agree with each other."""
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        if not 0.0 <= self.test_fraction < 1.0 or isinstance(self.test_fraction, bool):
            raise ValueError(f"test_fraction: expected [0, 1), got {self.test_fraction!r}")
        if self.data_file is None:
            for name in ("target", "target_file", "test_file"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: applies with --data-file only")
            if self.task != "auto":
                raise ValueError("task: applies with --data-file only")
            return
        suffix = Path(self.data_file).suffix.lower()
        if suffix not in (".csv", ".npz", ".npy"):
            raise ValueError(f"data_file: expected a .csv, .npz or .npy file, got {self.data_file}")
        if suffix == ".csv" and not self.target:
            raise ValueError("data_file: a .csv needs --target COLUMN (the column to predict)")
        if suffix != ".csv" and self.target is not None:
            raise ValueError(f"target: names a .csv column; a {suffix} file has x and y arrays")
        if suffix == ".npy" and self.target_file is None:
            raise ValueError("data_file: an .npy of features needs --target-file (the targets)")
        if suffix != ".npy" and self.target_file is not None:
            raise ValueError("target_file: applies to an .npy --data-file only")
        if self.test_file is None and self.test_fraction == 0:
            raise ValueError("test_fraction: 0 needs a --test-file")

    def augmentation(self) -> Augment:
        """The ``Augment`` that ``augment`` names with ``augment_options`` applied.

        Raises:
            ValueError: an unknown option (naming the closest), a bad value, or options given
                with ``augment`` "none".
        """
        from handgrad.data.augment import AUGMENTS as AUGMENT_PRESETS
        from handgrad.data.augment import Augment

        # The fields augment_options may set (side is the image size, fixed at 28 for MNIST).
        allowed = tuple(f.name for f in dataclasses.fields(Augment) if f.name != "side")
        options = self.augment_options
        if not isinstance(options, dict):
            raise ValueError(f"augment_options: expected a JSON object, got {options!r}")
        for key in options:
            if key not in allowed:
                raise ValueError(
                    f"augment_options: unknown key {key!r}"
                    f"{did_you_mean(str(key), allowed)}; "
                    f"choose from {', '.join(allowed)}"
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
