"""handgrad trains with autograd off: each way into autograd is patched to raise; it trains."""

from __future__ import annotations

import pytest
import torch

from handgrad import nn


def _forbidden(*args: object, **kwargs: object) -> None:
    raise AssertionError("autograd was used")


@pytest.mark.parametrize(
    ("spec", "act", "norm", "loss"),
    [
        ("20-16-5", "relu", "none", nn.CrossEntropyLoss()),
        ("20-16-8-5", "tanh", "batchnorm", nn.MSELoss()),
        ("20-16-5", "gelu", "layernorm", nn.SumSquaredLoss()),
    ],
)
def test_training_never_touches_autograd(
    monkeypatch: pytest.MonkeyPatch, spec: str, act: str, norm: str, loss: nn.Loss
) -> None:
    monkeypatch.setattr(torch.Tensor, "backward", _forbidden)
    monkeypatch.setattr(torch.autograd, "grad", _forbidden)
    monkeypatch.setattr(torch.autograd, "backward", _forbidden)
    torch.manual_seed(0)
    model = nn.mlp(spec, act, norm=norm, dropout=0.1).flatten_parameters()
    x = torch.randn(64, 20)
    labels = torch.randint(0, 5, (64,))
    target = labels if isinstance(loss, nn.CrossEntropyLoss) else torch.eye(5)[labels]
    lr = 0.05 / 64 if isinstance(loss, nn.SumSquaredLoss) else 0.05
    losses = []
    for _ in range(30):
        out = model(x)
        assert not out.requires_grad and out.grad_fn is None
        losses.append(loss(out, target).item())
        model.zero_grad()
        model.backward(loss.backward())
        for p in model.parameters():
            p.sub_(lr * p.grad)
    assert losses[-1] < losses[0]
