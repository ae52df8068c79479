"""Run a handgrad network exported to ``.npz`` with NumPy alone (no torch, no handgrad).

This file imports only numpy and the standard library: copy it next to the ``.npz`` and::

    import numpy_predictor
    model = numpy_predictor.load("model.npz")
    model.predict(X)          # labels (classifier) or values (regressor), X (N, D)
    model.predict_proba(X)    # class probabilities (N, C) for a classifier
    model.forward(X)          # the network's last-layer output (N, K), before any softmax

The ``.npz`` (written by ``handgrad.export.export_numpy``) holds ``format``, a JSON ``spec``
(the layers in order, the output activation, the task) and the arrays ``l{i}.{name}``. It is
read with ``allow_pickle=False``: loading it never runs code. An export of a table run also
holds ``input_mean`` and ``input_std`` (D,): ``forward`` first computes ``(x − mean) / std``.

Layers and their formulas (x is (N, D_in)):
    linear       y = x Wᵀ + b            (W (D_out, D_in), b (D_out,))
    batchnorm    y = (x − μ)/√(σ² + ε)·γ + β   (running statistics: eval mode)
    layernorm    y = (x − mean_row)/√(var_row + ε)·γ + β
    relu, leaky_relu, tanh, sigmoid, gelu, gelu_tanh, identity: elementwise
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "handgrad-numpy-predictor/1"
MAX_SPEC_CHARS = 1_000_000


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


_erf = np.vectorize(math.erf, otypes=[float])


def _apply(layer: dict[str, Any], arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    kind = layer["kind"]
    if kind == "linear":
        y = x @ arrays["weight"].T
        return y + arrays["bias"] if "bias" in arrays else y
    if kind == "batchnorm":
        y = (x - arrays["running_mean"]) / np.sqrt(arrays["running_var"] + layer["eps"])
        return y * arrays["weight"] + arrays["bias"] if "weight" in arrays else y
    if kind == "layernorm":
        mean = x.mean(axis=1, keepdims=True)
        var = x.var(axis=1, keepdims=True)
        y = (x - mean) / np.sqrt(var + layer["eps"])
        if "weight" in arrays:
            y = y * arrays["weight"]
        return y + arrays["bias"] if "bias" in arrays else y
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "leaky_relu":
        return np.where(x >= 0, x, x * layer["negative_slope"])
    if kind == "tanh":
        return np.tanh(x)
    if kind == "sigmoid":
        return _sigmoid(x)
    if kind == "gelu":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(x.dtype))
    if kind == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if kind == "softmax":
        return _softmax(x)
    if kind == "log_softmax":
        z = x - x.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    if kind == "identity":
        return x
    raise ValueError(f"numpy_predictor: unknown layer kind {kind!r}")


class Predictor:
    """A loaded network: ``forward``, ``predict`` and (classifiers) ``predict_proba``.

    Attributes:
        spec: the JSON description from the file (layers, ``output``, ``task``, ``classes``).
        n_features: the input width D.
        classes: the labels ``predict`` returns (classifiers), or None.
    """

    def __init__(self, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.layers = spec["layers"]
        self._arrays = [
            {name: arrays[f"l{i}.{name}"] for name in layer.get("arrays", [])}
            for i, layer in enumerate(self.layers)
        ]
        self.n_features = int(spec["n_features"])
        self.dtype = np.dtype(spec.get("dtype", "float64"))
        self.classes = arrays.get("classes")
        # A table run's training-split standardization, applied to the inputs first.
        self.input_mean = arrays.get("input_mean")
        self.input_std = arrays.get("input_std")

    def forward(self, X: Any) -> np.ndarray:
        """The last layer's output (N, K): logits for a classifier, values for a regressor."""
        x = np.asarray(X, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"numpy_predictor: expected X of shape (N, {self.n_features}), got {x.shape}"
            )
        if self.input_mean is not None and self.input_std is not None:
            x = ((x - self.input_mean) / self.input_std).astype(self.dtype)
        for layer, arrays in zip(self.layers, self._arrays, strict=True):
            x = _apply(layer, arrays, x)
        return x

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities (N, C) in the order of ``classes`` (two columns for a binary one)."""
        output = self.spec["output"]
        z = self.forward(X)
        if output == "softmax":
            return _softmax(z)
        if output == "logistic":
            p = _sigmoid(z)
            if self.spec.get("task") == "binary":
                return np.hstack([1 - p, p])
            return p
        raise ValueError(f"numpy_predictor: a model with {output!r} output has no probabilities")

    def predict(self, X: Any) -> np.ndarray:
        """Labels (classifiers; an indicator matrix for multi-label) or values (regressors)."""
        task = self.spec.get("task", "regression")
        if task == "regression":
            z = self.forward(X)
            return z.ravel() if z.shape[1] == 1 else z
        if task == "multilabel":
            return (self.predict_proba(X) > 0.5).astype(int)
        scores = self.forward(X) if self.spec["output"] != "logistic" else self.predict_proba(X)
        index = scores.argmax(axis=1)
        return self.classes[index] if self.classes is not None else index


def load(path: str | Path) -> Predictor:
    """Read a ``.npz`` written by handgrad's ``export_numpy`` (never unpickles anything).

    Raises:
        ValueError: the file is not such an export, or names an unknown layer.
    """
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    fmt = str(arrays.get("format", ""))
    if fmt != FORMAT:
        raise ValueError(f"{path}: not a handgrad NumPy export (format {fmt!r}, expected {FORMAT})")
    text = str(arrays["spec"])
    if len(text) > MAX_SPEC_CHARS:
        raise ValueError(f"{path}: spec longer than {MAX_SPEC_CHARS} characters")
    return Predictor(json.loads(text), arrays)
