"""handgrad.sklearn.MLPClassifier against scikit-learn's MLPClassifier: accuracy and fit time.

The same estimator parameters for both (hidden_layer_sizes, activation='relu', solver='adam',
alpha, batch_size, learning_rate_init, max_iter) with the stopping rule switched off
(``n_iter_no_change`` above ``max_iter``), so both run exactly ``max_iter`` epochs; both draw
their initial weights from ``random_state`` the same way (Glorot uniform, scikit-learn's draw
order). Five seeds per dataset; each seed fits handgrad then scikit-learn, or the other way
round (the order flips every seed), in this one process, one thread for torch and for NumPy's
BLAS (threadpoolctl).

Data: scikit-learn's digits, iris, wine and breast cancer (standardized on a stratified 75/25
split drawn from the seed), float64, scikit-learn's default dtype, which handgrad follows;
and MNIST from ``../shared/data/mnist`` through ``handgrad.data`` (the official 60,000 / 10,000
split, pixels / 255), float32 for both (scikit-learn keeps float32 input in float32), with
``--mnist-epochs`` epochs (default 10, fewer than the estimators' default 200: the
fit-time ratio is per epoch and the accuracy is already ~97-98%).

    python bench/sklearn_compare.py                 # writes bench/results/sklearn_compare.md
    python bench/sklearn_compare.py --quick         # 2 seeds, 2 MNIST epochs, a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLP
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info

from handgrad.data import load_preset
from handgrad.sklearn import MLPClassifier as HgMLP

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def small_set(loader: Callable[..., Any]) -> Callable[[int], Data]:
    def load(seed: int) -> Data:
        X, y = loader(return_X_y=True)
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=0.25, stratify=y, random_state=seed
        )
        scaler = StandardScaler().fit(X_tr)
        return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te

    return load


def mnist(data_dir: Path) -> Callable[[int], Data]:
    cache: dict[str, Data] = {}

    def load(seed: int) -> Data:
        if not cache:
            ds = load_preset("mnist", data_dir=data_dir, dtype=torch.float32, download=False)
            cache["d"] = (
                ds.x_train.numpy(),
                ds.x_test.numpy(),
                ds.labels_train.numpy(),
                ds.labels_test.numpy(),
            )
        return cache["d"]

    return load


def fit_once(kind: str, params: dict[str, Any], data: Data) -> tuple[float, float, float]:
    """(test accuracy, wall-clock fit seconds, CPU seconds of this process during the fit)."""
    X_tr, X_te, y_tr, y_te = data
    est = (HgMLP if kind == "handgrad" else SkMLP)(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start, cpu = time.perf_counter(), time.process_time()
        est.fit(X_tr, y_tr)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert est.n_iter_ == params["max_iter"], (kind, est.n_iter_)
    return float(est.score(X_te, y_te)), seconds, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--mnist-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=200, help="max_iter on the small sets")
    parser.add_argument("--mnist", type=Path, default=SHARED_MNIST, help="MNIST folder")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "sklearn_compare.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.mnist_epochs, args.epochs = 2, 2, 50
    torch.set_num_threads(1)
    common = dict(
        hidden_layer_sizes=(100,),
        activation="relu",
        solver="adam",
        alpha=1e-4,
        batch_size=200,
        learning_rate_init=1e-3,
    )
    sets: list[tuple[str, Callable[[int], Data], int, str]] = [
        ("iris", small_set(datasets.load_iris), args.epochs, "float64"),
        ("wine", small_set(datasets.load_wine), args.epochs, "float64"),
        ("breast cancer", small_set(datasets.load_breast_cancer), args.epochs, "float64"),
        ("digits", small_set(datasets.load_digits), args.epochs, "float64"),
    ]
    if args.mnist.is_dir():
        sets.append(("MNIST", mnist(args.mnist), args.mnist_epochs, "float32"))
    else:
        print(f"no MNIST at {args.mnist}; skipping it", file=sys.stderr)
    # warm-up: numba compiles handgrad's Adam loop once per dtype
    warm = small_set(datasets.load_iris)(0)
    for dt in (np.float64, np.float32):
        d = tuple(a.astype(dt) if a.dtype.kind == "f" else a for a in warm)
        fit_once("handgrad", {**common, "max_iter": 2, "n_iter_no_change": 3}, d)  # type: ignore[arg-type]

    rows = []
    with threadpool_limits(limits=1):
        for name, load, epochs, _dtype in sets:
            results: dict[str, list[tuple[float, float, float]]] = {"handgrad": [], "sklearn": []}
            for seed in range(args.seeds):
                data = load(seed)
                params = {
                    **common,
                    "max_iter": epochs,
                    "n_iter_no_change": epochs + 1,
                    "random_state": seed,
                }
                order = ("handgrad", "sklearn") if seed % 2 == 0 else ("sklearn", "handgrad")
                for kind in order:
                    results[kind].append(fit_once(kind, params, data))
                print(
                    f"{name} seed {seed}: "
                    + ", ".join(
                        f"{k} {r[-1][0]:.4f} in {r[-1][1]:.2f}s" for k, r in results.items()
                    ),
                    flush=True,
                )
            n_train = len(load(0)[0])
            row = {"set": name, "n_train": n_train, "epochs": epochs}
            for kind, res in results.items():
                acc = [a for a, _, _ in res]
                secs = [s for _, s, _ in res]
                row[kind] = (statistics.mean(acc), statistics.pstdev(acc), statistics.median(secs))
            pairs = list(zip(results["handgrad"], results["sklearn"], strict=True))
            row["ratio"] = statistics.median(sk[1] / hg[1] for hg, sk in pairs)
            row["cpu_ratio"] = statistics.median(sk[2] / hg[2] for hg, sk in pairs)
            row["dtype"] = _dtype
            rows.append(row)
    info = machine_info(threads=[1])
    lines = [
        "# handgrad.sklearn.MLPClassifier vs sklearn.neural_network.MLPClassifier",
        "",
        f"`python bench/sklearn_compare.py` ({args.seeds} seeds; {info['date']}; "
        f"{info['cpu']}, torch {info['torch']}, numpy {info['numpy']}, scikit-learn "
        f"{__import__('sklearn').__version__}; one thread each; load average at start "
        f"{info['load_average_start'][0]:.1f} on {info['cores']} cores, shared).",
        "",
        "Both: hidden (100,), relu, adam, lr 1e-3, alpha 1e-4, batch 200, exactly `epochs` "
        "epochs (no early stop), same Glorot init from the seed. Accuracy on the held-out "
        "test split, mean ± std over seeds; fit time median over seeds; speed-up = median of "
        "per-seed sklearn/handgrad fit-time ratios (interleaved); CPU speed-up = the same "
        "with the process's CPU time, steadier than wall time on a shared machine.",
        "",
        "| data | train rows | epochs | dtype (both) | handgrad accuracy | sklearn accuracy "
        "| handgrad fit | sklearn fit | speed-up | CPU speed-up |",
        "| --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        hg, sk = r["handgrad"], r["sklearn"]
        lines.append(
            f"| {r['set']} | {r['n_train']:,} | {r['epochs']} | {r['dtype']} | "
            f"{hg[0]:.4f} ± {hg[1]:.4f} | {sk[0]:.4f} ± {sk[1]:.4f} | {hg[2]:.2f} s | "
            f"{sk[2]:.2f} s | {r['ratio']:.2f}x | {r['cpu_ratio']:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
