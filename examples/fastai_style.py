"""fastai style (lesson 13's notebook): ``lin_grad`` sets ``.g`` on tensors.

    handgrad check --function examples/fastai_style.py

The contract: make_inputs() -> the tensors, forward(**inputs) -> (loss, intermediates),
backward(**inputs, **intermediates) -> name -> gradient (here read off the ``.g`` attributes).
"""

import torch

from handgrad.check import grads_from_dot_g


def make_inputs():
    n, m, nh = 16, 20, 8  # torch is seeded by handgrad check (--seed)
    return {
        "x": torch.randn(n, m),
        "y": torch.randn(n),
        "w1": torch.randn(m, nh) / m**0.5,
        "b1": torch.zeros(nh),
        "w2": torch.randn(nh, 1) / nh**0.5,
        "b2": torch.zeros(1),
    }


def relu(x):
    return x.clamp_min(0.0)


def mse(output, targ):
    return (output[:, 0] - targ).pow(2).mean()


def forward(x, y, w1, b1, w2, b2):
    l1 = x @ w1 + b1
    l2 = relu(l1)
    out = l2 @ w2 + b2
    return mse(out, y), {"l1": l1, "l2": l2, "out": out}


def lin_grad(inp, out, w, b):
    # grad of matmul with respect to input
    inp.g = out.g @ w.t()
    w.g = (inp.unsqueeze(-1) * out.g.unsqueeze(1)).sum(0)
    b.g = out.g.sum(0)


def backward(x, y, w1, b1, w2, b2, l1, l2, out):
    diff = out[:, 0] - y
    out.g = 2.0 * diff[:, None] / x.shape[0]
    lin_grad(l2, out, w2, b2)
    l1.g = (l1 > 0).float() * l2.g
    lin_grad(x, l1, w1, b1)
    return grads_from_dot_g(
        {"x": x, "w1": w1, "b1": b1, "w2": w2, "b2": b2, "l1": l1, "l2": l2, "out": out}
    )
