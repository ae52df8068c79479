"""What the two estimators share: parameters, the model, the training loops, state.

The network is a ``handgrad.nn`` MLP (Linear, [BatchNorm1d], activation, [Dropout] per hidden
layer, then Linear); its gradients come from its hand-written backward passes and its updates
from ``handgrad.optim``. Nothing here records an autograd graph.

Training follows scikit-learn's ``BaseMultilayerPerceptron`` step for step: Glorot-uniform
initial weights and biases drawn from ``random_state`` in scikit-learn's order (so a seed gives
scikit-learn's initial network), the same minibatches (``batch_size='auto'`` is
``min(200, n)``), the same per-epoch ``loss_curve_``, stopping rule (``tol``,
``n_iter_no_change``, ``early_stopping`` on a held-out ``validation_fraction``) and
``learning_rate`` schedules, and the same L2 penalty: for a minibatch of B samples,

    L = loss + (alpha / 2) · Σ_l ||W_l||² / B,     dL/dW_l += alpha · W_l / B,

on the weight matrices only (biases and BatchNorm's scale and shift are not penalised).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import scipy.optimize
import scipy.sparse
import torch
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils import shuffle as sk_shuffle
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor

from handgrad import nn
from handgrad.optim import SGD, Adam, Optimizer, Schedule, make_schedule
from handgrad.sklearn._heads import Head

# scikit-learn's activation names -> handgrad.nn.mlp's.
ACTIVATIONS = {
    "identity": "none",
    "logistic": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "leaky_relu": "leaky_relu",
}
STOCHASTIC_SOLVERS = ("sgd", "adam", "adamw")
PREDICT_CHUNK = 8192  # rows per forward pass when predicting on sparse input


def _dtype_of(name: object) -> torch.dtype:
    return torch.float32 if name == "float32" else torch.float64


class BaseHandgradMLP(BaseEstimator):
    """Shared by ``MLPClassifier`` and ``MLPRegressor``; not for direct use."""

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "solver": [StrOptions({"lbfgs", "sgd", "adam", "adamw"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "batchnorm": ["boolean"],
        "lr_schedule": [None, StrOptions({"cosine"}), Schedule],
        "dtype": [None, StrOptions({"float32", "float64"})],
        "threads": [None, Interval(Integral, 1, 256, closed="both")],
    }

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        dropout: float = 0.0,
        batchnorm: bool = False,
        lr_schedule: Any = None,
        dtype: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.batchnorm = batchnorm
        self.lr_schedule = lr_schedule
        self.dtype = dtype
        self.threads = threads

    # -- what the subclasses provide ------------------------------------------------------
    def _validate_input(
        self, X: Any, y: Any, incremental: bool, reset: bool
    ) -> tuple[Any, np.ndarray]:
        """Validated X and the targets as a 2-D float array (N, n_outputs)."""
        raise NotImplementedError

    def _make_head(self) -> Head:
        raise NotImplementedError

    def _head_target(self, y: np.ndarray) -> Tensor:
        """The target tensor the head's loss takes, from the 2-D target array."""
        raise NotImplementedError

    def _score(self, X: Any, y: np.ndarray) -> float:
        """Validation score (accuracy or R²) on validated X and original-form y."""
        raise NotImplementedError

    # -- the network ----------------------------------------------------------------------
    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices in scikit-learn's layout: ``coefs_[i]`` is (fan_in, fan_out) = Wᵀ."""
        check_is_fitted(self, "model_")
        return [layer.weight.detach().numpy().T.copy() for layer in self._linears()]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors: ``intercepts_[i]`` is (fan_out,)."""
        check_is_fitted(self, "model_")
        return [layer.bias.detach().numpy().copy() for layer in self._linears()]  # type: ignore[union-attr]

    def _linears(self) -> list[nn.Linear]:
        return [m for m in self.model_ if isinstance(m, nn.Linear)]

    def to_torch(self, probabilities: bool = False) -> torch.nn.Module:
        """The trained network as a ``torch.nn.Sequential`` in eval mode (a copy).

        It outputs the last layer's raw values (logits for the classifier); with
        ``probabilities=True`` a classifier's twin ends with its Softmax or Sigmoid, so it gives
        ``predict_proba``'s columns (for a binary classifier: the probability of ``classes_[1]``).
        """
        from handgrad.reference import to_torch

        check_is_fitted(self, "model_")
        self.model_.eval()
        twin = to_torch(self.model_)
        if probabilities and self.out_activation_ == "softmax":
            twin = torch.nn.Sequential(*twin.children(), torch.nn.Softmax(dim=1))
        elif probabilities and self.out_activation_ == "logistic":
            twin = torch.nn.Sequential(*twin.children(), torch.nn.Sigmoid())
        return twin.eval()

    def export_onnx(self, path: Any) -> Any:
        """Write the network (and a classifier's Softmax/Sigmoid) as ONNX; see handgrad.export."""
        from handgrad.export import export_estimator_onnx

        return export_estimator_onnx(self, path)

    def export_numpy(self, path: Any) -> Any:
        """Write a ``.npz`` that ``handgrad.export.numpy_predictor.load`` runs with NumPy only."""
        from handgrad.export import export_estimator_numpy

        return export_estimator_numpy(self, path)

    def _arch(self) -> dict[str, Any]:
        return dict(self._arch_)

    def _build_model(self, arch: dict[str, Any]) -> nn.Sequential:
        model = nn.mlp(
            arch["sizes"],
            act=ACTIVATIONS[arch["activation"]],
            norm="batchnorm" if arch["batchnorm"] else "none",
            dropout=arch["dropout"],
            dtype=_dtype_of(arch["dtype"]),
        )
        model.flatten_parameters()
        if isinstance(getattr(type(model), "input_grad", None), property):
            model.input_grad = False  # nothing needs dL/dx of the data: skip that product
        return model

    def _initialize(self, n_features: int, n_outputs: int, dtype: str) -> None:
        """A fresh network with scikit-learn's initial weights, and fresh training records."""
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if any(int(h) <= 0 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        sizes = [n_features, *[int(h) for h in hidden], n_outputs]
        self._arch_: dict[str, Any] = {
            "sizes": sizes,
            "activation": self.activation,
            "batchnorm": bool(self.batchnorm),
            "dropout": float(self.dropout),
            "dtype": dtype,
        }
        model = self._build_model(self._arch_)
        factor = 2.0 if self.activation == "logistic" else 6.0
        linears = [m for m in model if isinstance(m, nn.Linear)]
        for layer in linears:  # scikit-learn's _init_coef, in its draw order
            fan_in, fan_out = layer.in_features, layer.out_features
            bound = math.sqrt(factor / (fan_in + fan_out))
            coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = self._random_state.uniform(-bound, bound, fan_out)
            layer.weight.copy_(torch.from_numpy(coef.T.copy()))
            assert layer.bias is not None
            layer.bias.copy_(torch.from_numpy(intercept))
        self.model_ = model
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(sizes)
        self.out_activation_ = self._make_head().name
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_: list[float] = []
        self._no_improvement_count = 0
        self._optimizer: Optimizer | None = None
        if self.early_stopping and self.solver != "lbfgs":
            self.validation_scores_: list[float] | None = []
            self.best_validation_score_: float | None = -np.inf
            self.best_loss_: float | None = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    # -- fitting --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        if self.threads is None:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(int(self.threads))
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _fit(self, X: Any, y: Any, incremental: bool = False) -> BaseHandgradMLP:
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, y2 = self._validate_input(X, y, incremental, reset=first_pass)
        if self.lr_schedule is not None and self.learning_rate != "constant":
            raise ValueError(
                f"lr_schedule={self.lr_schedule!r} and learning_rate={self.learning_rate!r} "
                "both set the learning rate; use one (learning_rate='constant' with lr_schedule)"
            )
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            dtype = self.dtype or ("float32" if X.dtype == np.float32 else "float64")
            self._initialize(X.shape[1], y2.shape[1], dtype)
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y2.shape[1]} outputs, but {type(self).__name__} was fitted with "
                f"{self.n_outputs_}"
            )
        with self._threads(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self._random_state.randint(2**31)) if self.dropout else 0)
            self.model_.train()
            try:
                if self.solver == "lbfgs":
                    self._fit_lbfgs(X, y2)
                else:
                    self._fit_stochastic(X, y, y2, incremental)
            finally:
                self.model_.eval()
        return self

    def _tensor(self, X: Any, rows: np.ndarray | slice | None = None) -> Tensor:
        """Rows of X as a dense tensor of the model's dtype (sparse rows densified)."""
        dtype = _dtype_of(self._arch_["dtype"])
        part = X if rows is None else X[rows]
        if scipy.sparse.issparse(part):
            part = part.toarray()
        array = np.asarray(part)
        if not array.flags.writeable:
            array = array.copy()
        return torch.as_tensor(array).to(dtype)

    def _make_optimizer(self) -> Optimizer:
        params = list(self.model_.parameters())
        lr = float(self.learning_rate_init)
        if self.solver == "sgd":
            return SGD(
                params,
                lr=lr,
                momentum=float(self.momentum),
                nesterov=bool(self.nesterovs_momentum and self.momentum > 0),
            )
        betas = (float(self.beta_1), float(self.beta_2))
        return Adam(params, lr=lr, betas=betas, eps=float(self.epsilon))

    def _penalty(self, batch: int, weights: list[Tensor]) -> float:
        """Add alpha·W/B to each weight's gradient; return (alpha/2)·Σ||W||²/B (0 if alpha=0).

        With solver='adamw' the decay is decoupled instead (``_decay``), and this adds nothing.
        """
        alpha = float(self.alpha)
        if alpha == 0 or self.solver == "adamw":
            return 0.0
        total = 0.0
        for w in weights:
            grad = w.grad
            assert grad is not None
            grad.add_(w, alpha=alpha / batch)
            total += float(torch.dot(w.reshape(-1), w.reshape(-1)))
        return 0.5 * alpha * total / batch

    def _decay(self, lr: float, weights: list[Tensor]) -> None:
        """AdamW's decoupled weight decay on the weights only: W ← W·(1 − lr·alpha)."""
        if self.solver == "adamw" and self.alpha:
            for w in weights:
                w.mul_(1.0 - lr * float(self.alpha))

    def _forward_backward(self, xb: Tensor, target: Tensor, head: Head) -> float:
        """One forward and hand-written backward pass; grads land in each parameter's .grad."""
        z = self.model_(xb)
        loss, grad_z = head.loss_and_grad(z, target)
        self.model_.backward(grad_z)  # the return value (dL/dx) is not needed
        return loss

    def _fit_stochastic(self, X: Any, y_raw: Any, y2: np.ndarray, incremental: bool) -> None:
        if self._optimizer is None or not incremental:
            self._optimizer = self._make_optimizer()
            self._lr = float(self.learning_rate_init)
            self._steps = 0
        opt = self._optimizer
        head = self._make_head()
        weights = [layer.weight for layer in self._linears()]
        early_stopping = self.early_stopping and not incremental
        self._best_state = None
        if early_stopping:
            stratify = y2 if is_classifier(self) and self.n_outputs_ == 1 else None
            X, X_val, y2, y_val2 = train_test_split(
                X,
                y2,
                random_state=self._random_state,
                test_size=self.validation_fraction,
                stratify=stratify,
            )
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the "
                    "size of your dataset."
                )
            y_val = self._validation_target(y_val2)
        else:
            X_val = y_val = None
        if scipy.sparse.issparse(X):
            X = X.tocsr()
            X_all = None
        else:
            X_all = self._tensor(X)
        target_all = self._head_target(y2)
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to "
                    "be clipped",
                    stacklevel=3,
                )
            batch_size = int(np.clip(self.batch_size, 1, n))
        schedule = self._schedule(math.ceil(n / batch_size))
        sample_idx = np.arange(n)
        self.n_iter_ = 0
        try:
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = sk_shuffle(sample_idx, random_state=self._random_state)
                order = torch.from_numpy(sample_idx)
                accumulated = 0.0
                for batch in gen_batches(n, batch_size):
                    rows = order[batch]
                    if X_all is not None:
                        xb = X_all.index_select(0, rows) if self.shuffle else X_all[batch]
                    else:
                        xb = self._tensor(X, sample_idx[batch])
                    tb = target_all.index_select(0, rows) if self.shuffle else target_all[batch]
                    lr = schedule.apply(opt, self._steps) if schedule else self._lr
                    opt.lr = lr
                    opt.zero_grad()
                    b = xb.shape[0]
                    loss = self._forward_backward(xb, tb, head)
                    loss += self._penalty(b, weights)
                    self._decay(lr, weights)
                    opt.step()
                    self._steps += 1
                    accumulated += loss * b
                self.n_iter_ += 1
                self.loss_ = accumulated / n
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(early_stopping, X_val, y_val)
                if self.solver == "sgd" and self.learning_rate == "invscaling" and not schedule:
                    self._lr = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if early_stopping else "Training loss"
                    msg = (
                        f"{what} did not improve more than tol={self.tol:f} for "
                        f"{self.n_iter_no_change} consecutive epochs."
                    )
                    if self._trigger_stopping(msg):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                        "the optimization hasn't converged yet.",
                        ConvergenceWarning,
                        stacklevel=3,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        if early_stopping and self._best_state is not None:
            self.model_.load_state_dict(self._best_state)

    def _validation_target(self, y2: np.ndarray) -> Any:
        return y2

    def _schedule(self, batches_per_epoch: int) -> Schedule | None:
        if self.lr_schedule is None:
            return None
        if isinstance(self.lr_schedule, Schedule):
            return self.lr_schedule
        return make_schedule(
            self.lr_schedule,
            lr=float(self.learning_rate_init),
            total_steps=max(2, self.max_iter * batches_per_epoch),
        )

    def _trigger_stopping(self, msg: str) -> bool:
        """scikit-learn's rule: 'adaptive' SGD divides the rate by 5 until it is below 1e-6."""
        if self.solver == "sgd" and self.learning_rate == "adaptive":
            if self._lr > 1e-6:
                self._lr /= 5.0
                if self.verbose:
                    print(msg + f" Setting learning rate to {self._lr:f}")
                return False
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        if self.verbose:
            print(msg + " Stopping.")
        return True

    def _update_no_improvement_count(self, early_stopping: bool, X_val: Any, y_val: Any) -> None:
        if early_stopping:
            assert self.validation_scores_ is not None and self.best_validation_score_ is not None
            self.model_.eval()
            score = self._score(X_val, y_val)
            self.model_.train()
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_state = {k: v.clone() for k, v in self.model_.state_dict().items()}
        else:
            assert self.best_loss_ is not None
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    _best_state: dict[str, Tensor] | None = None

    def _fit_lbfgs(self, X: Any, y2: np.ndarray) -> None:
        """Full-batch L-BFGS-B (scipy, as scikit-learn) on handgrad's loss and gradient."""
        head = self._make_head()
        params = list(self.model_.parameters())
        weights = [layer.weight for layer in self._linears()]
        x_all, target = self._tensor(X), self._head_target(y2)
        n = x_all.shape[0]
        dtype = params[0].dtype

        def set_params(theta: np.ndarray) -> None:
            flat = torch.from_numpy(theta).to(dtype)
            offset = 0
            for p in params:
                p.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()

        def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            set_params(theta)
            for p in params:
                if p.grad is not None:
                    p.grad.zero_()  # the backward passes accumulate into it
            loss = self._forward_backward(x_all, target, head)
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            loss += self._penalty(n, weights)
            grad = torch.cat([p.grad.reshape(-1) for p in params])  # type: ignore[union-attr]
            return loss, grad.to(torch.float64).numpy()

        losses: list[float] = []
        theta0 = torch.cat([p.reshape(-1) for p in params]).to(torch.float64).numpy()
        result = scipy.optimize.minimize(
            loss_grad,
            theta0,
            method="L-BFGS-B",
            jac=True,
            callback=lambda intermediate_result: losses.append(float(intermediate_result.fun)),
            options={
                "maxfun": self.max_fun,
                "maxiter": self.max_iter,
                "gtol": self.tol,
            },
        )
        set_params(result.x)
        self.n_iter_ = int(result.nit)
        if result.status != 0:
            warnings.warn(
                f"lbfgs failed to converge after {self.n_iter_} iteration(s) (status="
                f"{result.status}): {result.message}. Increase the number of iterations "
                "(max_iter) or scale the data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.loss_ = float(result.fun)
        self.loss_curve_ = losses or [self.loss_]
        self.best_loss_ = min(self.loss_curve_)

    # -- predicting -----------------------------------------------------------------------
    def _forward(self, X: Any) -> np.ndarray:
        """The head's output (probabilities or values) for validated X: (N, n_outputs)."""
        head = self._make_head()
        self.model_.eval()
        outs = []
        with self._threads():
            if scipy.sparse.issparse(X):
                X = X.tocsr()
                chunks = [slice(i, i + PREDICT_CHUNK) for i in range(0, X.shape[0], PREDICT_CHUNK)]
                for rows in chunks:
                    outs.append(head.predict(self.model_(self._tensor(X, rows))))
            else:
                outs.append(head.predict(self.model_(self._tensor(X))))
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        return out.numpy()

    def _forward_checked(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        return self._forward(X)

    # -- pickling: rebuild the model from its state dict (flat buffers do not pickle) ------
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state = dict(state)
        model = state.pop("model_", None)
        if model is not None:
            state["_model_state"] = {k: v.clone() for k, v in model.state_dict().items()}
        opt = state.pop("_optimizer", None)
        state["_optimizer_state"] = opt.state_dict() if opt is not None else None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        model_state = state.pop("_model_state", None)
        opt_state = state.pop("_optimizer_state", None)
        super().__setstate__(state)
        if model_state is not None:
            self.model_ = self._build_model(self._arch_)
            self.model_.load_state_dict(model_state)
            self.model_.eval()
            self._optimizer = None
            if opt_state is not None:
                self._optimizer = self._make_optimizer()
                self._optimizer.load_state_dict(opt_state)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
