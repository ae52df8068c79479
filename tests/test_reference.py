"""handgrad.reference: which modules get a torch twin, and the vector-Jacobian products."""

from __future__ import annotations

import pytest
import torch

from handgrad import nn
from handgrad.reference import loss_to_torch, to_torch, twin_base, vjp


class OnlyBackward(nn.LeakyReLU):
    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        return 2 * super().backward(grad_output)


class OwnForward(nn.LeakyReLU):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x) * 3


class OwnLoss(nn.MSELoss):
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(input, target) * 2


@pytest.mark.parametrize("base", [nn.Linear, nn.ReLU, nn.LeakyReLU, nn.BatchNorm1d, nn.Dropout])
def test_a_subclass_overriding_only_backward_gets_its_base_twin(base: type) -> None:
    sub = type("Sub", (base,), {"backward": lambda self, g: g})
    assert twin_base(sub) is base


def test_a_subclass_with_its_own_forward_has_no_twin() -> None:
    assert twin_base(OwnForward) is None
    with pytest.raises(TypeError, match=r"no torch\.nn twin for OwnForward"):
        to_torch(nn.Sequential(nn.Linear(3, 2), OwnForward()))
    with pytest.raises(TypeError, match=r"no torch\.nn twin for OwnLoss"):
        loss_to_torch(OwnLoss())
    twin = to_torch(nn.Sequential(nn.Linear(3, 2), OnlyBackward(0.2)))
    assert isinstance(twin[1], torch.nn.LeakyReLU) and twin[1].negative_slope == 0.2


def test_vjp_pulls_the_upstream_gradient_back() -> None:
    layer = nn.Linear(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    r = torch.randn(5, 3, dtype=torch.float64)
    out, grad_x, grads = vjp(to_torch(layer), x, r)
    assert torch.allclose(out, layer(x))
    assert torch.allclose(grad_x, r @ layer.weight)
    assert torch.allclose(grads["weight"], r.t() @ x)
    assert torch.allclose(grads["bias"], r.sum(0))
