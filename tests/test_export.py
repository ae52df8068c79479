"""Export to ONNX (checked, run with onnxruntime) and to a NumPy-only predictor."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from handgrad.cli.main import main
from handgrad.export import export_numpy, numpy_predictor
from tests.train_fixtures import one_thread  # noqa: F401

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_iris, make_multilabel_classification  # noqa: E402

from handgrad.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
PREDICTOR = Path(numpy_predictor.__file__)


def _iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


@functools.cache
def _fitted() -> dict[str, tuple[object, np.ndarray]]:
    X, y = _iris()
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    XM, YM = make_multilabel_classification(n_samples=80, n_features=4, n_classes=3, random_state=0)
    common = dict(max_iter=30, random_state=0)
    return {
        "multiclass-batchnorm": (
            MLPClassifier((8, 6), batchnorm=True, activation="tanh", **common).fit(X, labels),
            X,
        ),
        "binary-float32": (
            MLPClassifier((5,), dtype="float32", activation="logistic", **common).fit(X, y == 1),
            X,
        ),
        "multilabel": (MLPClassifier((7,), **common).fit(XM, YM), XM),
        "regressor-2-outputs": (
            MLPRegressor((6,), activation="relu", **common).fit(X, np.c_[X[:, 0] * 2, X[:, 1]]),
            X,
        ),
    }


@pytest.mark.parametrize(
    "name", ["multiclass-batchnorm", "binary-float32", "multilabel", "regressor-2-outputs"]
)
def test_numpy_predictor_matches_the_estimator(name: str, tmp_path: Path) -> None:
    est, X = _fitted()[name]
    path = est.export_numpy(tmp_path / "model.npz")  # type: ignore[attr-defined]
    model = numpy_predictor.load(path)
    tol = 1e-5 if "float32" in name else 1e-12
    if isinstance(est, MLPClassifier):
        np.testing.assert_allclose(model.predict_proba(X), est.predict_proba(X), rtol=tol, atol=tol)
        np.testing.assert_array_equal(model.predict(X), est.predict(X))
    else:
        np.testing.assert_allclose(model.predict(X), est.predict(X), rtol=tol, atol=tol)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"expected X of shape \(N, 4\)"):
        model.predict(X[:, :3])


def test_numpy_predictor_runs_without_torch(tmp_path: Path) -> None:
    """The copied predictor file and .npz run in a Python where importing torch fails."""
    est, X = _fitted()["multiclass-batchnorm"]
    est.export_numpy(tmp_path / "model.npz")  # type: ignore[attr-defined]
    shutil.copy(PREDICTOR, tmp_path / "numpy_predictor.py")
    np.save(tmp_path / "x.npy", X)
    script = (
        "import sys, json\n"
        "sys.path.insert(0, '.')\n"
        "sys.modules['torch'] = None\n"  # `import torch` now raises ImportError
        "sys.modules['handgrad'] = None\n"
        "try:\n    import torch\nexcept ImportError:\n    pass\n"
        "else:\n    raise SystemExit('torch importable')\n"
        "import numpy as np, numpy_predictor\n"
        "m = numpy_predictor.load('model.npz')\n"
        "x = np.load('x.npy')\n"
        "print(json.dumps({'labels': m.predict(x).tolist(), 'p': m.predict_proba(x).tolist(),"
        " 'torch': 'torch' in sys.modules and sys.modules['torch'] is not None}))\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            script.replace("'model.npz'", repr(str(tmp_path / "model.npz"))).replace(
                "'x.npy'", repr(str(tmp_path / "x.npy"))
            ),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["torch"] is False
    assert result["labels"] == est.predict(X).tolist()  # type: ignore[attr-defined]
    np.testing.assert_allclose(result["p"], est.predict_proba(X), rtol=1e-12, atol=1e-14)  # type: ignore[attr-defined]


def test_numpy_export_refuses_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "other.npz"
    np.savez(bad, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a handgrad NumPy export"):
        numpy_predictor.load(bad)
    with pytest.raises(ValueError, match="output must be one of"):
        export_numpy(torch.nn.Module(), tmp_path / "x.npz", n_features=3, output="tanh")  # type: ignore[arg-type]


def test_onnx_export_of_an_estimator_runs_in_onnxruntime(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    est, X = _fitted()["multiclass-batchnorm"]
    path = est.export_onnx(tmp_path / "model.onnx")  # type: ignore[attr-defined]
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (proba,) = session.run(None, {"input": X})  # the whole batch: N is dynamic
    np.testing.assert_allclose(proba, est.predict_proba(X), rtol=1e-9, atol=1e-12)  # type: ignore[attr-defined]
    (few,) = session.run(None, {"input": X[:3]})
    assert few.shape == (3, 3)


def test_cli_export_of_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`handgrad export RUN` in both formats: the same probabilities as the run's model."""
    from handgrad.train import records as rec
    from handgrad.train.build import load_data, model_from_state
    from handgrad.train.config import TrainConfig

    out = tmp_path / "runs"
    fast = ["--model", "784-16-10", "--epochs", "1", "--batch-size", "100", "--quiet"]
    assert main(["train", "--out", str(out), "--no-plots", *fast]) == 0
    (run,) = sorted(p for p in out.iterdir() if p.is_dir())
    config = TrainConfig.load(run / rec.CONFIG).validate()
    model = model_from_state(config, rec.load_model_state(run)[0]).eval()
    x = load_data(config).x_test[:50]
    expected = torch.softmax(model(x), dim=1).numpy()

    assert main(["export", str(run), "--format", "numpy"]) == 0
    assert "model.npz" in capsys.readouterr().out
    predictor = numpy_predictor.load(run / "model.npz")
    np.testing.assert_allclose(predictor.predict_proba(x.numpy()), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(predictor.predict(x.numpy()), expected.argmax(1))

    if all(importable(m) for m in ("onnx", "onnxruntime", "onnxscript")):
        import onnxruntime as ort

        target = tmp_path / "digits.onnx"
        assert main(["export", str(run), "--format", "onnx", "--output", str(target)]) == 0
        session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        (proba,) = session.run(None, {"input": x.numpy()})
        np.testing.assert_allclose(proba, expected, rtol=1e-5, atol=1e-6)

    assert main(["export", str(run), "--format", "tflite"]) == 2
    assert "invalid choice 'tflite'" in capsys.readouterr().err
    assert main(["export", str(run), "--format", "numpy", "-o", str(tmp_path / "no/dir.npz")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "--format", "numpy"]) == 2


def importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True
