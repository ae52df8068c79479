"""Export a trained handgrad network: ONNX (through its torch twin) or NumPy-only ``.npz``.

- ``export_onnx(model, path, ...)``: the torch twin (``handgrad.reference.to_torch``) in eval
  mode, with the output activation appended, exported by ``torch.onnx.export`` (needs
  ``onnx`` and ``onnxscript``: ``pip install 'handgrad[export]'``), then checked with
  ``onnx.checker``. The graph has one input ``input`` (N, D) and one output ``output``; N is
  dynamic.
- ``export_numpy(model, path, ...)``: a ``.npz`` of the weights plus a JSON description, run by
  ``handgrad/export/numpy_predictor.py``, a file that imports only numpy (copy it next to the
  ``.npz``: ``numpy_predictor.load(path).predict(X)``).

Both work for a fitted ``handgrad.sklearn`` estimator (``est.export_onnx(path)``,
``est.export_numpy(path)``) and for a ``handgrad train`` run (``handgrad export RUN --format
onnx|numpy``). The exported network takes the inputs the model was trained on: for a run, the
preset's preprocessed pixels (e.g. ``mnist``: pixel / 255, flattened to 784).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handgrad import nn
from handgrad.errors import HandgradError
from handgrad.export.numpy_predictor import FORMAT

OUTPUTS = ("identity", "softmax", "logistic")
TASKS = ("regression", "classification", "binary", "multilabel")
PathLike = str | os.PathLike[str]


def _layer_spec(module: nn.Module) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One module as the NumPy predictor's layer description and arrays."""
    from handgrad.reference import twin_base

    base = twin_base(type(module))

    def arrays_of(*names: str) -> dict[str, np.ndarray]:
        out = {}
        for name in names:
            value = getattr(module, name, None)
            if isinstance(value, torch.Tensor):
                out[name] = value.detach().cpu().numpy().copy()
        return out

    simple = {
        nn.ReLU: "relu",
        nn.Tanh: "tanh",
        nn.Sigmoid: "sigmoid",
        nn.Softmax: "softmax",
        nn.LogSoftmax: "log_softmax",
        nn.Dropout: "identity",  # eval mode
        nn.Flatten: "identity",  # the predictor takes (N, D) already
    }
    if base is nn.Linear:
        return {"kind": "linear"}, arrays_of("weight", "bias")
    if base is nn.BatchNorm1d:
        assert isinstance(module, nn.BatchNorm1d)
        arrays = arrays_of("running_mean", "running_var", "weight", "bias")
        return {"kind": "batchnorm", "eps": float(module.eps)}, arrays
    if base is nn.LayerNorm:
        assert isinstance(module, nn.LayerNorm)
        return {"kind": "layernorm", "eps": float(module.eps)}, arrays_of("weight", "bias")
    if base is nn.LeakyReLU:
        assert isinstance(module, nn.LeakyReLU)
        return {"kind": "leaky_relu", "negative_slope": float(module.negative_slope)}, {}
    if base is nn.GELU:
        assert isinstance(module, nn.GELU)
        return {"kind": "gelu_tanh" if module.approximate == "tanh" else "gelu"}, {}
    if base is not None and base in simple:
        return {"kind": simple[base]}, {}
    raise HandgradError(f"export: no NumPy form for {type(module).__name__}")


def _layers(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [m for child in model for m in _layers(child)]
    return [model]


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"export: {name} must be one of {', '.join(choices)}, got {value!r}")


def export_numpy(
    model: nn.Module,
    path: PathLike,
    *,
    n_features: int,
    output: str = "identity",
    task: str = "regression",
    classes: Any = None,
    meta: dict[str, Any] | None = None,
    standardize: tuple[Any, Any] | None = None,
) -> Path:
    """Write ``model`` (eval-mode function) as a NumPy predictor ``.npz``; return the path.

    Args:
        n_features: the input width D.
        output: the activation that turns the last layer's output into probabilities
            (``softmax``, ``logistic``) or ``identity``.
        task: ``regression``, ``classification``, ``binary`` or ``multilabel``.
        classes: the labels ``predict`` returns, in output order (numbers or strings).
        meta: JSON-able notes stored in the spec (e.g. what the inputs must be).
        standardize: ``(mean, std)`` (D,) each: the predictor applies ``(x - mean) / std`` to
            its inputs first (a table run's training-split standardization).
    """
    _check_choice("output", output, OUTPUTS)
    _check_choice("task", task, TASKS)
    layers: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    dtype = "float64"
    for i, module in enumerate(_layers(model)):
        spec, layer_arrays = _layer_spec(module)
        spec["arrays"] = sorted(layer_arrays)
        layers.append(spec)
        for name, value in layer_arrays.items():
            arrays[f"l{i}.{name}"] = value
            if value.dtype == np.float32:
                dtype = "float32"
    spec_all = {
        "layers": layers,
        "output": output,
        "task": task,
        "n_features": int(n_features),
        "dtype": dtype,
        "meta": meta or {},
    }
    if standardize is not None:
        mean, std = (np.asarray(v, dtype=np.float64).reshape(-1) for v in standardize)
        if mean.shape != (n_features,) or std.shape != (n_features,):
            raise ValueError(f"export: standardize needs ({n_features},) mean and std")
        arrays["input_mean"], arrays["input_std"] = mean, std
    if classes is not None:
        labels = np.asarray(classes)
        if labels.dtype == object:
            labels = np.asarray([str(c) for c in labels])
        arrays["classes"] = labels
    path = Path(path)
    with open(path, "wb") as f:  # savez would append .npz to a name without it
        contents = {"format": np.array(FORMAT), "spec": np.array(json.dumps(spec_all)), **arrays}
        np.savez(f, **contents)  # type: ignore[arg-type]
    return path


def _with_output(twin: torch.nn.Module, output: str) -> torch.nn.Module:
    if output == "softmax":
        return torch.nn.Sequential(twin, torch.nn.Softmax(dim=1))
    if output == "logistic":
        return torch.nn.Sequential(twin, torch.nn.Sigmoid())
    return twin


class _Standardize(torch.nn.Module):
    """``(x - mean) / std``: a table run's training-split standardization, ahead of the net."""

    def __init__(self, mean: Any, std: Any, dtype: torch.dtype) -> None:
        super().__init__()
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=dtype))  # (D,)
        self.register_buffer("std", torch.as_tensor(np.asarray(std), dtype=dtype))  # (D,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std  # (N, D)


def export_onnx(
    model: nn.Module,
    path: PathLike,
    *,
    n_features: int,
    output: str = "identity",
    standardize: tuple[Any, Any] | None = None,
) -> Path:
    """Write ``model``'s torch twin (eval mode, ``output`` activation appended) as ONNX;
    with ``standardize=(mean, std)`` the graph first computes ``(x - mean) / std``.

    The file is checked with ``onnx.checker.check_model``. Input ``input`` (N, D) of the
    model's dtype, output ``output`` (N, K); N is dynamic.

    Raises:
        HandgradError: onnx or onnxscript is not installed, or the export fails.
    """
    _check_choice("output", output, OUTPUTS)
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError as exc:
        raise HandgradError(
            f"ONNX export needs {exc.name}: pip install 'handgrad[export]'"
        ) from None
    from handgrad.reference import to_torch

    was_training = model.training
    model.eval()
    try:
        twin = _with_output(to_torch(model), output).eval()
    finally:
        model.train(was_training)
    dtype = next(iter(twin.parameters())).dtype
    if standardize is not None:
        twin = torch.nn.Sequential(_Standardize(*standardize, dtype), twin).eval()
    example = torch.zeros(2, n_features, dtype=dtype)
    path = Path(path)
    batch = torch.export.Dim("batch")
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # not the exporter's notes on torchvision ops we never use
    try:
        program = torch.onnx.export(
            twin,
            (example,),
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            verbose=False,
        )
        assert program is not None
        program.save(str(path))
    except Exception as exc:  # the exporter raises many kinds
        raise HandgradError(f"export: torch.onnx.export failed: {exc}") from exc
    finally:
        quiet.setLevel(level)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


# -- fitted scikit-learn estimators ----------------------------------------------------------
def _estimator_outputs(est: Any) -> dict[str, Any]:
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "model_")
    if est.out_activation_ == "identity":
        return {"output": "identity", "task": "regression", "classes": None}
    binarizer = est._label_binarizer
    task = {"multiclass": "classification", "binary": "binary"}.get(binarizer.y_type_, "multilabel")
    return {"output": est.out_activation_, "task": task, "classes": est.classes_}


def export_estimator_numpy(est: Any, path: PathLike) -> Path:
    """``export_numpy`` for a fitted ``handgrad.sklearn`` estimator."""
    info = _estimator_outputs(est)
    return export_numpy(
        est.model_,
        path,
        n_features=est.n_features_in_,
        meta={"estimator": type(est).__name__},
        **info,
    )


def export_estimator_onnx(est: Any, path: PathLike) -> Path:
    """``export_onnx`` for a fitted estimator: outputs ``predict_proba``'s positive-class
    column(s) for a classifier (softmax or sigmoid), ``predict``'s values for a regressor."""
    info = _estimator_outputs(est)
    return export_onnx(est.model_, path, n_features=est.n_features_in_, output=info["output"])


# -- handgrad train runs --------------------------------------------------------------------
def export_run(run_dir: Path, fmt: str, path: PathLike) -> Path:
    """Export a ``handgrad train`` run's model (model.safetensors, else its checkpoint)."""
    from handgrad.train import records as rec
    from handgrad.train.build import model_from_state
    from handgrad.train.config import TrainConfig

    config = TrainConfig.load(run_dir / rec.CONFIG).validate()
    state, source = rec.load_model_state(run_dir)
    model = model_from_state(config, state).to(device="cpu")
    model.eval()
    n_features = nn.parse_sizes(config.model)[0]
    output = "softmax" if config.loss == "cross_entropy" else "identity"
    if config.data_file is not None:  # the user's own table: its standardization goes along
        return _export_table_run(run_dir, config, model, source.name, fmt, path, n_features)
    if fmt == "onnx":
        return export_onnx(model, path, n_features=n_features, output=output)
    if fmt == "numpy":
        n_out = next(m for m in reversed(_layers(model)) if isinstance(m, nn.Linear)).out_features
        return export_numpy(
            model,
            path,
            n_features=n_features,
            output=output,
            task="classification",
            classes=np.arange(n_out),
            meta={
                "run": str(run_dir),
                "weights": source.name,
                "preset": config.preset,
                "model": str(config.model),
                "input": f"the {config.preset} preset's inputs (see handgrad data info)",
            },
        )
    raise ValueError(f"export: format must be onnx or numpy, got {fmt!r}")


def _export_table_run(
    run_dir: Path,
    config: Any,
    model: nn.Module,
    weights: str,
    fmt: str,
    path: PathLike,
    n_features: int,
) -> Path:
    """A ``--data-file`` run: the model takes the raw feature columns (the recorded
    training-split standardization is part of the export); a classifier predicts the
    table's own labels."""
    from handgrad.train.tabular import table_info

    info = table_info(config)
    standardize = (info["mean"], info["std"])
    regression = info["task"] == "regression"
    output = "softmax" if config.loss == "cross_entropy" else "identity"
    if fmt == "onnx":
        return export_onnx(
            model, path, n_features=n_features, output=output, standardize=standardize
        )
    if fmt != "numpy":
        raise ValueError(f"export: format must be onnx or numpy, got {fmt!r}")
    return export_numpy(
        model,
        path,
        n_features=n_features,
        output=output,
        task="regression" if regression else "classification",
        classes=None if regression else info["classes"],
        standardize=standardize,
        meta={
            "run": str(run_dir),
            "weights": weights,
            "data_file": str(config.data_file),
            "model": str(config.model),
            "features": info["feature_names"],
            "target": info["target"],
            "input": "the raw feature columns in this order (standardized inside)",
        },
    )
