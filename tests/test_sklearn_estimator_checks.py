"""scikit-learn's own estimator test suite, run on both handgrad estimators."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks

from handgrad.sklearn import MLPClassifier, MLPRegressor
from tests.train_fixtures import one_thread  # noqa: F401  (one torch thread: tiny nets)

# Every check runs; a check that cannot apply would be listed here with its reason.
EXPECTED_FAILED: dict[str, dict[str, str]] = {"MLPClassifier": {}, "MLPRegressor": {}}


def expected_failed_checks(estimator: object) -> dict[str, str]:
    return EXPECTED_FAILED[type(estimator).__name__]


@parametrize_with_checks(
    [MLPClassifier(random_state=0), MLPRegressor(random_state=0)],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator: object, check: object) -> None:
    check(estimator)  # type: ignore[operator]
