"""The output layer's activation and loss of each estimator, with the gradient written out.

A *head* turns the network's last Linear output ``z`` (N, K) into predictions and gives the
training loss and dL/dz, the gradient that ``model.backward`` pulls through the network. They
are the canonical (loss, link) pairs scikit-learn's MLPs use, so dL/dz is ``(act(z) - y) / N``
in all three, exactly the ``deltas[last]`` of scikit-learn's ``_backprop``:

- ``softmax`` (multiclass): L = -(1/N) Σ_n log softmax(z_n)[t_n]
- ``logistic`` (binary, multi-label): L = (1/N) Σ_n Σ_k softplus(z_nk) - y_nk·z_nk
  (= -(1/N) Σ y log σ(z) + (1-y) log(1-σ(z)), scikit-learn's ``binary_log_loss``)
- ``identity`` (regression): L = (1/2) mean_{n,k} (z_nk - y_nk)², the loss scikit-learn reports;
  its gradient is scikit-learn's (z - y) / N, which is K·dL/dz for K outputs, as there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from handgrad.nn import CrossEntropyLoss


class Head:
    """Base: ``loss_and_grad(z, target) -> (L, dL/dz)`` and ``predict(z)``."""

    name = ""  # scikit-learn's out_activation_

    def loss_and_grad(self, z: Tensor, target: Tensor) -> tuple[float, Tensor]:
        raise NotImplementedError

    def predict(self, z: Tensor) -> Tensor:
        """Probabilities (classifiers) or values (regressor), shaped like ``z``."""
        raise NotImplementedError


class SoftmaxHead(Head):
    """Softmax + cross-entropy; target: int64 class indices (N,)."""

    name = "softmax"

    def __init__(self) -> None:
        self._loss = CrossEntropyLoss()

    def loss_and_grad(self, z: Tensor, target: Tensor) -> tuple[float, Tensor]:
        value = float(self._loss(z, target))
        return value, self._loss.backward()  # (softmax(z) - onehot(t)) / N

    def predict(self, z: Tensor) -> Tensor:
        return torch.softmax(z, dim=1)


class LogisticHead(Head):
    """Sigmoid + binary cross-entropy per output; target: 0/1 floats (N, K)."""

    name = "logistic"

    def loss_and_grad(self, z: Tensor, target: Tensor) -> tuple[float, Tensor]:
        n = z.shape[0]
        # softplus(z) - y·z = -[y log σ(z) + (1-y) log(1-σ(z))], stable for large |z|.
        value = float((torch.nn.functional.softplus(z) - target * z).sum()) / n
        grad = torch.sigmoid(z).sub_(target).div_(n)  # dL/dz = (σ(z) - y) / N
        return value, grad

    def predict(self, z: Tensor) -> Tensor:
        return torch.sigmoid(z)


class IdentityHead(Head):
    """Identity + half squared error; target: floats (N, K)."""

    name = "identity"

    def loss_and_grad(self, z: Tensor, target: Tensor) -> tuple[float, Tensor]:
        diff = z - target  # (N, K)
        value = 0.5 * float(diff.square().mean())
        return value, diff.div_(z.shape[0])  # scikit-learn's delta: (z - y) / N

    def predict(self, z: Tensor) -> Tensor:
        return z
