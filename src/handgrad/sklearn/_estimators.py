"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's MLPs, trained by handgrad."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
from torch import Tensor

from handgrad.sklearn._base import STOCHASTIC_SOLVERS, BaseHandgradMLP, _dtype_of
from handgrad.sklearn._heads import Head, IdentityHead, LogisticHead, SoftmaxHead


def _check_solver(est: BaseHandgradMLP) -> bool:
    if est.solver not in STOCHASTIC_SOLVERS:
        raise AttributeError(
            f"partial_fit is only available for stochastic optimizers. {est.solver} is not "
            "stochastic."
        )
    return True


class MLPClassifier(ClassifierMixin, BaseHandgradMLP):
    """A multi-layer perceptron classifier with scikit-learn's API, trained by handgrad.

    The parameters mean what they mean in ``sklearn.neural_network.MLPClassifier`` (see the
    module ``handgrad.sklearn``), plus handgrad's own: ``solver='adamw'`` (``alpha`` is then
    AdamW's decoupled decay, on the weights only), ``dropout`` (after each hidden activation),
    ``batchnorm`` (BatchNorm1d after each hidden Linear), ``lr_schedule`` (``'cosine'`` over
    all the steps, or a ``handgrad.optim`` schedule), ``dtype`` (``'float32'``/``'float64'``;
    default: the input's, as scikit-learn) and ``threads`` (torch threads while fitting and
    predicting; default: leave torch's setting).

    Targets: any labels (binary and multiclass: one column per class with softmax, or one
    logistic output for two classes, as scikit-learn) or a multi-label indicator matrix
    (one logistic output per label).

    Attributes (after ``fit``): ``classes_``, ``loss_``, ``loss_curve_``, ``best_loss_``,
    ``validation_scores_``, ``best_validation_score_``, ``n_iter_``, ``t_``,
    ``n_features_in_``, ``n_outputs_``, ``n_layers_``, ``out_activation_``, ``coefs_`` /
    ``intercepts_`` (scikit-learn's layout: ``coefs_[i]`` is (fan_in, fan_out)), and
    ``model_``, the ``handgrad.nn.Sequential`` being trained (its output is the logits).

    Example:
        >>> clf = MLPClassifier(hidden_layer_sizes=(50,), random_state=0).fit(X, y)
        >>> clf.predict_proba(X[:3]).shape
        (3, n_classes)
    """

    def _validate_input(
        self, X: Any, y: Any, incremental: bool, reset: bool
    ) -> tuple[Any, np.ndarray]:
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {classes}."
                )
        y2 = self._label_binarizer.transform(y)
        return X, np.asarray(y2).astype(np.int8)

    def _make_head(self) -> Head:
        if self._label_binarizer.y_type_ == "multiclass":
            return SoftmaxHead()
        return LogisticHead()

    def _head_target(self, y2: np.ndarray) -> Tensor:
        if self._label_binarizer.y_type_ == "multiclass":
            return torch.tensor(y2.argmax(axis=1), dtype=torch.int64)  # (N,)
        return torch.tensor(y2, dtype=_dtype_of(self._arch_["dtype"]))  # (N, K)

    def _validation_target(self, y2: np.ndarray) -> Any:
        return self._label_binarizer.inverse_transform(y2)

    def _score(self, X: Any, y: Any) -> float:
        y_pred = self._predict(X)
        return float(accuracy_score(y, y_pred))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Fit the model to X (n_samples, n_features) and labels y (n_samples,) or an
        indicator matrix (n_samples, n_labels). Returns self."""
        self._fit(X, y, incremental=False)
        return self

    @available_if(_check_solver)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over X, y; ``classes`` (every label) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        self._fit(X, y, incremental=True)
        return self

    def _predict(self, X: Any) -> np.ndarray:
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return np.asarray(self._label_binarizer.inverse_transform(y_pred))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (n_samples,), or an indicator matrix for multi-label targets."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        return self._predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes) in the order of ``classes_``."""
        y_pred = self._forward_checked(X)
        if self.n_outputs_ == 1:
            p = y_pred.ravel()
            return np.vstack([1 - p, p]).T
        return y_pred

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseHandgradMLP):
    """A multi-layer perceptron regressor with scikit-learn's API, trained by handgrad.

    Parameters and attributes as in :class:`MLPClassifier` (no ``classes_``); the loss is
    scikit-learn's half squared error and y may have several columns (multi-output).
    ``predict`` returns (n_samples,) for a single output, else (n_samples, n_outputs).
    """

    def _validate_input(
        self, X: Any, y: Any, incremental: bool, reset: bool
    ) -> tuple[Any, np.ndarray]:
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        return X, np.asarray(y2, dtype=np.float64)

    def _make_head(self) -> Head:
        return IdentityHead()

    def _head_target(self, y2: np.ndarray) -> Tensor:
        return torch.tensor(y2, dtype=_dtype_of(self._arch_["dtype"]))

    def _score(self, X: Any, y: Any) -> float:
        y_pred = self._predict(X)
        if not np.isfinite(y_pred).all():
            return float("nan")
        return float(r2_score(y, y_pred.reshape(np.shape(y))))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Fit the model to X (n_samples, n_features) and y (n_samples,) or (n_samples,
        n_outputs). Returns self."""
        self._fit(X, y, incremental=False)
        return self

    @available_if(_check_solver)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over X, y."""
        self._fit(X, y, incremental=True)
        return self

    def _predict(self, X: Any) -> np.ndarray:
        y_pred = self._forward(X)
        return y_pred.ravel() if self.n_outputs_ == 1 else y_pred

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        return self._predict(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
