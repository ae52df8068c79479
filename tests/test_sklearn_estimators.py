"""handgrad.sklearn against scikit-learn's own MLPs: same updates, same API, same records."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import scipy.sparse
import torch
from sklearn import neural_network as sk
from sklearn.datasets import load_iris, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from handgrad import nn
from handgrad.sklearn import MLPClassifier, MLPRegressor
from tests.train_fixtures import one_thread  # noqa: F401  (one torch thread: tiny nets)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _targets(kind: str) -> tuple[np.ndarray, np.ndarray]:
    X, y = _iris()
    if kind == "multiclass":
        return X, np.array(["setosa", "versicolor", "virginica"])[y]
    if kind == "binary":
        return X, np.where(y == 2, "yes", "no")
    X, Y = make_multilabel_classification(n_samples=120, n_features=6, n_classes=3, random_state=0)
    return StandardScaler().fit_transform(X), Y


SGD_PLAIN = dict(solver="sgd", momentum=0.0, shuffle=False, learning_rate_init=0.05)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("learning_rate", ["constant", "invscaling"])
def test_classifier_takes_scikit_learns_steps(kind: str, learning_rate: str) -> None:
    """Plain SGD from the same seed: the same initial weights, losses, L2 penalty (weights only)
    and updates as scikit-learn, so the same coefs_ and intercepts_ to float64 rounding."""
    X, y = _targets(kind)
    params = dict(
        hidden_layer_sizes=(7, 5),
        activation="tanh",
        alpha=0.3,
        batch_size=32,
        max_iter=6,
        random_state=3,
        learning_rate=learning_rate,
        power_t=0.25,
        **SGD_PLAIN,
    )
    ours = MLPClassifier(**params).fit(X, y)
    ref = sk.MLPClassifier(**params).fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    assert ours.out_activation_ == ref.out_activation_
    assert ours.n_iter_ == ref.n_iter_ == 6


def test_regressor_multi_output_takes_scikit_learns_steps() -> None:
    X, y = make_regression(n_samples=90, n_features=5, n_targets=3, noise=1.0, random_state=1)
    y = y / y.std()
    params = dict(
        hidden_layer_sizes=(6,), alpha=0.2, batch_size=20, max_iter=5, random_state=0, **SGD_PLAIN
    )
    params["learning_rate_init"] = 0.01
    ours = MLPRegressor(**params).fit(X, y)
    ref = sk.MLPRegressor(**params).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-8, atol=1e-10)
    assert ours.predict(X).shape == (90, 3)
    assert ours.predict(X[:, :]).dtype == np.float64


def test_alpha_penalises_weights_not_biases() -> None:
    """One full-batch SGD step: alpha changes each weight by -lr·alpha·W0/n, no bias at all."""
    X, y = _iris()
    n, lr, alpha = len(X), 0.05, 3.0
    params = dict(hidden_layer_sizes=(8,), batch_size=n, max_iter=1, random_state=0, **SGD_PLAIN)
    with_alpha = MLPClassifier(alpha=alpha, **params).fit(X, y)
    without = MLPClassifier(alpha=0.0, **params).fit(X, y)
    start = MLPClassifier(alpha=0.0, **{**params, "learning_rate_init": 1e-300}).fit(X, y)
    for a, b, w0 in zip(with_alpha.coefs_, without.coefs_, start.coefs_, strict=True):
        np.testing.assert_allclose(a - b, -lr * alpha * w0 / n, rtol=1e-9, atol=1e-15)
    for a, b in zip(with_alpha.intercepts_, without.intercepts_, strict=True):
        np.testing.assert_array_equal(a, b)
    gap = with_alpha.loss_curve_[0] - without.loss_curve_[0]
    assert gap == pytest.approx(0.5 * alpha * sum((w**2).sum() for w in start.coefs_) / n)


def test_adam_close_to_scikit_learn_and_learns() -> None:
    """Adam differs from scikit-learn's only in where ε sits (torch's formula)."""
    X, y = _iris()
    ours = MLPClassifier((20,), max_iter=30, random_state=0).fit(X, y)
    ref = sk.MLPClassifier((20,), max_iter=30, random_state=0).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-4)
    long = MLPClassifier((20,), max_iter=500, random_state=0).fit(X, y)
    assert long.score(X, y) > 0.95


def test_lbfgs_matches_scikit_learn() -> None:
    X, y = _iris()
    ours = MLPClassifier((5,), solver="lbfgs", max_iter=15, random_state=0).fit(X, y)
    ref = sk.MLPClassifier((5,), solver="lbfgs", max_iter=15, random_state=0).fit(X, y)
    np.testing.assert_allclose(ours.loss_, ref.loss_, rtol=1e-6)
    assert ours.n_iter_ == ref.n_iter_
    with pytest.raises(AttributeError, match="partial_fit"):
        ours.partial_fit(X, y)


def test_adaptive_learning_rate_divides_by_five() -> None:
    X, y = _iris()
    clf = MLPClassifier(
        (4,),
        solver="sgd",
        learning_rate="adaptive",
        n_iter_no_change=2,
        tol=10.0,
        max_iter=20,
        random_state=0,
    ).fit(X, y)
    ref = sk.MLPClassifier(
        (4,),
        solver="sgd",
        learning_rate="adaptive",
        n_iter_no_change=2,
        tol=10.0,
        max_iter=20,
        random_state=0,
    ).fit(X, y)
    assert clf.n_iter_ == ref.n_iter_ < 20  # stopped once the rate fell below 1e-6


def test_early_stopping_records_and_restores_best() -> None:
    X, y = _iris()
    clf = MLPClassifier(
        (10,),
        early_stopping=True,
        n_iter_no_change=3,
        max_iter=200,
        learning_rate_init=0.05,
        random_state=0,
    ).fit(X, y)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.n_iter_ < 200
    plain = MLPClassifier((10,), max_iter=5, random_state=0).fit(X, y)
    assert plain.validation_scores_ is None and plain.best_loss_ == min(plain.loss_curve_)


def test_grid_search_and_pipeline() -> None:
    """GridSearchCV over a pipeline ending in the handgrad estimator gives scikit-learn's
    MLP's cross-validation scores (to Adam's ε placement) and picks a working model."""
    X, y = load_iris(return_X_y=True)
    grid_of = {"mlp__hidden_layer_sizes": [(3,), (16,)], "mlp__alpha": [1e-4, 1e-1]}
    results = []
    for mlp in (MLPClassifier, sk.MLPClassifier):
        pipe = Pipeline(
            [
                ("scale", StandardScaler()),
                ("mlp", mlp(max_iter=200, learning_rate_init=0.01, random_state=0)),
            ]
        )
        grid = GridSearchCV(pipe, grid_of, cv=3).fit(X, y)
        results.append(grid)
    ours, ref = results
    assert len(ours.cv_results_["mean_test_score"]) == 4
    np.testing.assert_allclose(
        ours.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"], atol=0.02
    )
    assert ours.best_score_ > 0.9 and ours.score(X, y) > 0.95
    assert isinstance(ours.best_estimator_[-1], MLPClassifier)


def test_multilabel_indicator_and_label_types() -> None:
    X, Y = _targets("multilabel")
    clf = MLPClassifier((12,), max_iter=300, random_state=0).fit(X, Y)
    assert clf.predict(X).shape == Y.shape and set(np.unique(clf.predict(X))) <= {0, 1}
    proba = clf.predict_proba(X)
    assert proba.shape == Y.shape and ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_array_equal(clf.predict(X), (proba > 0.5).astype(int))
    X2, y2 = _targets("binary")
    binary = MLPClassifier((5,), max_iter=50, random_state=0).fit(X2, y2)
    assert list(binary.classes_) == ["no", "yes"] and binary.coefs_[-1].shape == (5, 1)
    p = binary.predict_proba(X2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(binary.predict_log_proba(X2), np.log(p))


def test_layout_model_and_torch_twin() -> None:
    X, y = _targets("multiclass")
    clf = MLPClassifier((9, 4), max_iter=40, random_state=0).fit(X, y)
    assert [c.shape for c in clf.coefs_] == [(4, 9), (9, 4), (4, 3)]
    assert [b.shape for b in clf.intercepts_] == [(9,), (4,), (3,)]
    assert isinstance(clf.model_, nn.Sequential)
    np.testing.assert_array_equal(clf.coefs_[0], clf.model_[0].weight.numpy().T)
    twin = clf.to_torch(probabilities=True)
    with torch.no_grad():
        proba = twin(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-10, atol=1e-12)


def test_sparse_input_equals_dense() -> None:
    X, y = _targets("multiclass")
    X = np.where(np.abs(X) < 0.5, 0.0, X)
    dense = MLPClassifier((6,), max_iter=10, random_state=0).fit(X, y)
    sparse = MLPClassifier((6,), max_iter=10, random_state=0).fit(scipy.sparse.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.loss_curve_, dense.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(
        sparse.predict_proba(scipy.sparse.csc_matrix(X)), dense.predict_proba(X), rtol=1e-12
    )


def test_pickle_partial_fit_and_warm_start() -> None:
    X, y = _targets("multiclass")
    clf = MLPClassifier((6,), solver="sgd", random_state=0)
    for _ in range(3):
        clf.partial_fit(X, y, classes=np.unique(y))
    assert len(clf.loss_curve_) == 3 and clf.loss_curve_[2] < clf.loss_curve_[0]
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    copy.partial_fit(X, y)
    clf.partial_fit(X, y)  # the optimizer's momentum survived the pickle
    np.testing.assert_allclose(copy.predict_proba(X), clf.predict_proba(X), rtol=1e-12)
    warm = MLPClassifier((6,), max_iter=5, warm_start=True, random_state=0).fit(X, y)
    first = warm.coefs_[0].copy()
    warm.fit(X, y)
    assert len(warm.loss_curve_) == 10 and not np.allclose(first, warm.coefs_[0])
    with pytest.raises(ValueError, match="classes"):
        warm.fit(X[:100], np.where(y[:100] == "setosa", "a", "b"))


def test_handgrad_extras_float32_dropout_batchnorm_schedule() -> None:
    X, y = _iris()
    clf = MLPClassifier(
        (16,),
        dtype="float32",
        dropout=0.1,
        batchnorm=True,
        lr_schedule="cosine",
        solver="adamw",
        alpha=0.01,
        threads=1,
        max_iter=150,
        learning_rate_init=0.01,
        random_state=0,
    ).fit(X, y)
    assert clf.model_[0].weight.dtype == torch.float32
    assert any(isinstance(m, nn.BatchNorm1d) for m in clf.model_)
    assert any(isinstance(m, nn.Dropout) for m in clf.model_)
    assert clf.predict_proba(X).dtype == np.float32
    assert clf.score(X, y) > 0.9
    again = MLPClassifier(**clf.get_params()).fit(X, y)  # seeded dropout: the same run
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"solver": "newton"}, r"The 'solver' parameter of MLPClassifier must be a str among"),
        ({"learning_rate": "fancy"}, r"The 'learning_rate' parameter of MLPClassifier"),
        ({"dtype": "float16"}, r"The 'dtype' parameter of MLPClassifier"),
        ({"dropout": 1.0}, r"The 'dropout' parameter of MLPClassifier"),
    ],
)
def test_bad_parameters_refused_scikit_learn_style(params: dict, message: str) -> None:
    X, y = _iris()
    with pytest.raises(InvalidParameterError, match=message):
        MLPClassifier(**params).fit(X, y)


def test_lr_schedule_and_learning_rate_conflict() -> None:
    X, y = _iris()
    with pytest.raises(ValueError, match="both set the learning rate"):
        MLPClassifier(solver="sgd", learning_rate="invscaling", lr_schedule="cosine").fit(X, y)


def test_convergence_warning_like_scikit_learn() -> None:
    X, y = _iris()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier((3,), max_iter=2, random_state=0).fit(X, y)
    assert any(
        issubclass(w.category, ConvergenceWarning) and "Maximum iterations (2)" in str(w.message)
        for w in caught
    )
