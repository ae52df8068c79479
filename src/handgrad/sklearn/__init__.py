"""scikit-learn estimators trained by handgrad: ``MLPClassifier`` and ``MLPRegressor``.

They take scikit-learn's ``MLPClassifier``/``MLPRegressor`` parameters under the same names
and meanings (``hidden_layer_sizes``, ``activation``, ``solver`` ('adam', 'sgd', 'lbfgs', and
handgrad's 'adamw'), ``alpha``, ``batch_size``, ``learning_rate`` ('constant', 'invscaling',
'adaptive', for 'sgd'), ``learning_rate_init``, ``power_t``, ``max_iter``, ``shuffle``,
``random_state``, ``tol``, ``verbose``, ``warm_start``, ``momentum``, ``nesterovs_momentum``,
``early_stopping``, ``validation_fraction``, ``beta_1``, ``beta_2``, ``epsilon``,
``n_iter_no_change``, ``max_fun``), plus handgrad's ``dropout``, ``batchnorm``, ``lr_schedule``,
``dtype`` and ``threads``; they pass scikit-learn's own estimator checks
(``tests/test_sklearn_estimator_checks.py``), so they work in pipelines and ``GridSearchCV``.
Every gradient is one of handgrad's hand-written backward passes; ``model_`` is the
``handgrad.nn`` model, ``to_torch()`` its torch twin, ``export_onnx``/``export_numpy`` write it
out (see ``handgrad.export``).

Needs scikit-learn: ``pip install 'handgrad[sklearn]'``.
"""

from __future__ import annotations

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "handgrad.sklearn needs scikit-learn; install it with pip install 'handgrad[sklearn]'"
    ) from exc

from handgrad.sklearn._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
